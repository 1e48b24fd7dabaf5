"""The client's own counters: rows sent, rows dropped by reason, retries, rows buffered."""

from __future__ import annotations

import threading
from typing import Dict, Iterable, List

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["ClientCounts", "DROP_REASONS", "register_client", "unregister_client"]

#: Why the client dropped rows: its buffer was full (the oldest go first), the server
#: refused them (4xx), kept failing (5xx after ``max_attempts``), the batch could not be
#: copied or encoded, or the client was closed with rows unsent.
DROP_REASONS = ("buffer_full", "rejected", "server_error", "invalid", "closed")
_ATTRIBUTE = "_mlwatcher_client_collector"
_LOCK = threading.Lock()


class ClientCounts:
    """Counters of one :class:`~.client.RemoteMonitor`."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._lock = threading.Lock()
        self.sent_rows = 0
        self.retries = 0
        self.buffered_rows = 0
        self.dropped: Dict[str, int] = {reason: 0 for reason in DROP_REASONS}

    def sent(self, rows: int) -> None:
        with self._lock:
            self.sent_rows += rows

    def drop(self, reason: str, rows: int) -> None:
        with self._lock:
            self.dropped[reason] += rows

    def retry(self) -> None:
        with self._lock:
            self.retries += 1

    def buffered(self, rows: int) -> None:
        with self._lock:
            self.buffered_rows += rows


class _ClientCollector(Collector):
    def __init__(self) -> None:
        self.clients: List[ClientCounts] = []

    def collect(self) -> Iterable[Metric]:
        clients = list(self.clients)
        sent = CounterMetricFamily("mlwatcher_client_sent_rows", "Rows the server accepted "
                                   "from this client.", labels=["model"])
        dropped = CounterMetricFamily("mlwatcher_client_dropped_rows", "Rows this client "
                                      "dropped, by reason.", labels=["model", "reason"])
        retries = CounterMetricFamily("mlwatcher_client_retries", "Requests retried after "
                                      "a connection error or a 429/5xx answer.",
                                      labels=["model"])
        buffered = GaugeMetricFamily("mlwatcher_client_buffered_rows", "Rows waiting in "
                                     "this client's buffer.", labels=["model"])
        for counts in clients:
            with counts._lock:
                sent.add_metric([counts.model], counts.sent_rows)
                for reason, rows in counts.dropped.items():
                    dropped.add_metric([counts.model, reason], rows)
                retries.add_metric([counts.model], counts.retries)
                buffered.add_metric([counts.model], counts.buffered_rows)
        yield from (sent, dropped, retries, buffered)


def register_client(registry: CollectorRegistry, counts: ClientCounts) -> None:
    """Publish `counts` on `registry` (one collector per registry).

    Raises
    ------
    ValueError
        When a client of the same model is already published there.
    """
    with _LOCK:
        collector = getattr(registry, _ATTRIBUTE, None)
        if collector is None:
            collector = _ClientCollector()
            registry.register(collector)
            setattr(registry, _ATTRIBUTE, collector)
        if any(c.model == counts.model for c in collector.clients):
            raise ValueError(f"model == {counts.model!r}, a RemoteMonitor of this model is "
                             "already registered on this registry: close it first")
        collector.clients = collector.clients + [counts]


def unregister_client(registry: CollectorRegistry, counts: ClientCounts) -> None:
    """Stop publishing `counts`."""
    with _LOCK:
        collector = getattr(registry, _ATTRIBUTE, None)
        if collector is not None:
            collector.clients = [c for c in collector.clients if c is not counts]
