"""NAR (Nix ARchive): streaming serialisation and streaming validation.

Format defined in Nix ``src/libutil/archive.cc`` (``dumpPath``, ``parseDump``).
Every token is a *string*: a 64-bit little-endian length, the bytes, then zero
padding up to a multiple of 8 bytes::

    nar       = str("nix-archive-1") node
    node      = str("(") str("type") ( regular | symlink | directory ) str(")")
    regular   = str("regular") [ str("executable") str("") ] str("contents") str(<file bytes>)
    symlink   = str("symlink") str("target") str(<target>)
    directory = str("directory") { str("entry") str("(") str("name") str(<name>)
                                   str("node") node str(")") }

Directory entries are sorted by name compared as *bytes* (C++
``std::string`` order), never by locale.  Only the owner's execute bit of a
regular file is recorded; times, owners and other permission bits are not.

:func:`dump_path` writes that stream from a file tree; :class:`NarParser`
checks one, fed in pieces of any size, without buffering file contents.
The parser accepts exactly the canonical form :func:`dump_path` (and
``nix-store --dump``) produce; Nix 2.8's own reader is laxer about field order,
but a NAR that is not canonical cannot match the NarHash of what it unpacks to.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import NarError, NarListingTooLargeError
from .hash import format_sha256_nix32

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_TARGET_BYTES",
    "NAR_MAGIC",
    "ListingNode",
    "NarParser",
    "NarStats",
    "dump_path",
    "nar_hash_of_path",
    "validate_nar",
]

#: The first string of every NAR.
NAR_MAGIC = b"nix-archive-1"
#: Longest directory entry name accepted by :class:`NarParser` (Linux ``NAME_MAX``).
MAX_NAME_BYTES = 255
#: Longest symlink target accepted by :class:`NarParser` (Linux ``PATH_MAX - 1``).
MAX_TARGET_BYTES = 4095

# dump_path coalesces tokens and small files into buffers of about this size.
_FLUSH_BYTES = 128 * 1024
# Longest string the parser reads when it expects a keyword, to show what it found.
_KEYWORD_LIMIT = 64


def nar_string(data: bytes) -> bytes:
    """One NAR string token: u64le length, ``data``, zero padding to a multiple of 8
    bytes (Nix's ``writeString``, src/libutil/serialise.cc; the NAR grammar of
    src/libutil/archive.cc is a sequence of these)."""
    return len(data).to_bytes(8, "little") + data + b"\0" * (-len(data) % 8)


_T_MAGIC = nar_string(NAR_MAGIC)
_T_CLOSE = nar_string(b")")
_T_REGULAR = nar_string(b"(") + nar_string(b"type") + nar_string(b"regular")
_T_EXECUTABLE = nar_string(b"executable") + nar_string(b"")
_T_CONTENTS = nar_string(b"contents")
_T_SYMLINK = nar_string(b"(") + nar_string(b"type") + nar_string(b"symlink") + nar_string(b"target")
_T_DIRECTORY = nar_string(b"(") + nar_string(b"type") + nar_string(b"directory")
_T_ENTRY = nar_string(b"entry") + nar_string(b"(") + nar_string(b"name")
_T_NODE = nar_string(b"node")


def _show(data: bytes) -> str:
    """Printable form of a token or name for error messages."""
    return repr(data.decode("utf-8", "backslashreplace"))


# ---------------------------------------------------------------------------
# Writing


def _read_full(fd: int, n: int) -> bytes:
    """Read ``n`` bytes from ``fd``; fewer only at end of file."""
    data = os.read(fd, n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = os.read(fd, n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _shrank(path: bytes, size: int, got: int) -> NarError:
    return NarError(
        f"file {os.fsdecode(path)!r} shrank while being read: expected {size} bytes, got {got}"
    )


def _dump_contents(path: bytes, buf: bytearray, chunk_size: int) -> Iterator[bytes]:
    """Append/yield ``str(<contents of path>)``; small files go into ``buf``."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NarError(f"file {os.fsdecode(path)!r} changed type while being read")
        size = st.st_size
        buf += size.to_bytes(8, "little")
        if size <= _FLUSH_BYTES:
            data = _read_full(fd, size)
            if len(data) < size:
                raise _shrank(path, size, len(data))
            buf += data
        else:
            if buf:
                yield bytes(buf)
                buf.clear()
            done = 0
            while done < size:
                want = min(chunk_size, size - done)
                piece = _read_full(fd, want)
                if len(piece) < want:
                    raise _shrank(path, size, done + len(piece))
                done += want
                yield piece
        buf += b"\0" * (-size % 8)
    finally:
        os.close(fd)


def dump_path(path: str | os.PathLike[str] | bytes, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Stream the NAR serialisation of a file, directory or symlink.

    Byte-for-byte what ``nix-store --dump path`` writes: a symlink at ``path``
    is archived as a symlink (not followed); a regular file is executable if
    its owner execute bit is set; directory entries are sorted by their names
    as bytes.  Yields ``bytes`` pieces: tokens and files up to 128 KiB are
    coalesced into buffers of at least 128 KiB (except the last); larger files
    are streamed in pieces of ``chunk_size`` bytes and never held whole.
    The tree is walked without recursion, so depth is unlimited.

    Raises :class:`~nix_formats.errors.NarError` for a file type a NAR cannot
    hold (socket, FIFO, device) or a file that shrinks while being read;
    ``OSError`` if the tree cannot be read; ``ValueError`` if ``chunk_size``
    is not positive.  Format: Nix ``src/libutil/archive.cc`` (``dumpPath``).
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return _dump(os.fsencode(path), chunk_size)


def _dump(root: bytes, chunk_size: int) -> Iterator[bytes]:
    buf = bytearray(_T_MAGIC)
    # Open directories: (directory path, iterator over its sorted entry names).
    stack: list[tuple[bytes, Iterator[bytes]]] = []
    current: bytes | None = root
    while True:
        if current is not None:
            st = os.lstat(current)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                buf += _T_DIRECTORY
                stack.append((current, iter(sorted(os.listdir(current)))))
            else:
                if stat.S_ISREG(mode):
                    buf += _T_REGULAR
                    if mode & stat.S_IXUSR:
                        buf += _T_EXECUTABLE
                    buf += _T_CONTENTS
                    yield from _dump_contents(current, buf, chunk_size)
                elif stat.S_ISLNK(mode):
                    buf += _T_SYMLINK
                    buf += nar_string(os.readlink(current))
                else:
                    raise NarError(
                        f"file {os.fsdecode(current)!r} has an unsupported type "
                        f"(mode {stat.filemode(mode)}): a NAR holds only regular files, "
                        f"directories and symlinks"
                    )
                buf += _T_CLOSE  # the node
                if stack:
                    buf += _T_CLOSE  # the directory entry holding it
            current = None
            if len(buf) >= _FLUSH_BYTES:
                yield bytes(buf)
                buf.clear()
        if not stack:
            break
        directory, names = stack[-1]
        name = next(names, None)
        if name is None:
            stack.pop()
            buf += _T_CLOSE  # the directory node
            if stack:
                buf += _T_CLOSE  # the entry holding it
            continue
        buf += _T_ENTRY
        buf += nar_string(name)
        buf += _T_NODE
        current = directory + b"/" + name
    if buf:
        yield bytes(buf)


def nar_hash_of_path(path: str | os.PathLike[str] | bytes) -> tuple[bytes, int]:
    """``(sha256 digest (32 bytes), NAR size in bytes)`` of ``path``'s NAR.

    The NarHash/NarSize of a narinfo, computed by streaming :func:`dump_path`
    (same errors).  Format: Nix ``src/libutil/archive.cc``.
    """
    sha = hashlib.sha256()
    size = 0
    for piece in dump_path(path):
        sha.update(piece)
        size += len(piece)
    return sha.digest(), size


# ---------------------------------------------------------------------------
# Parsing


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


class _Skip:
    """Parser request: discard ``n`` bytes (file contents)."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


# A request is "give me exactly n bytes" (int > 0) or "skip n bytes".
_Request = int | _Skip
_Grammar = Generator[_Request, bytes, None]

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


class NarParser:
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
        self._sha = hashlib.sha256() if compute_sha256 else None
        self._record = listing
        self._max_nodes = max_listing_nodes
        self._nodes = 0
        self._root: ListingNode | None = None
        self._fed = 0  # bytes given to feed()
        self._consumed = 0  # bytes handed to the grammar
        self._pending = bytearray()
        self._expecting = "the NAR magic"
        self._error: NarError | None = None
        self._done = False
        self._regular_files = 0
        self._executables = 0
        self._symlinks = 0
        self._directories = 0
        self._contents_size = 0
        self._grammar = self._nar()
        self._request: _Request = next(self._grammar)

    @property
    def offset(self) -> int:
        """Number of bytes fed so far."""
        return self._fed

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

    @property
    def done(self) -> bool:
        """True once the root node is complete (only :meth:`finish` may follow)."""
        return self._done

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Parse the next piece of the NAR (any length, including 0).

        Raises :class:`~nix_formats.errors.NarError` as soon as the bytes
        seen so far cannot start a valid NAR, or if data follows the end of
        the NAR.
        """
        if self._error is not None:
            raise self._error
        mv = memoryview(data).cast("B")
        end = len(mv)
        if end == 0:
            return
        if self._done:
            self._fail(NarError("unexpected data after the end of the NAR", self._consumed))
        if self._sha is not None:
            self._sha.update(mv)
        self._fed += end
        pos = 0
        try:
            while pos < end:
                request = self._request
                if isinstance(request, _Skip):
                    take = min(request.n, end - pos)
                    request.n -= take
                    pos += take
                    self._consumed += take
                    if request.n:
                        break
                    self._request = self._grammar.send(b"")
                    continue
                pending = self._pending
                if not pending and end - pos >= request:
                    chunk = bytes(mv[pos : pos + request])
                    pos += request
                else:
                    take = min(request - len(pending), end - pos)
                    pending += mv[pos : pos + take]
                    pos += take
                    if len(pending) < request:
                        break
                    chunk = bytes(pending)
                    pending.clear()
                self._consumed += request
                self._request = self._grammar.send(chunk)
        except StopIteration:
            self._done = True
            if pos < end:
                self._fail(NarError("unexpected data after the end of the NAR", self._consumed))
        except NarError as exc:
            self._fail(exc)

    def finish(self) -> NarStats:
        """Declare the end of input; return the :class:`NarStats` of the NAR.

        Raises :class:`~nix_formats.errors.NarError` if the NAR is incomplete
        (message says what was expected next and the offset where input ended).
        """
        if self._error is not None:
            raise self._error
        if not self._done:
            self._fail(
                NarError(f"truncated NAR: input ended while expecting {self._expecting}", self._fed)
            )
        return NarStats(
            nar_size=self._fed,
            sha256=self._sha.digest() if self._sha is not None else None,
            regular_files=self._regular_files,
            executables=self._executables,
            symlinks=self._symlinks,
            directories=self._directories,
            contents_size=self._contents_size,
        )

    def _fail(self, exc: NarError) -> None:
        self._error = exc
        raise exc

    # -- grammar (a generator that yields byte requests) --------------------

    def _string(self, what: str, limit: int) -> Generator[_Request, bytes, bytes]:
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

    def _choice(self, options: tuple[bytes, ...], what: str) -> Generator[_Request, bytes, bytes]:
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

    def _expect(self, token: bytes, what: str) -> Generator[_Request, bytes, None]:
        yield from self._choice((token,), what)

    def _nar(self) -> _Grammar:
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

    def _regular(self) -> Generator[_Request, bytes, tuple[int, bool, int]]:
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
            yield _Skip(size)
        pad = -size % 8
        if pad:
            start = self._consumed
            self._expecting = "padding after file contents"
            if (yield pad) != bytes(pad):
                raise NarError("non-zero padding after file contents", start)
        self._regular_files += 1
        self._contents_size += size
        return size, executable, offset

    def _symlink(self) -> Generator[_Request, bytes, bytes]:
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
