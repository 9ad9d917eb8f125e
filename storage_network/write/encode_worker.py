"""The worker side of :mod:`storage_network.write.encode_workers`: slots, messages, the loop.

Shared memory is cut into slots (:class:`SlotLayout`); a slot holds a chunk
(its input part) and then the chunk's shard bodies (its output part).  A task
is a fixed-size record on a pipe all workers read (:data:`TASK`); a result is
a length-prefixed record on a pipe the parent reads (:func:`result_record`,
:func:`failure_record`, :func:`read_result`).  Every record is shorter than
PIPE_BUF (4096 bytes), so a write is atomic: workers share both pipes without
a lock and every read of a task takes exactly one.
"""

from __future__ import annotations

import gc
import mmap
import os
import signal
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from storage_network.coding.codec import StripeCodec
from storage_network.coding.sealing import CacheSecret
from storage_network.errors import StorageNetworkError
from storage_network.wire.manifest import ChunkRef
from storage_network.wire.stripe import ROOT_BYTES, max_shard_bytes

TASK = struct.Struct("<IIIIi")
"""A task: run id, sequence number in the run, slot, chunk length (bytes), secret index
(-1: not sealed)."""
HEAD = struct.Struct("<IIIIB")
"""A result's head: record length (bytes, head included), run id, sequence number, slot,
status (:data:`OK` or :data:`FAILED`)."""
_REF = struct.Struct("<BBHQQ")  # id length, key length, body count, size, stored size
OK, FAILED = 0, 1
MAX_ERROR_TEXT = 2048
"""Bytes of a worker's error message that reach the parent (records stay under PIPE_BUF)."""


class EncoderError(StorageNetworkError):
    """A chunk could not be encoded: a worker failed on it, a worker process
    exited, or the encoder was closed meanwhile."""


def stored_bound(max_chunk: int) -> int:
    """The most bytes a chunk of at most ``max_chunk`` bytes can be stored as, bytes:
    zstd's compress bound (ZSTD_COMPRESSBOUND) plus a sealed frame's 28 bytes
    (nonce and tag), with room to spare."""
    return max_chunk + (max_chunk >> 8) + ((128 << 10) >> 11) + 128


@dataclass(frozen=True)
class SlotLayout:
    """Where each slot's input and output lie in the shared memory (offsets in bytes).

    Slot i is ``[i * size, (i + 1) * size)``: ``in_bytes`` of chunk, then
    ``out_bytes`` of shard bodies.
    """

    slots: int
    in_bytes: int
    out_bytes: int

    @classmethod
    def for_codec(cls, slots: int, max_chunk: int, k: int, n: int) -> SlotLayout:
        """Room for a chunk of ``max_chunk`` bytes and its ``n`` shard bodies, coded k-of-n."""
        return cls(slots, max_chunk, n * max_shard_bytes(stored_bound(max_chunk), k))

    @property
    def size(self) -> int:
        """Bytes of one slot."""
        return self.in_bytes + self.out_bytes

    @property
    def total(self) -> int:
        """Bytes of shared memory for all slots."""
        return self.slots * self.size

    def input_at(self, slot: int) -> int:
        """Offset of slot ``slot``'s input."""
        return slot * self.size

    def output_at(self, slot: int) -> int:
        """Offset of slot ``slot``'s output."""
        return slot * self.size + self.in_bytes


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker process needs, inherited through the fork: the codec's
    parameters, the shared memory and its layout, its ends of the pipes
    (``tasks`` read, ``results`` write), the parent's ends to close, and the
    secrets tasks name by index."""

    k: int
    m: int
    codec: str
    zstd_level: int
    layout: SlotLayout
    memory: mmap.mmap
    tasks: int
    results: int
    close: tuple[int, ...]
    secrets: tuple[CacheSecret, ...]


def result_record(run: int, seq: int, slot: int, ref: ChunkRef, lengths: Sequence[int]) -> bytes:
    """The result record of an encoded chunk whose ``len(lengths)`` bodies are in its slot."""
    body = (_REF.pack(len(ref.chunk_id), len(ref.key), len(lengths), ref.size, ref.stored_size)
            + ref.chunk_id + ref.root + ref.key + struct.pack(f"<{len(lengths)}I", *lengths))
    return HEAD.pack(HEAD.size + len(body), run, seq, slot, OK) + body


def failure_record(run: int, seq: int, slot: int, text: str) -> bytes:
    """The result record of a chunk that failed with ``text`` (cut to :data:`MAX_ERROR_TEXT`)."""
    body = text.encode("utf-8", "replace")[:MAX_ERROR_TEXT]
    return HEAD.pack(HEAD.size + len(body), run, seq, slot, FAILED) + body


def read_result(body: memoryview) -> tuple[ChunkRef, list[int]]:
    """The ref and body lengths in a successful result record (the part after its head)."""
    id_len, key_len, count, size, stored_size = _REF.unpack_from(body, 0)
    at = _REF.size
    chunk_id = bytes(body[at:at + id_len])
    at += id_len
    root = bytes(body[at:at + ROOT_BYTES])
    at += ROOT_BYTES
    key = bytes(body[at:at + key_len])
    at += key_len
    return ChunkRef(chunk_id, root, size, stored_size, key), list(
        struct.unpack_from(f"<{count}I", body, at))


def write_bodies(view: memoryview, at: int, room: int, proofs: Sequence[bytes],
                 fragments: Sequence[bytes]) -> list[int]:
    """Write body i = ``proofs[i] + fragments[i]`` back to back at ``view[at:]``;
    their lengths (bytes).

    Raises:
        EncoderError: the bodies need more than ``room`` bytes.
    """
    lengths = [len(p) + len(f) for p, f in zip(proofs, fragments, strict=True)]
    if sum(lengths) > room:
        raise EncoderError(f"shard bodies of {sum(lengths)} bytes exceed a slot's {room}")
    for proof, fragment in zip(proofs, fragments, strict=True):
        view[at:at + len(proof)] = proof
        at += len(proof)
        view[at:at + len(fragment)] = fragment
        at += len(fragment)
    return lengths


def work(setup: WorkerSetup) -> None:
    """A worker process: encode tasks until the task pipe ends (the parent closed it).

    A chunk that fails is reported in its result record, and the worker goes on.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    gc.disable()  # nothing here makes cycles; a collection would touch (copy) inherited pages
    for fd in setup.close:
        os.close(fd)
    codec = StripeCodec(setup.k, setup.m, setup.codec, setup.zstd_level)
    layout = setup.layout
    view = memoryview(setup.memory)
    while len(task := os.read(setup.tasks, TASK.size)) == TASK.size:
        run, seq, slot, length, secret = TASK.unpack(task)
        try:
            start = layout.input_at(slot)
            with view[start:start + length] as chunk:
                ref, proofs, fragments = codec.encode_parts(
                    chunk, setup.secrets[secret] if secret >= 0 else None)
            lengths = write_bodies(view, layout.output_at(slot), layout.out_bytes, proofs,
                                   fragments)
            record = result_record(run, seq, slot, ref, lengths)
        except Exception as exc:  # reported to the parent, which raises it for the chunk
            record = failure_record(run, seq, slot, f"{type(exc).__name__}: {exc}")
        os.write(setup.results, record)
