"""The bridge's own metrics, all named ``mlwatcher_anodot_*`` (listed in ``docs/anodot.md``)."""

from __future__ import annotations

import time
from typing import Callable, Optional, Sequence, Tuple

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

# (name after PREFIX, which is also the attribute; type; HELP; label; its values at start)
_TABLE: Tuple[Tuple[str, type, str, Optional[str], Sequence[str]], ...] = (
    ("points_spooled", Counter, "Points written to the spool, to be sent.", None, ()),
    ("points_sent", Counter, "Points Anodot accepted.", None, ()),
    ("points_rejected", Counter,
     "Points Anodot refused one by one (indexed errors), by Anodot error code.", "code", ()),
    ("points_dead_lettered", Counter,
     "Points written to the dead-letter file instead of being retried, by reason.", "reason",
     DEAD_LETTER_REASONS),
    ("points_dropped", Counter,
     "Points lost: spool over its size or age bound, unreadable, or dead-letter file full.",
     "reason", DROP_REASONS),
    ("points_skipped", Counter,
     "Samples not turned into points: NaN/infinite value, or too many properties.", "reason",
     SKIP_REASONS),
    ("responses", Counter, "HTTP responses from the Anodot API, by status code.", "status", ()),
    ("connection_errors", Counter,
     "Requests that got no HTTP response (connection refused or dropped, timeout).", None, ()),
    ("retries", Counter, "Requests retried, by reason.", "reason", RETRY_REASONS),
    ("spool_errors", Counter,
     "Snapshots that could not be written to the spool (their points are lost).", None, ()),
    ("snapshot_errors", Counter,
     "Snapshots that failed before reaching the spool (collect or mapping error).", None, ()),
    ("scrape_failures", Counter,
     "Failed scrapes of a /metrics target (anodot-bridge command), by target URL.", "target",
     ()),
    ("spool_bytes", Gauge, "Size of the spool's segment files.", None, ()),
    ("spool_points", Gauge, "Points in the spool not yet accepted or dropped.", None, ()),
    ("spool_oldest_age_seconds", Gauge,
     "Age of the oldest point waiting in the spool (0 when empty).", None, ()),
    ("last_success_timestamp_seconds", Gauge,
     "Unix time of the last request Anodot answered with 2xx (0 before the first).", None, ()),
)


class BridgeMetrics:
    """Counters and gauges describing the bridge, registered in ``registry``.

    Each metric of the table above is an attribute named after it without the prefix,
    e.g. ``metrics.points_sent``; labelled ones start with their known label values at 0.

    Parameters
    ----------
    registry : CollectorRegistry or None, default=REGISTRY
        Where to register; None keeps the metrics unregistered (still usable).
    _clock : callable, default=time.time
        Returns the current Unix time (for the spool age).
    """

    points_spooled: Counter
    points_sent: Counter
    points_rejected: Counter
    points_dead_lettered: Counter
    points_dropped: Counter
    points_skipped: Counter
    responses: Counter
    connection_errors: Counter
    retries: Counter
    spool_errors: Counter
    snapshot_errors: Counter
    scrape_failures: Counter
    spool_bytes: Gauge
    spool_points: Gauge
    spool_oldest_age_seconds: Gauge
    last_success_timestamp_seconds: Gauge

    def __init__(
        self,
        registry: Optional[CollectorRegistry] = REGISTRY,
        _clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = _clock
        for name, kind, documentation, label, values in _TABLE:
            labels = [label] if label else []
            metric = kind(PREFIX + name, documentation, labels, registry=registry)
            for value in values:
                metric.labels(value)
            setattr(self, name, metric)
        self._codes: set = set()

    def rejected(self, code: object, points: int = 1) -> None:
        """Count ``points`` refused with Anodot error ``code``."""
        label = str(code)
        if label not in self._codes:
            if len(self._codes) >= MAX_CODE_LABELS:
                label = "other"
            else:
                self._codes.add(label)
        self.points_rejected.labels(label).inc(points)

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
