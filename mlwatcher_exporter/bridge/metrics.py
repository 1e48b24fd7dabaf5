"""The bridge's own metrics, all named ``mlwatcher_anodot_*`` (listed in ``docs/anodot.md``)."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence, Set, get_type_hints

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.registry import REGISTRY

from .mapping import SKIP_REASONS
from .spool import DEAD_LETTER_REASONS, Spool

__all__ = ["BridgeMetrics", "PREFIX", "RETRY_REASONS", "DROP_REASONS", "MAX_CODE_LABELS"]

PREFIX = "mlwatcher_anodot_"
RETRY_REASONS = ("rate_limited", "server_error", "connection_error")
DROP_REASONS = ("spool_size", "spool_age", "spool_corrupt", "dead_letter_full")
# Distinct Anodot error codes kept as label values; further codes are counted as "other".
MAX_CODE_LABELS = 30


def _metric(documentation: str, label: Optional[str] = None, values: Sequence[str] = ()) -> Any:
    """One row of the table below: HELP, label name and its values published at 0."""
    return (documentation, label, values)


class BridgeMetrics:
    """Counters and gauges describing the bridge, registered in ``registry``.

    Each metric of the table below is the attribute of that name, registered as
    ``mlwatcher_anodot_<name>``; labelled ones start with their known label values at 0.
    ``registry=None`` keeps them unregistered (still usable); ``_clock`` (default
    ``time.time``) gives the current Unix time, for the spool age.
    """

    points_spooled: Counter = _metric("Points written to the spool, to be sent.")
    points_sent: Counter = _metric("Points Anodot accepted.")
    points_rejected: Counter = _metric(
        "Points Anodot refused one by one (indexed errors), by Anodot error code.", "code")
    points_dead_lettered: Counter = _metric(
        "Points written to the dead-letter file instead of being retried, by reason.", "reason",
        DEAD_LETTER_REASONS)
    points_dropped: Counter = _metric(
        "Points lost: spool over its size or age bound, unreadable, or dead-letter file full.",
        "reason", DROP_REASONS)
    points_skipped: Counter = _metric(
        "Samples not turned into points: NaN/infinite value, or too many properties.", "reason",
        SKIP_REASONS)
    responses: Counter = _metric("HTTP responses from the Anodot API, by status code.", "status")
    connection_errors: Counter = _metric(
        "Requests that got no HTTP response (connection refused or dropped, timeout).")
    retries: Counter = _metric("Requests retried, by reason.", "reason", RETRY_REASONS)
    spool_errors: Counter = _metric(
        "Snapshots that could not be written to the spool (their points are lost).")
    snapshot_errors: Counter = _metric(
        "Snapshots that failed before reaching the spool (collect or mapping error).")
    scrape_failures: Counter = _metric(
        "Failed scrapes of a /metrics target (anodot-bridge command), by target URL.", "target")
    spool_bytes: Gauge = _metric("Size of the spool's segment files.")
    spool_points: Gauge = _metric("Points in the spool not yet accepted or dropped.")
    spool_oldest_age_seconds: Gauge = _metric(
        "Age of the oldest point waiting in the spool (0 when empty).")
    last_success_timestamp_seconds: Gauge = _metric(
        "Unix time of the last request Anodot answered with 2xx (0 before the first).")

    def __init__(self, registry: Optional[CollectorRegistry] = REGISTRY,
                 _clock: Callable[[], float] = time.time) -> None:
        self._clock = _clock
        for name, kind in get_type_hints(BridgeMetrics).items():
            documentation, label, values = getattr(BridgeMetrics, name)
            metric = kind(PREFIX + name, documentation, [label] if label else [], registry=registry)
            for value in values:
                metric.labels(value)
            setattr(self, name, metric)
        self._codes: Set[str] = set()

    def rejected(self, code: object, points: int = 1) -> None:
        """Count ``points`` refused with Anodot error ``code``."""
        label = str(code)
        if len(self._codes) < MAX_CODE_LABELS:
            self._codes.add(label)
        self.points_rejected.labels(label if label in self._codes else "other").inc(points)

    def spool_dropped(self, reason: str, points: int) -> None:
        """``on_drop`` callback of the spool."""
        self.points_dropped.labels("spool_" + reason).inc(points)

    def dead_letter_dropped(self, points: int) -> None:
        """``on_drop`` callback of the dead-letter file."""
        self.points_dropped.labels("dead_letter_full").inc(points)

    def track_spool(self, spool: Spool) -> None:
        """Read the spool gauges from ``spool`` at every scrape."""
        self.spool_bytes.set_function(lambda: float(spool.bytes))
        self.spool_points.set_function(lambda: float(spool.pending_points))

        def oldest_age() -> float:
            oldest = spool.oldest_timestamp()
            return 0.0 if oldest is None else max(0.0, self._clock() - oldest)

        self.spool_oldest_age_seconds.set_function(oldest_age)
