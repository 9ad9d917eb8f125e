"""Request counts kept in plain ints (http_serving.tallies): what a collection of the
registry shows is what direct prometheus_client calls would have counted."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from http_serving.metrics import REQUEST_BUCKETS
from http_serving.tallies import Folder, Tally, multiprocess_mode
from http_serving.workers import MULTIPROC_ENV

BOUNDS = (*REQUEST_BUCKETS, float("inf"))
# seconds of answers: below the first bound, on a bound, between, above the last one
SECONDS = [0.0001, 0.0005, 0.0007, 0.0025, 0.003, 1.0, 42.0, 301.0, None, 0.0005]
SENT = [489, 0, 81, 489, 12, 0, 7, 1, 0, 489]


def metrics(registry: CollectorRegistry, folder: Folder | None = None
            ) -> tuple[Counter, Histogram, Counter, Counter]:
    if folder is not None:
        folder.register(registry)
    requests = Counter("t_requests", "r", ["route"], registry=registry)
    seconds = Histogram("t_seconds", "s", ["route"], buckets=REQUEST_BUCKETS, registry=registry)
    sent = Counter("t_sent", "b", ["route"], registry=registry)
    received = Counter("t_received", "b", registry=registry)
    if folder is not None:
        folder.fold_received_into(received)
    return requests, seconds, sent, received


def samples(registry: CollectorRegistry) -> bytes:
    """The exposition without the ``_created`` time stamps (they differ per registry)."""
    return b"\n".join(line for line in generate_latest(registry).splitlines()
                      if b"_created" not in line)


def test_a_collection_shows_what_direct_calls_count() -> None:
    direct = CollectorRegistry()
    requests, seconds, sent, received = metrics(direct)
    for took, size in zip(SECONDS, SENT, strict=True):
        requests.labels("/x").inc()
        if took is not None:
            seconds.labels("/x").observe(took)
        if size:
            sent.labels("/x").inc(size)
    received.inc(100)

    folded, folder = CollectorRegistry(), Folder()
    requests, seconds, sent, _ = metrics(folded, folder)
    tally = Tally(requests.labels("/x"), seconds.labels("/x"), sent.labels("/x"), BOUNDS)
    folder.tallies.append(tally)
    for took, size in zip(SECONDS[:4], SENT[:4], strict=True):
        tally.add(took, size)
    assert folded.get_sample_value("t_requests_total", {"route": "/x"}) == 4  # folded
    for took, size in zip(SECONDS[4:], SENT[4:], strict=True):  # and again, the rest
        tally.add(took, size)
    folder.received += 100
    assert samples(folded) == samples(direct)
    assert samples(folded) == samples(direct)  # a second fold adds nothing


def test_add_now_counts_without_a_fold() -> None:
    registry = CollectorRegistry()
    requests, seconds, sent, _ = metrics(registry)
    tally = Tally(requests.labels("/x"), seconds.labels("/x"), sent.labels("/x"), BOUNDS)
    tally.add_now(0.003, 489)
    assert registry.get_sample_value("t_requests_total", {"route": "/x"}) == 1
    assert registry.get_sample_value("t_seconds_bucket", {"route": "/x", "le": "0.005"}) == 1
    assert registry.get_sample_value("t_sent_total", {"route": "/x"}) == 489


def test_folds_from_another_thread_lose_no_count() -> None:
    registry, folder = CollectorRegistry(), Folder()
    requests, seconds, sent, _ = metrics(registry, folder)
    tally = Tally(requests.labels("/x"), seconds.labels("/x"), sent.labels("/x"), BOUNDS)
    folder.tallies.append(tally)
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            registry.get_sample_value("t_requests_total", {"route": "/x"})

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for _ in range(200_000):
            tally.add(0.001, 3)
    finally:
        done.set()
        scraper.join()
    assert registry.get_sample_value("t_requests_total", {"route": "/x"}) == 200_000
    assert registry.get_sample_value("t_seconds_count", {"route": "/x"}) == 200_000
    assert registry.get_sample_value("t_sent_total", {"route": "/x"}) == 600_000


@pytest.mark.parametrize(("value", "expected"), [(None, False), ("", False), ("/tmp/m", True)])
def test_multiprocess_mode_follows_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                   value: str | None, expected: bool) -> None:
    if value is None:
        monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    else:
        monkeypatch.setenv(MULTIPROC_ENV, value)
    assert multiprocess_mode() is expected
