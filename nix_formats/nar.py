"""NAR (Nix ARchive): the format, and its streaming serialisation.

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

:func:`dump_path` writes that stream from a file tree;
:class:`~nix_formats.nar_parser.NarParser` checks one, fed in pieces of any
size, without buffering file contents.  The parser accepts exactly the
canonical form :func:`dump_path` (and ``nix-store --dump``) produce; Nix 2.8's
own reader is laxer about field order, but a NAR that is not canonical cannot
match the NarHash of what it unpacks to.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator

from .errors import NarError

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_TARGET_BYTES",
    "NAR_MAGIC",
    "dump_path",
    "nar_hash_of_path",
]

#: The first string of every NAR.
NAR_MAGIC = b"nix-archive-1"
#: Longest directory entry name accepted by :class:`~nix_formats.nar_parser.NarParser`
#: (Linux ``NAME_MAX``).
MAX_NAME_BYTES = 255
#: Longest symlink target accepted by :class:`~nix_formats.nar_parser.NarParser`
#: (Linux ``PATH_MAX - 1``).
MAX_TARGET_BYTES = 4095

# dump_path coalesces tokens and small files into buffers of about this size.
_FLUSH_BYTES = 128 * 1024


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
