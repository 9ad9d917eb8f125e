"""The NAR-bytes progress bar of ``nixshard push`` (``click.progressbar`` on stderr)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TextIO

import click

from .closure import PathInfo
from .push import ProgressCallback, format_bytes


def nar_total(infos: Sequence[PathInfo]) -> int:
    """Bytes of NAR to read for ``infos``: the sum of their known ``nar_size``."""
    return sum(info.nar_size or 0 for info in infos)


def show_progress(flag: bool | None, stream: TextIO) -> bool:
    """Whether to draw the bar: ``flag`` when given (``--progress/--no-progress``),
    else whether ``stream`` is a terminal."""
    if flag is not None:
        return flag
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@contextlib.contextmanager
def nar_progress(total: int, enabled: bool, stream: TextIO | None = None
                 ) -> Iterator[ProgressCallback | None]:
    """A bar over ``total`` NAR bytes on ``stream`` (default stderr).

    Yields the callback to hand to :func:`uploader.push.push_closure` as
    ``progress`` (it takes a byte count and must run on one thread), or None
    when ``enabled`` is false.  On a stream that is not a terminal click
    writes only the label, once.
    """
    if not enabled:
        yield None
        return
    out = stream if stream is not None else click.get_text_stream("stderr")
    total_text = format_bytes(total)

    def describe(done: int | None) -> str | None:
        return None if done is None else f"{format_bytes(done)} of {total_text}"

    with click.progressbar(length=max(total, 1), label="pushing NARs", file=out,
                           item_show_func=describe) as bar:
        def advance(count: int) -> None:
            bar.update(count, min(bar.pos + count, total))

        yield advance
