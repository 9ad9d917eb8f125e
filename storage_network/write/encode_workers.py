"""Chunk encoding in worker processes: sha256, zstd, pyeclib and the stripe tree off the GIL.

pyeclib's encode holds the GIL, so chunks encoded on threads (the client's
pool, :func:`~storage_network.write.publish.store_payload` by default) take
turns with each other and with the event loop that uploads them.
:class:`WorkerEncoder` runs :meth:`StripeCodec.encode_parts
<storage_network.coding.codec.StripeCodec.encode_parts>` in ``workers``
processes instead (:func:`storage_network.write.encode_worker.work`), forked
when it is entered: enter it before the process starts other threads (a fork
copies the calling thread only), as ``nixshard push`` does.  The output is
byte for byte what the threads make, for about the same CPU time (the
copies in and out of the slots cost about what the threads' GIL hand-offs
did); what changes is that pyeclib's share no longer serialises the encoding.

Memory and copies: ``slots`` areas of anonymous shared memory
(:class:`~storage_network.write.encode_worker.SlotLayout`), mapped before the
fork so workers and parent share them.  Per payload a reader thread reads the
pieces, cuts chunks (:func:`~storage_network.coding.chunker.iter_chunk_views`)
and copies each once into a free slot, then queues it; a worker reads it in
place and writes the shard bodies into the slot; the event loop, woken by the
result record (``add_reader``, no thread waits for results), copies them out
as ``bytes`` and frees the slot.  A payload has at most ``window`` chunks
queued or encoded but not yet taken by its consumer, and all payloads
together at most ``slots`` chunks at the workers: memory does not grow with
payload size.
"""

from __future__ import annotations

import asyncio
import itertools
import mmap
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import AsyncGenerator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.process import BaseProcess
from types import TracebackType

from storage_network.coding.chunker import iter_chunk_views
from storage_network.coding.codec import EncodedChunk, StripeCodec
from storage_network.coding.sealing import CacheSecret
from storage_network.config import ChunkingParams, Network
from storage_network.write.encode_worker import (
    FAILED,
    HEAD,
    TASK,
    EncoderError,
    SlotLayout,
    WorkerSetup,
    read_result,
    work,
)

__all__ = ["EncoderError", "WorkerEncoder"]

_POLL_SECONDS = 0.05  # how often a blocked reader thread looks whether its payload stopped
DEFAULT_WORKERS = 4
"""Most worker processes by default: one payload reader feeds about this many."""
_JOIN_SECONDS = 5.0


class _Run:
    """One payload being encoded: what its reader thread and its consumer share.

    ``results`` (sequence number -> encoded chunk or the error for it) and
    ``wake`` belong to the event loop; ``permits`` (chunks it may queue
    beyond those taken, ``window`` at first) and ``stopped`` are shared with
    the reader thread.
    """

    def __init__(self, run_id: int, secret: int, window: int) -> None:
        self.id = run_id
        self.secret = secret
        self.permits = threading.Semaphore(window)
        self.stopped = False
        self.results: dict[int, EncodedChunk | EncoderError] = {}
        self.taken = 0
        self.wake: asyncio.Future[None] | None = None

    def wake_up(self) -> None:
        """Wake the consumer if it waits (on the event loop)."""
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)


class WorkerEncoder:
    """Encode chunks in forked worker processes (see the module docstring).

    Use as ``async with WorkerEncoder(...) as encoder:`` on the event loop that
    stores the payloads, before other threads start, and pass it to
    :func:`~storage_network.write.publish.store_payload` as ``encoder``.  One
    encoder serves any number of payloads at once.

    Args:
        k, m, codec, zstd_level: the erasure code and compression level (those
            of the network the payloads go to).
        max_chunk: the largest chunk, bytes (the network's ``chunking.max_size``).
        workers: processes (default: one per core, at most :data:`DEFAULT_WORKERS`).
        slots: chunks at the workers at once (default: two per worker).  Shared
            memory: ``slots`` x (``max_chunk`` + the bodies of such a chunk),
            about 2.6 x ``max_chunk`` per slot at k=4, n=6.
        secrets: the cache secrets chunks may be sealed under (a private
            cache's keyring), known to the workers from the fork on.

    Raises:
        ValueError: ``workers``, ``slots`` or ``max_chunk`` below 1, or codec
            parameters pyeclib refuses (raised here, before any fork).
    """

    def __init__(self, k: int, m: int, codec: str, zstd_level: int, max_chunk: int, *,
                 workers: int | None = None, slots: int | None = None,
                 secrets: Sequence[CacheSecret] = ()) -> None:
        self.workers = workers if workers is not None else min(os.cpu_count() or 1,
                                                               DEFAULT_WORKERS)
        slot_count = slots if slots is not None else 2 * self.workers
        if self.workers < 1 or slot_count < 1 or max_chunk < 1:
            raise ValueError(f"workers ({self.workers}), slots ({slot_count}) and "
                             f"max_chunk ({max_chunk}) must be at least 1")
        StripeCodec(k, m, codec, zstd_level)  # bad parameters fail here, not in a worker
        self.k, self.m, self.codec, self.zstd_level = k, m, codec, zstd_level
        self.layout = SlotLayout.for_codec(slot_count, max_chunk, k, k + m)
        self.secrets = tuple(secrets)
        self._procs: list[BaseProcess] = []
        self._memory: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._tasks = self._results = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._runs: dict[int, _Run] = {}
        self._run_ids = itertools.count()
        self._inbox = bytearray()
        self._broken: str | None = None

    @classmethod
    def for_network(cls, network: Network, secrets: Sequence[CacheSecret] = (), *,
                    workers: int | None = None, slots: int | None = None) -> WorkerEncoder:
        """An encoder for the payloads of ``network`` (its codec, k, m, zstd level and
        largest chunk); ``secrets``: its keyring, for a private network.

        Raises:
            ValueError: as the constructor.
        """
        return cls(network.k, network.m, network.codec, network.zstd_level,
                   network.chunking.max_size, workers=workers, slots=slots, secrets=secrets)

    def fits(self, codec: StripeCodec, chunking: ChunkingParams) -> bool:
        """True when this encoder makes what ``codec`` makes of chunks cut by ``chunking``."""
        return ((self.k, self.m, self.codec, self.zstd_level)
                == (codec.k, codec.m, codec.codec, codec.zstd_level)
                and chunking.max_size <= self.layout.in_bytes)

    # ---- life cycle

    async def __aenter__(self) -> WorkerEncoder:
        """Map the slots and fork the workers (see the class docstring).

        Raises:
            RuntimeError: entered twice.
            OSError: a pipe, the mapping or a fork failed (the workers already
                forked are stopped).
        """
        if self._memory is not None:
            raise RuntimeError("a WorkerEncoder is entered once")
        self._loop = asyncio.get_running_loop()
        try:
            self._start()
        except BaseException:
            await self.aclose()
            raise
        return self

    def _start(self) -> None:
        """Map the slots, fork the workers, watch their results and their exits."""
        assert self._loop is not None
        self._memory = mmap.mmap(-1, self.layout.total)
        self._view = memoryview(self._memory)
        tasks_r, self._tasks = os.pipe()
        self._results, results_w = os.pipe()
        setup = WorkerSetup(self.k, self.m, self.codec, self.zstd_level, self.layout,
                            self._memory, tasks_r, results_w, (self._tasks, self._results),
                            self.secrets)
        context = multiprocessing.get_context("fork")
        try:
            for number in range(self.workers):
                worker = context.Process(target=work, args=(setup,), daemon=True,
                                         name=f"nixshard-encode-{number + 1}")
                worker.start()
                self._procs.append(worker)
        finally:
            os.close(tasks_r)  # from now on only the workers hold these ends
            os.close(results_w)
        os.set_blocking(self._results, False)
        for slot in range(self.layout.slots):
            self._free.put(slot)
        self._loop.add_reader(self._results, self._on_results)
        for proc in self._procs:
            self._loop.add_reader(proc.sentinel, self._on_exit, proc)

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the workers (each ends the chunk in hand), reap them, unmap the slots.

        Payloads still being encoded fail with :class:`EncoderError`.  Idempotent.
        """
        if self._loop is None:
            return
        self._break("the encoder was closed")
        if self._results >= 0:
            self._loop.remove_reader(self._results)
        for proc in self._procs:
            self._loop.remove_reader(proc.sentinel)
        if self._tasks >= 0:
            os.close(self._tasks)  # the workers read the end of the pipe and exit
            self._tasks = -1
        deadline = time.monotonic() + _JOIN_SECONDS
        while any(p.is_alive() for p in self._procs) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
            proc.join()  # reaped: their CPU time counts as this process's children's
        self._procs.clear()
        if self._results >= 0:
            os.close(self._results)
            self._results = -1
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._memory is not None:
            self._memory.close()
        self._loop = None

    def _break(self, why: str) -> None:
        """Fail every payload being encoded, and every later one, with ``why``."""
        if self._broken is None:
            self._broken = why
        for run in self._runs.values():
            run.wake_up()

    def _on_exit(self, proc: BaseProcess) -> None:
        """A worker's sentinel became readable: it exited."""
        assert self._loop is not None
        self._loop.remove_reader(proc.sentinel)
        proc.join(0)
        self._break(f"encoder worker process {proc.pid} exited (code {proc.exitcode})")

    # ---- results (on the event loop)

    def _on_results(self) -> None:
        """Read what the workers wrote; settle each whole result record."""
        try:
            data = os.read(self._results, 1 << 16)
        except BlockingIOError:
            return
        if not data:
            assert self._loop is not None
            self._loop.remove_reader(self._results)
            self._break("the encoder's worker processes closed their result pipe")
            return
        inbox = self._inbox
        inbox += data
        while len(inbox) >= HEAD.size:
            length, run_id, seq, slot, status = HEAD.unpack_from(inbox, 0)
            if len(inbox) < length:
                break
            with memoryview(inbox) as view, view[HEAD.size:length] as body:
                self._settle(self._runs.get(run_id), seq, slot, status, body)
            del inbox[:length]

    def _settle(self, run: _Run | None, seq: int, slot: int, status: int,
                body: memoryview) -> None:
        """Copy a result's shard bodies out of its slot for ``run`` (None: its payload was
        abandoned), then free the slot."""
        if run is not None:
            outcome: EncodedChunk | EncoderError
            if status == FAILED:
                outcome = EncoderError(f"encoding a chunk failed: {bytes(body).decode()}")
            else:
                assert self._view is not None
                ref, lengths = read_result(body)
                at = self.layout.output_at(slot)
                bodies = []
                for length in lengths:
                    bodies.append(self._view[at:at + length].tobytes())
                    at += length
                outcome = EncodedChunk(ref, tuple(bodies))
            run.results[seq] = outcome
            if seq == run.taken:
                run.wake_up()
        self._free.put(slot)

    # ---- tasks (on a payload's reader thread)

    def _secret_index(self, secret: CacheSecret | None) -> int:
        """-1 for no secret, else its index in :attr:`secrets`.

        Raises:
            ValueError: ``secret`` was not given to the encoder.
        """
        if secret is None:
            return -1
        for index, known in enumerate(self.secrets):
            if known.secret == secret.secret:
                return index
        raise ValueError(f"cache secret {secret.name} was not given to the encoder")

    def _halted(self, run: _Run) -> bool:
        """True once ``run`` stopped or the encoder broke."""
        return run.stopped or self._broken is not None

    def _permit(self, run: _Run) -> bool:
        """Take one of ``run``'s permits; False if it halted meanwhile (looked at every
        :data:`_POLL_SECONDS`)."""
        while not self._halted(run):
            if run.permits.acquire(timeout=_POLL_SECONDS):
                return True
        return False

    def _slot(self, run: _Run) -> int | None:
        """Take a free slot; None if ``run`` halted meanwhile."""
        while not self._halted(run):
            try:
                return self._free.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                pass
        return None

    def _produce(self, run: _Run, chunks: Iterator[memoryview]) -> int:
        """Queue the chunks of ``chunks``, each in a free slot, as long as ``run`` has
        permits; how many were queued.  What reading the payload raises propagates."""
        assert self._view is not None
        sent = 0
        try:
            for chunk in chunks:
                slot = self._slot(run) if self._permit(run) else None
                if slot is None:
                    break
                try:
                    start = self.layout.input_at(slot)
                    self._view[start:start + len(chunk)] = chunk
                    os.write(self._tasks, TASK.pack(run.id, sent, slot, len(chunk), run.secret))
                except BaseException:
                    self._free.put(slot)
                    raise
                sent += 1
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # releases the chunker's buffer now, on this thread
        return sent

    # ---- a payload

    async def encoded_chunks(self, pieces: Iterable[bytes], chunking: ChunkingParams,
                             secret: CacheSecret | None, window: int
                             ) -> AsyncGenerator[EncodedChunk, None]:
        """The encoded chunks of a payload, in order.  ``pieces`` is read and chunked
        on a helper thread, which queues at most ``window`` chunks ahead of the
        consumer.

        Args:
            secret: seal every chunk under it (one of :attr:`secrets`), or None.
            window: chunks queued or encoded but not yet taken, at most (>= 1).

        Raises:
            EncoderError: a worker failed on a chunk, or exited.
            ValueError: ``secret`` is not one of :attr:`secrets`, ``window`` < 1,
                or ``chunking`` cuts chunks larger than the slots.
            RuntimeError: the encoder is not entered.
            Exception: whatever reading ``pieces`` raises.
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError("enter the WorkerEncoder (async with) before encoding")
        if chunking.max_size > self.layout.in_bytes or window < 1:
            raise ValueError(f"chunks of up to {chunking.max_size} bytes (the encoder takes "
                             f"{self.layout.in_bytes}) or a window of {window} chunks")
        run = _Run(next(self._run_ids), self._secret_index(secret), window)
        self._runs[run.id] = run
        reader = ThreadPoolExecutor(1, thread_name_prefix="nixshard-read")
        producer = loop.run_in_executor(reader, self._produce, run,
                                        iter_chunk_views(pieces, chunking))
        producer.add_done_callback(lambda _: run.wake_up())
        try:
            while True:
                outcome = run.results.pop(run.taken, None)
                if outcome is not None:
                    run.taken += 1
                    run.permits.release()
                    if isinstance(outcome, EncoderError):
                        raise outcome
                    yield outcome
                    continue
                if self._broken is not None:
                    raise EncoderError(self._broken)
                if producer.done() and run.taken >= producer.result():
                    return  # result() raises what reading the payload raised
                run.wake = loop.create_future()
                await run.wake
        finally:
            run.stopped = True
            del self._runs[run.id]  # results still to come are dropped, their slots freed
            if not producer.done():
                await asyncio.wait([producer])  # within _POLL_SECONDS
            reader.shutdown(wait=False)
