"""A user-space link emulator: a TCP proxy that makes one node look distant.

    python3 benchmarks/link_emulator.py --listen PORT --target HOST:PORT \\
        [--rtt-ms 40] [--jitter-ms 10] [--rate-mbps 100] [--down-rate-mbps R]

The kernel here has no netem, so ``tc`` cannot shape loopback; this proxy does it in
user space (standard library only).  It listens on ``127.0.0.1:PORT`` and pipes every
connection to the target, and on each direction it adds:

- **delay**: every piece read is stamped ``release = read time + one-way delay`` and
  written no earlier than that.  The one-way delay is ``rtt_ms / 2`` plus a uniform
  jitter in ``[-jitter_ms / 2, +jitter_ms / 2]`` (so a round trip, two one-way trips,
  lies within ``rtt_ms ± jitter_ms``).  Release times never go backwards (a piece
  drawn a shorter delay than the piece before it waits for that one): bytes are
  never reordered, as on a TCP stream.
- **bandwidth cap**: a token bucket in bytes/s (burst :data:`BURST` bytes) paces the
  *reads* of each direction, so the sender is held back by TCP backpressure as on a
  slow uplink, and what the proxy holds in flight is about one bandwidth-delay
  product.  The bucket of a direction is shared by all the emulator's connections:
  the cap is the node's link, not each connection's (several connections to one
  node share its uplink).  ``--rate-mbps`` caps the node->client direction (the one a GET uses);
  the client->node direction is capped only with ``--up-rate-mbps``
  (Mbit/s = 10^6 bit/s; 100 Mbit/s = 12.5 MB/s).
- **handshake**: the client's connect completes at once (loopback), so the first
  bytes it sends are held one extra round trip, as if the TCP handshake had taken
  ``rtt`` before the request could leave.

Importable: :class:`LinkEmulator` (``await start()`` / ``await stop()``, or
:meth:`LinkEmulator.configure` between connections).  Not part of pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from collections import deque
from dataclasses import dataclass

PIECE = 16 * 1024
"""Bytes read per piece when a direction is capped (small pieces pace smoothly)."""
PIECE_UNCAPPED = 256 * 1024
"""Bytes read per piece when a direction is not capped."""
BURST = 64 * 1024
"""Token-bucket depth, bytes: what a capped direction may send at once after idling."""
QUEUE_PIECES = 4096
"""Pieces one direction holds at most (in flight or waiting for a slow receiver)."""


@dataclass
class LinkParams:
    """One link's shape.

    Attributes:
        rtt_ms: round-trip time added, milliseconds (each direction gets half).
        jitter_ms: the round trip varies uniformly within ``rtt_ms ± jitter_ms``;
            each one-way delay within ``rtt_ms / 2 ± jitter_ms / 2``, milliseconds.
        down_rate: node->client cap, bytes/s (0: no cap).
        up_rate: client->node cap, bytes/s (0: no cap).
        handshake: hold the client's first bytes one extra round trip.
    """

    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    down_rate: float = 0.0
    up_rate: float = 0.0
    handshake: bool = True

    def one_way_seconds(self, rng: random.Random) -> float:
        """One draw of the one-way delay, seconds (never negative)."""
        jitter = rng.uniform(-self.jitter_ms / 2, self.jitter_ms / 2) if self.jitter_ms else 0.0
        return max(0.0, (self.rtt_ms / 2 + jitter) / 1000)


class TokenBucket:
    """Paces a byte stream to ``rate`` bytes/s with a burst of ``burst`` bytes."""

    def __init__(self, rate: float, burst: int = BURST) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.taken = 0  # bytes passed so far
        self.trace: list[tuple[float, int]] = []  # (monotonic time, bytes) of every take

    async def take(self, size: int) -> None:
        """Wait until ``size`` bytes may pass (debt allowed: a piece bigger than the
        bucket passes, and the next one waits for the debt to be paid)."""
        self.taken += size
        now = time.monotonic()
        self.trace.append((now, size))
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= size
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


class _Direction:
    """One direction of one connection: a pacing reader and a delaying writer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 params: LinkParams, bucket: TokenBucket | None, rng: random.Random,
                 first_release: float, trace: list[float] | None = None) -> None:
        """``bucket``: the direction's cap, shared by the link's connections (None:
        no cap); ``first_release``: monotonic time before which nothing read counts
        as sent (its one-way delay is added from then on); ``trace``: gets the
        monotonic time of every piece read."""
        self.trace = trace
        self.reader = reader
        self.writer = writer
        self.params = params
        self.bucket = bucket
        self.piece = PIECE if bucket is not None else PIECE_UNCAPPED
        self.rng = rng
        self.hold_until = first_release
        self.last_release = 0.0
        self.queue: deque[tuple[float, bytes | None]] = deque()
        self.ready = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()

    async def read_side(self) -> None:
        """Read pieces (paced by the bucket), stamp each with its release time."""
        try:
            while True:
                await self.room.wait()
                data = await self.reader.read(self.piece)
                if self.trace is not None and data:
                    self.trace.append(time.monotonic())
                if self.bucket is not None and data:
                    await self.bucket.take(len(data))
                sent = max(time.monotonic(), self.hold_until)
                release = sent + self.params.one_way_seconds(self.rng)
                self.last_release = max(self.last_release, release)
                self.queue.append((self.last_release, data or None))
                self.ready.set()
                if len(self.queue) >= QUEUE_PIECES:
                    self.room.clear()
                if not data:
                    return
        except (OSError, asyncio.IncompleteReadError):
            self.queue.append((time.monotonic(), None))
            self.ready.set()

    async def write_side(self) -> None:
        """Write each piece at its release time, in order; half-close at EOF."""
        try:
            while True:
                while not self.queue:
                    self.ready.clear()
                    await self.ready.wait()
                release, data = self.queue.popleft()
                if len(self.queue) < QUEUE_PIECES:
                    self.room.set()
                wait = release - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    if self.writer.can_write_eof():
                        self.writer.write_eof()
                    return
                self.writer.write(data)
                await self.writer.drain()
        except OSError:
            self.writer.close()

    async def run(self) -> None:
        """Both halves until EOF (or an error) has been passed on."""
        reading = asyncio.ensure_future(self.read_side())
        try:
            await self.write_side()
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await reading


class LinkEmulator:
    """A TCP proxy on ``127.0.0.1:listen_port`` to ``target_host:target_port`` that
    adds delay, jitter and a bandwidth cap per direction (see the module docstring).

    Args:
        listen_port: the port to listen on (0: any free port, see :attr:`port`).
        target_host: the node's host.
        target_port: the node's port.
        params: the link's shape (changed later with :meth:`configure`).
        seed: seed of the jitter draws (None: random).
    """

    def __init__(self, listen_port: int, target_host: str, target_port: int,
                 params: LinkParams | None = None, seed: int | None = None) -> None:
        self.listen_port = listen_port
        self.target_host = target_host
        self.target_port = target_port
        self.params = params or LinkParams()
        self.buckets = self._buckets(self.params)
        self.rng = random.Random(seed)
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.connections = 0
        self.requests: list[float] = []
        """Monotonic times of the client->node pieces read since :meth:`configure`
        (requests leaving the client)."""

    @property
    def port(self) -> int:
        """The port listened on (known after :meth:`start`)."""
        if self.server is None:
            return self.listen_port
        return int(self.server.sockets[0].getsockname()[1])

    @staticmethod
    def _buckets(params: LinkParams) -> tuple[TokenBucket | None, TokenBucket | None]:
        """The shared ``(up, down)`` buckets of a link of shape ``params``."""
        return (TokenBucket(params.up_rate) if params.up_rate > 0 else None,
                TokenBucket(params.down_rate) if params.down_rate > 0 else None)

    @property
    def down_bytes(self) -> int:
        """Bytes the capped node->client direction passed since the last :meth:`configure`
        (0 when that direction is not capped)."""
        down = self.buckets[1]
        return 0 if down is None else down.taken

    def configure(self, params: LinkParams) -> None:
        """Use ``params`` (and fresh shared buckets) for connections opened from now on."""
        self.params = params
        self.buckets = self._buckets(params)
        self.requests = []

    @property
    def down_trace(self) -> list[tuple[float, int]]:
        """``(monotonic time, bytes)`` of every node->client piece passed since the last
        :meth:`configure` (empty when that direction is not capped)."""
        down = self.buckets[1]
        return [] if down is None else down.trace

    async def start(self) -> LinkEmulator:
        """Listen; returns self."""
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.listen_port)
        return self

    async def stop(self) -> None:
        """Stop listening and drop every open connection."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.connections += 1
        params, (up_bucket, down_bucket) = self.params, self.buckets
        accepted = time.monotonic()
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host,
                                                                 self.target_port)
            first_up = accepted + params.rtt_ms / 1000 if params.handshake else accepted
            up = _Direction(reader, up_writer, params, up_bucket, self.rng, first_up,
                            self.requests)
            down = _Direction(up_reader, writer, params, down_bucket, self.rng, accepted)
            await asyncio.gather(up.run(), down.run())
        except OSError:
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.close()
            self.tasks.discard(task)


def mbps_to_bytes(mbps: float) -> float:
    """Megabits per second (10^6 bit/s) to bytes per second."""
    return mbps * 1e6 / 8


async def _main(args: argparse.Namespace) -> None:
    host, _, port = args.target.rpartition(":")
    params = LinkParams(args.rtt_ms, args.jitter_ms, mbps_to_bytes(args.rate_mbps),
                        mbps_to_bytes(args.up_rate_mbps), not args.no_handshake)
    emulator = await LinkEmulator(args.listen, host or "127.0.0.1", int(port), params,
                                  args.seed).start()
    down = f"{args.rate_mbps} Mbit/s" if args.rate_mbps else "no cap"
    up = f"{args.up_rate_mbps} Mbit/s" if args.up_rate_mbps else "no cap"
    print(f"link emulator 127.0.0.1:{emulator.port} -> {args.target}: rtt {args.rtt_ms} ms "
          f"± {args.jitter_ms} ms, node->client {down}, client->node {up}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.stop()


def main() -> None:
    """The command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--target", required=True, help="HOST:PORT of the node")
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="round trip added, ms")
    parser.add_argument("--jitter-ms", type=float, default=0.0,
                        help="round trip varies uniformly by ± this, ms")
    parser.add_argument("--rate-mbps", type=float, default=0.0,
                        help="node->client cap, Mbit/s (0: none)")
    parser.add_argument("--up-rate-mbps", type=float, default=0.0,
                        help="client->node cap, Mbit/s (0: none)")
    parser.add_argument("--no-handshake", action="store_true",
                        help="do not hold the client's first bytes one extra round trip")
    parser.add_argument("--seed", type=int, default=None, help="seed of the jitter draws")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
