"""SIGINT and SIGTERM for the push services (``--spool``, ``--watch-store``): the first
signal asks the service to stop, a second abandons the push in progress."""

from __future__ import annotations

import asyncio
import logging
import signal
from types import TracebackType
from typing import Generic, TypeVar

log = logging.getLogger("nixshard.push")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

T = TypeVar("T")


class StopOnSignal(Generic[T]):
    """While entered, SIGINT and SIGTERM stop a service running as ``task``.

    The first signal sets ``stop`` (logging ``<SIGNAL>: <first_message>``), so
    the service finishes what it does and returns; a second cancels ``task``
    (:meth:`wait` then returns None).  The handlers are removed on exit.

    Args:
        loop: the running event loop.
        stop: the event the service checks between rounds.
        task: the service's task.
        first_message: what the first signal logs after the signal's name.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event,
                 task: asyncio.Task[T], first_message: str) -> None:
        self.loop = loop
        self.stop = stop
        self.task = task
        self.first_message = first_message
        self.signals = 0

    @property
    def abandoned(self) -> bool:
        """Whether a second signal cancelled the task."""
        return self.signals >= 2

    async def wait(self) -> T | None:
        """What the task returns, or None when a second signal abandoned it.

        Raises:
            asyncio.CancelledError: the task was cancelled otherwise.
            Exception: what the task raised.
        """
        try:
            return await self.task
        except asyncio.CancelledError:
            if not self.abandoned:
                raise
            return None

    def _on_signal(self, signum: int) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals == 1:
            log.info("%s: %s", name, self.first_message)
            self.stop.set()
        else:
            log.warning("%s again: abandoning the push in progress", name)
            self.task.cancel()

    def __enter__(self) -> StopOnSignal[T]:
        for signum in STOP_SIGNALS:
            self.loop.add_signal_handler(signum, self._on_signal, signum)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for signum in STOP_SIGNALS:
            self.loop.remove_signal_handler(signum)
