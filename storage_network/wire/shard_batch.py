"""Wire format of batched shard and record transfers: many in one node request.

One request per shard costs a round trip and an HTTP exchange per ~20 KB;
the read and write paths move a window of chunks at once instead.  Both
directions frame each shard with its length, big-endian (the format is
nixshard's own)::

    POST /shards/batch-get   body: {"ids": [shard id, ...]}          (JSON)
        answer, per asked id in order:
            u32 length | length bytes      the stored shard body
            u32 0xFFFFFFFF                 the node does not hold it

    POST /shards/batch-put   body, per shard:
            u8 id length | id (ASCII) | u32 length | length bytes
        answer: {"created": [ids], "held": [ids]}                    (JSON)

    POST /records/batch-get  body: {"keys": [record key, ...]}      (JSON)
        answer, per asked key in order, framed as batch-get's shards: the
        record's bytes, or the marker when the node does not hold it (an
        unsigned absence: a reader that acts on absence asks ``GET
        /records/<key>``, whose 404 the node signs)

A batch put is signed like a single put, over the path
``/shards/batch-put`` and the SHA-256 of the whole body
(:mod:`storage_network.wire.write_auth`); the node checks every shard against its id
and stores all of them or none.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from storage_network.errors import ShardBatchError, ShardTooLargeError
from storage_network.wire.stripe import SHARD_ID_RE

ABSENT = 0xFFFFFFFF
MAX_BATCH_IDS = 10_000
MAX_BATCH_KEYS = 1_000
"""Record keys a ``POST /records/batch-get`` may ask, at most."""
_U32 = struct.Struct(">I")


def encode_get_answer(body: bytes | None) -> bytes:
    """The frame of one shard or record in a batch-get answer (``None``: not held)."""
    if body is None:
        return _U32.pack(ABSENT)
    return _U32.pack(len(body)) + body


def parse_get_answer(data: bytes, count: int) -> list[memoryview | None]:
    """Split a batch-get answer (shards or records) into ``count`` bodies (``None``
    where not held).

    The bodies are views into ``data``, not copies (the caller verifies and
    copies each fragment once, off the event loop).

    Raises:
        ShardBatchError: the answer is cut short, or has bytes past the last frame.
    """
    view = memoryview(data)
    bodies: list[memoryview | None] = []
    pos = 0
    for number in range(count):
        if pos + 4 > len(view):
            raise ShardBatchError(f"batch answer cut short at entry {number} of {count}")
        (length,) = _U32.unpack_from(view, pos)
        pos += 4
        if length == ABSENT:
            bodies.append(None)
            continue
        if pos + length > len(view):
            raise ShardBatchError(f"batch answer cut short in entry {number} of {count}: "
                                  f"{len(view) - pos} of {length} bytes")
        bodies.append(view[pos:pos + length])
        pos += length
    if pos != len(view):
        raise ShardBatchError(f"batch answer has {len(view) - pos} bytes past its {count} "
                              "entries")
    return bodies


def encode_put_batch(items: Iterable[tuple[str, bytes]]) -> bytes:
    """The body of a batch put of ``(shard id, body)`` pairs."""
    parts: list[bytes] = []
    for sid, body in items:
        raw = sid.encode("ascii")
        parts += (bytes((len(raw),)), raw, _U32.pack(len(body)), body)
    return b"".join(parts)


def parse_put_batch(data: bytes | bytearray, max_shard_bytes: int,
                    max_ids: int = MAX_BATCH_IDS) -> Iterator[tuple[str, memoryview]]:
    """The ``(shard id, body)`` pairs of a batch-put body, ids validated.

    Raises:
        ShardTooLargeError: a body is over ``max_shard_bytes``.
        ShardBatchError: a frame is cut short, an id is malformed or the
            batch holds more than ``max_ids``.
    """
    view = memoryview(data)
    pos = number = 0
    while pos < len(view):
        if number >= max_ids:
            raise ShardBatchError(f"batch holds more than {max_ids} shards")
        id_len = view[pos]
        if pos + 1 + id_len + 4 > len(view):
            raise ShardBatchError(f"batch cut short in the header of shard {number}")
        sid = bytes(view[pos + 1:pos + 1 + id_len]).decode("ascii", "replace")
        if not SHARD_ID_RE.match(sid):
            raise ShardBatchError(f"shard {number} of the batch: bad shard id {sid[:80]!r}")
        (length,) = _U32.unpack_from(view, pos + 1 + id_len)
        pos += 1 + id_len + 4
        if length > max_shard_bytes:
            raise ShardTooLargeError(f"shard {sid}: {length} bytes exceeds the limit of "
                                  f"{max_shard_bytes} bytes")
        if pos + length > len(view):
            raise ShardBatchError(f"batch cut short in shard {sid}: "
                                  f"{len(view) - pos} of {length} bytes")
        yield sid, view[pos:pos + length]
        pos += length
        number += 1
