"""A TCP relay on 127.0.0.1: the endpoint of one bucket node of a local network.

    python relay.py LISTEN_PORT TARGET_PORT

Every connection to LISTEN_PORT is piped to TARGET_PORT (a SeaweedFS S3 port), so a
bucket reached through its own relay goes offline, open connections included, when
the relay is killed, as a crashed node does (see :mod:`nixshard.localnet.buckets`).
Run as a script (standard library only), not as a module of the package.
"""

from __future__ import annotations

import asyncio
import sys

PIECE = 1 << 16


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until EOF, then half-close ``writer``."""
    try:
        while data := await reader.read(PIECE):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


async def serve(listen: int, target: int) -> None:
    """Relay ``127.0.0.1:listen`` to ``127.0.0.1:target`` until killed."""
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        up_writer.close()
        writer.close()

    server = await asyncio.start_server(relay, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2])))
