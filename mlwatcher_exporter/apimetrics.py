"""The service's own metrics: requests by handler and status, latency, rows ingested.

Counted under one lock by the API's worker threads, published as fresh metric families
at each scrape (the collector pattern of :mod:`.collector`).
"""

from __future__ import annotations

import bisect
import threading
from typing import Dict, Iterable, List, Sequence, Tuple

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["ApiMetrics", "HANDLERS", "FORMATS", "LATENCY_BUCKETS"]

#: Values of the ``handler`` label.
HANDLERS = ("observations", "openapi", "models", "other", "windows")
#: Values of the ``format`` label.
FORMATS = ("json", "npy", "npz")
#: Upper bounds of the request latency histogram, in seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics(Collector):
    """Counters of the ingest API for the models `models`."""

    def __init__(self, models: Sequence[str]) -> None:
        self._lock = threading.Lock()
        self._requests: Dict[Tuple[str, str], int] = {("observations", "200"): 0}
        self._latency: Dict[str, List[float]] = {
            h: [0.0] * (len(LATENCY_BUCKETS) + 1) for h in HANDLERS}
        self._latency_sum: Dict[str, float] = {h: 0.0 for h in HANDLERS}
        self._rows: Dict[Tuple[str, str], int] = {(m, f): 0 for m in models for f in FORMATS}
        self._batches: Dict[Tuple[str, str], int] = dict(self._rows)

    def request(self, handler: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        slot = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        key = (handler, str(status))
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1
            self._latency[handler][slot] += 1
            self._latency_sum[handler] += seconds

    def accepted(self, model: str, fmt: str, rows: int) -> None:
        """Count a batch of `rows` rows accepted for `model`."""
        with self._lock:
            self._rows[(model, fmt)] += rows
            self._batches[(model, fmt)] += 1

    def register(self, registry: CollectorRegistry) -> "ApiMetrics":
        """Register on `registry`; returns self."""
        registry.register(self)
        return self

    def collect(self) -> Iterable[Metric]:
        """Fresh families of the current counts."""
        with self._lock:
            requests = dict(self._requests)
            latency = {h: list(v) for h, v in self._latency.items()}
            latency_sum = dict(self._latency_sum)
            rows, batches = dict(self._rows), dict(self._batches)
        family = CounterMetricFamily(
            "mlwatcher_http_requests", "HTTP requests answered by the service, by handler "
            "and status code.", labels=["handler", "code"])
        for (handler, code), value in sorted(requests.items()):
            family.add_metric([handler, code], value)
        yield family
        histogram = HistogramMetricFamily(
            "mlwatcher_http_request_duration_seconds", "Seconds from a complete request "
            "(head and body read) to its answer, by handler.", labels=["handler"])
        for handler in HANDLERS:
            cumulative, buckets = 0.0, []
            for bound, count in zip(LATENCY_BUCKETS + (float("inf"),), latency[handler]):
                cumulative += count
                buckets.append((_bound(bound), cumulative))
            histogram.add_metric([handler], buckets, latency_sum[handler])
        yield histogram
        family = CounterMetricFamily(
            "mlwatcher_ingest_rows", "Rows accepted by the ingest API, by model and body "
            "format.", labels=["model", "format"])
        for (model, fmt), value in sorted(rows.items()):
            family.add_metric([model, fmt], value)
        yield family
        family = CounterMetricFamily(
            "mlwatcher_ingest_batches", "Batches accepted by the ingest API, by model and "
            "body format.", labels=["model", "format"])
        for (model, fmt), value in sorted(batches.items()):
            family.add_metric([model, fmt], value)
        yield family


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)
