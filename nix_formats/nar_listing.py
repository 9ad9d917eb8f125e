"""NAR listings: the JSON ``<hash>.ls`` file Nix writes next to a NAR.

A binary cache with ``write-nar-listing = true`` stores, for every store
path, ``<hash>.ls``: ``{"version":1,"root":<node>}`` where ``<node>`` describes
the NAR's root (Nix ``src/libstore/binary-cache-store.cc``, ``addToStoreCommon``)
and each node is (Nix ``src/libstore/nar-accessor.cc``, ``listNar``):

- regular file: ``{"type":"regular","size":<bytes>,"executable":true,"narOffset":<n>}``
  -- ``executable`` only when true, ``narOffset`` (byte offset of the file's
  contents within the uncompressed NAR) only when non-zero, which it always
  is for a real NAR;
- directory: ``{"type":"directory","entries":{"<name>":<node>,...}}``, names in
  byte order (a ``std::map<std::string>``);
- symlink: ``{"type":"symlink","target":"<target>"}``.

Nix 2.8 writes it with its own JSON writer (``src/libutil/json.cc``):
no spaces, no trailing newline, keys in the order above, strings escaped
only for ``"`` ``\\`` ``\\n`` ``\\r`` ``\\t`` (as such) and other bytes below
0x20 (as ``\\u00xx``, lowercase hex); every other byte is copied raw, so a
name that is not UTF-8 makes the file not UTF-8 either.  :func:`render_listing`
reproduces those bytes exactly.

In Python a listing is a ``dict`` (see :data:`nix_formats.nar_parser.ListingNode`)
whose names and targets are ``str`` decoded as UTF-8 with
``surrogateescape``, so any byte string round-trips.

:func:`nar_listing` builds one from NAR pieces with the validating
:class:`~nix_formats.nar_parser.NarParser` (one grammar for both jobs), in memory
proportional to the number of entries, never to file contents.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .errors import NarListingError
from .nar_parser import NarParser

__all__ = ["LISTING_VERSION", "nar_listing", "parse_listing", "render_listing"]

#: The ``version`` of the listings Nix writes (and the only one it reads).
LISTING_VERSION = 1

_ESCAPE_RE = re.compile(rb'[\x00-\x1f"\\]')
_ESCAPES = {b'"': b'\\"', b"\\": b"\\\\", b"\n": b"\\n", b"\r": b"\\r", b"\t": b"\\t"}


def nar_listing(pieces: Iterable[bytes | bytearray | memoryview]) -> dict[str, Any]:
    """The listing document ``{"version": 1, "root": <node>}`` of a whole NAR.

    ``pieces``: the uncompressed NAR in pieces of any size.  The NAR is fully
    validated on the way (no sha256 is computed; use
    ``NarParser(listing=True)`` directly to get the hash and the listing in one
    pass).  Raises :class:`~nix_formats.errors.NarError` if the NAR is
    malformed or truncated.
    """
    parser = NarParser(compute_sha256=False, listing=True)
    for piece in pieces:
        parser.feed(piece)
    parser.finish()
    return {"version": LISTING_VERSION, "root": parser.listing}


def _quote(text: str, where: str) -> bytes:
    """``text`` as a Nix 2.8 JSON string literal (bytes, see the module doc)."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise NarListingError(
            f"{where}: string {text!r} holds a surrogate that is not an escaped byte"
        ) from None
    return b'"' + _ESCAPE_RE.sub(_escape_one, raw) + b'"'


def _escape_one(match: re.Match[bytes]) -> bytes:
    char = match.group()
    return _ESCAPES.get(char) or b"\\u%04x" % char[0]


def _where(path: str) -> str:
    return f"listing node {path!r}" if path else "listing root"


def _uint(node: Mapping[str, Any], key: str, where: str, required: bool) -> int:
    value = node.get(key, None if required else 0)
    if type(value) is not int or value < 0:
        raise NarListingError(f"{where}: {key} must be a non-negative integer, got {value!r}")
    return value


_KEYS = {
    "regular": {"type", "size", "executable", "narOffset"},
    "directory": {"type", "entries"},
    "symlink": {"type", "target"},
}


# A directory's entries to write: (name as a JSON literal, name, node).
_Entries = Iterator[tuple[bytes, str, Any]]


def _open_node(node: object, path: str, out: bytearray) -> _Entries | None:
    """Append ``node``'s JSON to ``out``; for a directory, append only its opening
    and return its entries sorted by name bytes (the caller closes it)."""
    where = _where(path)
    if not isinstance(node, Mapping):
        raise NarListingError(f"{where}: expected an object, got {type(node).__name__}")
    kind = node.get("type")
    if not isinstance(kind, str) or kind not in _KEYS:
        raise NarListingError(
            f"{where}: type must be 'regular', 'directory' or 'symlink', got {kind!r}"
        )
    unknown = set(node) - _KEYS[kind]
    if unknown:
        raise NarListingError(f"{where}: unexpected keys {sorted(map(str, unknown))} for {kind}")
    if kind == "regular":
        size = _uint(node, "size", where, required=True)
        offset = _uint(node, "narOffset", where, required=False)
        executable = node.get("executable", False)
        if type(executable) is not bool:
            raise NarListingError(f"{where}: executable must be a boolean, got {executable!r}")
        out += b'{"type":"regular","size":%d' % size
        if executable:
            out += b',"executable":true'
        if offset:
            out += b',"narOffset":%d' % offset
        out += b"}"
        return None
    if kind == "symlink":
        target = node.get("target")
        if not isinstance(target, str) or not target:
            raise NarListingError(f"{where}: target must be a non-empty string, got {target!r}")
        out += b'{"type":"symlink","target":' + _quote(target, where) + b"}"
        return None
    entries = node.get("entries")
    if not isinstance(entries, Mapping):
        raise NarListingError(f"{where}: entries must be an object, got {entries!r}")
    keyed = []
    for name in entries:
        if not isinstance(name, str) or not name or "/" in name or "\0" in name:
            raise NarListingError(
                f"{where}: entry name {name!r} is not a valid file name "
                f"(non-empty, no '/' or NUL)"
            )
        keyed.append((_quote(name, where), name))
    keyed.sort(key=lambda pair: pair[0])  # quoting keeps the order of the raw bytes
    out += b'{"type":"directory","entries":{'
    return iter([(quoted, name, entries[name]) for quoted, name in keyed])


def render_listing(listing: Mapping[str, Any]) -> bytes:
    """The bytes of a ``.ls`` file for ``listing``, exactly as Nix 2.8 writes them.

    ``listing``: a document ``{"version": 1, "root": <node>}`` as returned by
    :func:`nar_listing` or :func:`parse_listing` (key order in the dicts does
    not matter; directory entries are written in byte order of their names).
    Works without recursion, so depth is unlimited.  Raises
    :class:`~nix_formats.errors.NarListingError` (naming the node's path) if
    the version is not 1, a node has an unknown type or unexpected keys, a
    size/offset is not a non-negative integer, ``executable`` is not a
    boolean, a target is empty, or a name is empty or holds ``/`` or NUL.
    Format: Nix ``src/libstore/nar-accessor.cc`` (``listNar``),
    ``src/libutil/json.cc``.
    """
    if not isinstance(listing, Mapping):
        raise NarListingError(f"a NAR listing must be an object, got {type(listing).__name__}")
    version = listing.get("version")
    if type(version) is not int or version != LISTING_VERSION:
        raise NarListingError(f"unsupported NAR listing version {version!r} (expected 1)")
    if "root" not in listing:
        raise NarListingError("the NAR listing has no root")
    unknown = set(listing) - {"version", "root"}
    if unknown:
        raise NarListingError(f"unexpected keys {sorted(map(str, unknown))} in a NAR listing")
    out = bytearray(b'{"version":%d,"root":' % LISTING_VERSION)
    # Open directories: (their path, their remaining entries, whether one was written).
    stack: list[tuple[str, _Entries, list[bool]]] = []
    entries = _open_node(listing["root"], "", out)
    if entries is not None:
        stack.append(("", entries, [False]))
    while stack:
        path, entries, written = stack[-1]
        item = next(entries, None)
        if item is None:
            out += b"}}"
            stack.pop()
            continue
        quoted, name, child = item
        if written[0]:
            out += b","
        written[0] = True
        child_path = f"{path}/{name}"
        out += quoted + b":"
        child_entries = _open_node(child, child_path, out)
        if child_entries is not None:
            stack.append((child_path, child_entries, [False]))
    out += b"}"
    return bytes(out)


def parse_listing(data: bytes) -> dict[str, Any]:
    """Parse and check the bytes of a ``.ls`` file (as Nix or :func:`render_listing` wrote).

    Returns the document ``{"version": 1, "root": <node>}`` with names and
    targets decoded as UTF-8 with ``surrogateescape`` (so ``render_listing``
    of the result gives Nix's bytes back).  Raises
    :class:`~nix_formats.errors.NarListingError` if ``data`` is not JSON or
    not a valid listing (see :func:`render_listing`).
    """
    try:
        document = json.loads(data.decode("utf-8", "surrogateescape"))
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4300 digits
        raise NarListingError(f"a NAR listing is not valid JSON: {exc}") from None
    except RecursionError:
        raise NarListingError(
            "a NAR listing is nested too deeply for Python's JSON parser"
        ) from None
    if not isinstance(document, dict):
        raise NarListingError(f"a NAR listing must be an object, got {type(document).__name__}")
    render_listing(document)  # the one structural check
    return document

