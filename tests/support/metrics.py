"""Prometheus samples: scraped from a process's ``/metrics``, or read in this process."""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str, name: str, **labels: str) -> float:
    """The value of sample ``name{labels}`` on ``url``/metrics (0.0 when absent).

    Parsed with prometheus-client's own text-format parser.
    """
    text = httpx.get(url.rstrip("/") + "/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def sample(name: str, **labels: str) -> float:
    """The value of sample ``name{labels}`` in this process's default registry (0.0 when
    absent): what an in-process app or client counted."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
