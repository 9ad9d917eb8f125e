"""Chunk encoding in worker processes (storage_network.write.encode_workers), no network.

What the workers make is compared with :meth:`StripeCodec.encode` on the same
chunks (public and sealed), payload by payload and with payloads at once; then
how a payload that fails, is abandoned or outruns its consumer leaves the
encoder, and what happens when a worker fails on a chunk or dies.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import AsyncIterator, Iterator

import pytest

from storage_network.coding.chunker import iter_chunk_views, iter_chunks
from storage_network.coding.codec import EncodedChunk, StripeCodec
from storage_network.coding.sealing import CacheSecret
from storage_network.config import ChunkingParams
from storage_network.wire.stripe import ROOT_BYTES, verify_shard
from storage_network.write.encode_worker import SlotLayout, stored_bound
from storage_network.write.encode_workers import EncoderError, WorkerEncoder

K, M = 4, 2
CHUNKING = ChunkingParams(min_size=4096, avg_size=16384, max_size=65536)
SECRET = CacheSecret("test-secret-1", bytes(range(32)))
OTHER = CacheSecret("test-secret-2", bytes(range(1, 33)))


def data(size: int, seed: int) -> bytes:
    """``size`` bytes, half random and half repeated text (some chunks compress)."""
    rng = random.Random(seed)
    text = b"nixshard worker encoding test " * (size // 60 + 1)
    return b"".join(rng.randbytes(4096) + text[:4096] for _ in range(size // 8192 + 1))[:size]


def pieces(payload: bytes, size: int = 50_000) -> Iterator[bytes]:
    """``payload`` in pieces of ``size`` bytes."""
    for start in range(0, len(payload), size):
        yield payload[start:start + size]


def expected(payload: bytes, secret: CacheSecret | None = None) -> list[EncodedChunk]:
    """What the thread path makes of ``payload``."""
    codec = StripeCodec(K, M)
    return [codec.encode(chunk, secret) for chunk in iter_chunks(pieces(payload), CHUNKING)]


def encoder(**kwargs: object) -> WorkerEncoder:
    return WorkerEncoder(K, M, "isa_l_rs_cauchy", 3, CHUNKING.max_size,
                         secrets=(SECRET, OTHER), **kwargs)  # type: ignore[arg-type]


async def collect(enc: WorkerEncoder, payload: bytes, secret: CacheSecret | None = None,
                  window: int = 8) -> list[EncodedChunk]:
    return [e async for e in enc.encoded_chunks(pieces(payload), CHUNKING, secret, window)]


async def test_workers_make_what_the_codec_makes() -> None:
    payload = data(700_000, 1)
    async with encoder(workers=2) as enc:
        got = await collect(enc, payload)
        sealed = await collect(enc, payload, OTHER)
        empty = await collect(enc, b"")
    assert len(got) > 20
    assert got == expected(payload)
    assert [e.ref.key for e in got] == [e.ref.key for e in expected(payload)]
    assert sealed == expected(payload, OTHER)
    assert all(e.ref.key for e in sealed)
    assert [e.ref.key for e in sealed] == [e.ref.key for e in expected(payload, OTHER)]
    assert empty == []
    for enc_chunk in got[:3]:
        for index, body in enumerate(enc_chunk.bodies):
            verify_shard(enc_chunk.ref.root, index, body)


async def test_payloads_at_once_each_get_their_own_chunks_in_order() -> None:
    payloads = [data(300_000 + 50_000 * i, 10 + i) for i in range(4)]
    async with encoder(workers=2, slots=3) as enc:
        got = await asyncio.gather(*(collect(enc, p, SECRET if i % 2 else None, window=2)
                                     for i, p in enumerate(payloads)))
    for i, p in enumerate(payloads):
        assert got[i] == expected(p, SECRET if i % 2 else None)


async def test_a_failing_payload_fails_alone_and_frees_its_slots() -> None:
    def broken() -> Iterator[bytes]:
        yield from pieces(data(200_000, 3))
        raise OSError("disk went away")

    payload = data(300_000, 4)
    async with encoder(workers=1, slots=1) as enc:
        with pytest.raises(OSError, match="disk went away"):
            _ = [e async for e in enc.encoded_chunks(broken(), CHUNKING, None, 4)]
        assert await collect(enc, payload) == expected(payload)


async def test_an_abandoned_payload_frees_its_slots() -> None:
    payload = data(400_000, 5)
    async with encoder(workers=1, slots=1) as enc:
        chunks = enc.encoded_chunks(pieces(payload), CHUNKING, None, 3)
        assert isinstance(chunks, AsyncIterator)
        first = await anext(chunks)
        await chunks.aclose()
        assert first == expected(payload)[0]
        assert await collect(enc, payload) == expected(payload)


async def test_a_payload_reads_at_most_its_window_ahead() -> None:
    payload = data(2_000_000, 6)
    read = 0

    def counted() -> Iterator[bytes]:
        nonlocal read
        for piece in pieces(payload, CHUNKING.max_size):
            read += len(piece)
            yield piece

    window = 3
    async with encoder(workers=1) as enc:
        chunks = enc.encoded_chunks(counted(), CHUNKING, None, window)
        await anext(chunks)
        await asyncio.sleep(0.5)  # the reader runs on as far as it may
        # the consumer holds 1 chunk, ``window`` more are queued or encoded, and the
        # chunker holds at most 4 max-size chunks plus a piece beyond the last of them
        assert read <= (1 + window + 5) * CHUNKING.max_size < len(payload)
        await chunks.aclose()


async def test_a_chunk_a_worker_fails_on_fails_its_payload(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = StripeCodec.encode_parts

    def fail_on_big(self: StripeCodec, chunk: memoryview, secret: CacheSecret | None = None
                    ) -> object:
        if bytes(chunk[:8]) == b"FAILTHIS":
            raise RuntimeError("this chunk is cursed")
        return real(self, chunk, secret)

    monkeypatch.setattr(StripeCodec, "encode_parts", fail_on_big)  # inherited by the fork
    good = data(200_000, 7)
    async with encoder(workers=2) as enc:
        with pytest.raises(EncoderError, match="this chunk is cursed"):
            await collect(enc, b"FAILTHIS" + bytes(10_000))
        monkeypatch.setattr(StripeCodec, "encode_parts", real)
        assert await collect(enc, good) == expected(good)


async def test_a_dead_worker_fails_the_encoder() -> None:
    async with encoder(workers=2) as enc:
        os.kill(enc._procs[0].pid or 0, signal.SIGKILL)  # noqa: SLF001 - the test's victim
        with pytest.raises(EncoderError, match="exited"):
            for _ in range(20):  # until the loop has seen the exit
                await collect(enc, data(300_000, 8))
                await asyncio.sleep(0.05)


async def test_what_the_encoder_refuses() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WorkerEncoder(K, M, "isa_l_rs_cauchy", 3, CHUNKING.max_size, workers=0)
    async with encoder(workers=1) as enc:
        with pytest.raises(ValueError, match="not given to the encoder"):
            await collect(enc, b"x", CacheSecret("stranger", bytes(32)))
        big = ChunkingParams(min_size=4096, avg_size=16384, max_size=2 * CHUNKING.max_size)
        with pytest.raises(ValueError, match="exceed|window"):
            await anext(enc.encoded_chunks(pieces(b"x"), big, None, 4))
        assert enc.fits(StripeCodec(K, M), CHUNKING)
        assert not enc.fits(StripeCodec(K, M + 1), CHUNKING)
        assert not enc.fits(StripeCodec(K, M, zstd_level=9), CHUNKING)
        assert not enc.fits(StripeCodec(K, M), big)
    with pytest.raises(RuntimeError, match="enter"):
        await collect(enc, b"x")


def test_a_slot_holds_the_biggest_chunk_and_its_bodies() -> None:
    layout = SlotLayout.for_codec(3, CHUNKING.max_size, K, K + M)
    incompressible = random.Random(9).randbytes(CHUNKING.max_size)
    enc = StripeCodec(K, M).encode(incompressible, SECRET)
    assert enc.stored_bytes <= layout.out_bytes
    assert enc.ref.stored_size <= stored_bound(CHUNKING.max_size)
    assert layout.output_at(1) == layout.size + layout.in_bytes
    assert layout.total == 3 * layout.size
    assert len(enc.ref.root) == ROOT_BYTES


def test_chunk_views_are_released_when_the_next_is_asked_for() -> None:
    payload = data(300_000, 11)
    views = iter_chunk_views(pieces(payload), CHUNKING)
    first = next(views)
    copy = bytes(first)
    next(views)
    with pytest.raises(ValueError):
        bytes(first)
    assert copy == next(iter_chunks(pieces(payload), CHUNKING))
    views.close()
