"""Streaming NAR validation, and the NAR listing on the way: :class:`NarParser`.

The grammar is the one of :mod:`nix_formats.nar` (Nix
``src/libutil/archive.cc``, ``parseDump``), accepted only in the canonical
form ``nix-store --dump`` writes; the bytes are fed by
:class:`~nix_formats.nar_feed.FeedParser`, so file contents are never
buffered.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any

from .errors import NarError, NarListingTooLargeError
from .hash import format_sha256_nix32
from .nar import MAX_NAME_BYTES, MAX_TARGET_BYTES, NAR_MAGIC
from .nar_feed import FeedParser, Grammar, Request, Skip

__all__ = [
    "ListingNode",
    "NarParser",
    "NarStats",
    "validate_nar",
]

# Longest string the parser reads when it expects a keyword, to show what it found.
_KEYWORD_LIMIT = 64


def _show(data: bytes) -> str:
    """Printable form of a token or name for error messages."""
    return repr(data.decode("utf-8", "backslashreplace"))


@dataclass(frozen=True)
class NarStats:
    """What :class:`NarParser` saw in a complete, valid NAR.

    ``nar_size``: bytes of the whole NAR; ``sha256``: its 32-byte sha256
    digest (``None`` if hashing was turned off); counts of regular files
    (``executables`` of them executable), symlinks and directories;
    ``contents_size``: total bytes of regular-file contents.
    """

    nar_size: int
    sha256: bytes | None
    regular_files: int
    executables: int
    symlinks: int
    directories: int
    contents_size: int

    @property
    def nar_hash(self) -> str:
        """``"sha256:<nix32>"`` of the NAR, as on a narinfo ``NarHash:`` line.

        Raises :class:`~nix_formats.errors.NarError` if hashing was turned off.
        """
        if self.sha256 is None:
            raise NarError("the NAR was parsed with compute_sha256=False: no hash available")
        return format_sha256_nix32(self.sha256)


#: One node of a NAR listing, shaped as in Nix's ``.ls`` files
#: (``src/libstore/nar-accessor.cc``, ``listNar``), keys in Nix's order:
#:
#: - regular file: ``{"type": "regular", "size": int, ["executable": True,]
#:   "narOffset": int}`` -- ``size`` in bytes, ``narOffset`` the byte offset of
#:   the file's contents in the NAR (just after the contents' 8-byte length);
#: - directory: ``{"type": "directory", "entries": {name: node, ...}}``, names
#:   in byte order;
#: - symlink: ``{"type": "symlink", "target": str}``.
#:
#: Names and targets are ``str`` decoded from the NAR's bytes as UTF-8 with
#: ``surrogateescape``, so bytes that are not UTF-8 survive a round trip
#: (``name.encode("utf-8", "surrogateescape")`` gives the NAR's bytes back).
ListingNode = dict[str, Any]


def _listing_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


class NarParser(FeedParser):
    """Streaming NAR validator: :meth:`feed` pieces of any size, then :meth:`finish`.

    Checks the magic ``nix-archive-1``, the grammar and field order of
    ``nix-store --dump`` output, that every padding byte is zero, that entry
    names are non-empty, not ``.``/``..``, contain no ``/`` or NUL, are at most
    :data:`MAX_NAME_BYTES` bytes and strictly increasing as bytes within each
    directory, that symlink targets are non-empty, NUL-free and at most
    :data:`MAX_TARGET_BYTES` bytes, and that nothing follows the root node.
    File contents are counted and skipped, never buffered: memory use is
    bounded by the longest token (a few KiB) plus the directory depth.  The
    sha256 of all bytes fed is computed on the way unless
    ``compute_sha256=False``.

    With ``listing=True`` the parser also records every node the grammar
    accepts (see :data:`ListingNode`; :attr:`listing` after :meth:`finish`),
    the NAR listing Nix writes as ``<hash>.ls``: memory then grows with the
    number of entries (names, targets, a small dict each, a few hundred bytes
    a node), never with file contents; ``max_listing_nodes`` caps it (a NAR
    with more nodes raises :class:`~nix_formats.errors.NarListingTooLargeError`
    as soon as the next node starts).  Without ``listing`` nothing is recorded
    and no per-byte work is added.

    Errors are :class:`~nix_formats.errors.NarError` with ``offset`` set to
    the byte offset of the offending string (or of the end, when truncated).
    After an error the parser is dead and re-raises that error.
    Format: Nix ``src/libutil/archive.cc`` (``parseDump``).
    """

    def __init__(self, *, compute_sha256: bool = True, listing: bool = False,
                 max_listing_nodes: int | None = None) -> None:
        super().__init__(compute_sha256=compute_sha256, expecting="the NAR magic")
        self._record = listing
        self._max_nodes = max_listing_nodes
        self._nodes = 0
        self._root: ListingNode | None = None
        self._regular_files = 0
        self._executables = 0
        self._symlinks = 0
        self._directories = 0
        self._contents_size = 0
        self._start(self._nar())

    @property
    def listing(self) -> ListingNode:
        """The root node of the NAR's listing (a :data:`ListingNode` tree).

        Available once :meth:`finish` succeeded on a parser made with
        ``listing=True``; otherwise raises :class:`~nix_formats.errors.NarError`.
        """
        if not self._record:
            raise NarError("the NAR was parsed with listing=False: no listing available")
        if self._error is not None:
            raise self._error
        if not self._done or self._root is None:
            raise NarError("the NAR listing is not available before finish()")
        return self._root

    def finish(self) -> NarStats:
        """Declare the end of input; return the :class:`NarStats` of the NAR.

        Raises :class:`~nix_formats.errors.NarError` if the NAR is incomplete
        (message says what was expected next and the offset where input ended).
        """
        self._end()
        return NarStats(
            nar_size=self._fed,
            sha256=self._sha.digest() if self._sha is not None else None,
            regular_files=self._regular_files,
            executables=self._executables,
            symlinks=self._symlinks,
            directories=self._directories,
            contents_size=self._contents_size,
        )

    # -- grammar (a generator that yields byte requests) --------------------

    def _string(self, what: str, limit: int) -> Generator[Request, bytes, bytes]:
        start = self._consumed
        self._expecting = f"the length of {what}"
        n = int.from_bytes((yield 8), "little")
        if n > limit:
            raise NarError(f"{what} is {n} bytes long, more than the limit of {limit}", start)
        padded = (n + 7) & ~7
        if not padded:
            return b""
        self._expecting = what
        data = yield padded
        if data[n:] != bytes(padded - n):
            raise NarError(f"non-zero padding after {what}", start + 8 + n)
        return data[:n]

    def _choice(self, options: tuple[bytes, ...], what: str) -> Generator[Request, bytes, bytes]:
        start = self._consumed
        wanted = " or ".join(_show(o) for o in options)
        self._expecting = wanted
        n = int.from_bytes((yield 8), "little")
        if n > _KEYWORD_LIMIT:
            raise NarError(f"expected {wanted} ({what}), found a string of {n} bytes", start)
        padded = (n + 7) & ~7
        data = (yield padded) if padded else b""
        token = data[:n]
        if token not in options:
            raise NarError(f"expected {wanted} ({what}), found {_show(token)}", start)
        if data[n:] != bytes(padded - n):
            raise NarError(f"non-zero padding after {_show(token)}", start + 8 + n)
        return token

    def _expect(self, token: bytes, what: str) -> Generator[Request, bytes, None]:
        yield from self._choice((token,), what)

    def _nar(self) -> Grammar:
        yield from self._expect(NAR_MAGIC, "NAR magic")
        record = self._record
        # Last entry name of each open directory (None: no entry yet).
        open_dirs: list[bytes | None] = []
        # With listing: the "entries" dict of each open directory.
        open_entries: list[dict[str, ListingNode]] = []
        while True:
            yield from self._expect(b"(", "start of a node")
            yield from self._expect(b"type", "node type field")
            kind = yield from self._choice((b"regular", b"symlink", b"directory"), "node type")
            node: ListingNode | None = None
            if record:
                self._nodes += 1
                if self._max_nodes is not None and self._nodes > self._max_nodes:
                    raise NarListingTooLargeError(self._max_nodes, self._consumed)
                node = {"type": kind.decode()}
                if open_entries:
                    name = open_dirs[-1]
                    assert name is not None
                    open_entries[-1][_listing_text(name)] = node
                else:
                    self._root = node
            if kind == b"directory":
                self._directories += 1
                open_dirs.append(None)
                if node is not None:
                    entries: dict[str, ListingNode] = {}
                    node["entries"] = entries
                    open_entries.append(entries)
            else:
                if kind == b"regular":
                    size, executable, offset = yield from self._regular()
                    if node is not None:
                        node["size"] = size
                        if executable:
                            node["executable"] = True
                        node["narOffset"] = offset
                else:
                    target = yield from self._symlink()
                    if node is not None:
                        node["target"] = _listing_text(target)
                yield from self._expect(b")", f"end of a {kind.decode()} node")
                if not open_dirs:
                    return
                yield from self._expect(b")", "end of a directory entry")
            # Inside the innermost open directory: another entry, or its end.
            while True:
                token = yield from self._choice((b"entry", b")"), "directory contents")
                if token == b")":
                    open_dirs.pop()
                    if open_entries:
                        open_entries.pop()
                    if not open_dirs:
                        return
                    yield from self._expect(b")", "end of a directory entry")
                    continue
                yield from self._expect(b"(", "start of a directory entry")
                yield from self._expect(b"name", "entry name field")
                start = self._consumed
                name = yield from self._string("an entry name", MAX_NAME_BYTES)
                self._check_name(name, open_dirs[-1], start)
                open_dirs[-1] = name
                yield from self._expect(b"node", "entry node field")
                break

    @staticmethod
    def _check_name(name: bytes, previous: bytes | None, offset: int) -> None:
        if not name:
            raise NarError("empty entry name", offset)
        if name in (b".", b".."):
            raise NarError(f"invalid entry name {_show(name)}", offset)
        if b"/" in name:
            raise NarError(f"entry name {_show(name)} contains '/'", offset)
        if b"\0" in name:
            raise NarError(f"entry name {_show(name)} contains a NUL byte", offset)
        if previous is not None:
            if name == previous:
                raise NarError(f"duplicate entry name {_show(name)}", offset)
            if name < previous:
                raise NarError(
                    f"entry {_show(name)} comes after {_show(previous)}: directory entries "
                    f"must be sorted by name as bytes",
                    offset,
                )

    def _regular(self) -> Generator[Request, bytes, tuple[int, bool, int]]:
        """Parse a regular file's fields; return (size, executable, offset of contents)."""
        executable = False
        token = yield from self._choice((b"executable", b"contents"), "regular file field")
        if token == b"executable":
            start = self._consumed
            marker = yield from self._string("the executable marker", _KEYWORD_LIMIT)
            if marker:
                raise NarError(f"executable marker has non-empty value {_show(marker)}", start)
            self._executables += 1
            executable = True
            yield from self._expect(b"contents", "regular file contents field")
        self._expecting = "the file size"
        size = int.from_bytes((yield 8), "little")
        offset = self._consumed
        if size:
            self._expecting = f"{size} bytes of file contents"
            yield Skip(size)
        pad = -size % 8
        if pad:
            start = self._consumed
            self._expecting = "padding after file contents"
            if (yield pad) != bytes(pad):
                raise NarError("non-zero padding after file contents", start)
        self._regular_files += 1
        self._contents_size += size
        return size, executable, offset

    def _symlink(self) -> Generator[Request, bytes, bytes]:
        """Parse a symlink's fields; return its target."""
        yield from self._expect(b"target", "symlink target field")
        start = self._consumed
        target = yield from self._string("a symlink target", MAX_TARGET_BYTES)
        if not target:
            raise NarError("empty symlink target", start)
        if b"\0" in target:
            raise NarError(f"symlink target {_show(target)} contains a NUL byte", start)
        self._symlinks += 1
        return target


def validate_nar(
    chunks: Iterable[bytes | bytearray | memoryview], *, compute_sha256: bool = True
) -> NarStats:
    """Validate a whole NAR given as an iterable of byte pieces.

    Returns its :class:`NarStats` (size in bytes, sha256, counts).  Raises
    :class:`~nix_formats.errors.NarError` on the first problem (see
    :class:`NarParser`).  Format: Nix ``src/libutil/archive.cc``.
    """
    parser = NarParser(compute_sha256=compute_sha256)
    for chunk in chunks:
        parser.feed(chunk)
    return parser.finish()
