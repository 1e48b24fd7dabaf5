"""The bridge's own metrics, all named ``mlwatcher_anodot_*`` (listed in ``docs/anodot.md``)."""

from __future__ import annotations

import time
from typing import Callable, Optional, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.registry import REGISTRY

from .deadletter import DEAD_LETTER_REASONS
from .mapping import SKIP_REASONS

__all__ = ["BridgeMetrics", "PREFIX", "RETRY_REASONS", "DROP_REASONS", "MAX_CODE_LABELS"]

PREFIX = "mlwatcher_anodot_"
RETRY_REASONS = ("rate_limited", "server_error", "connection_error")
DROP_REASONS = ("spool_size", "spool_age", "spool_corrupt", "dead_letter_full")
# Distinct Anodot error codes kept as label values; further codes are counted as "other".
MAX_CODE_LABELS = 30


class _SpoolSizes(Protocol):
    """What :meth:`BridgeMetrics.track_spool` reads (a :class:`~.spool.Spool`)."""

    @property
    def bytes(self) -> int: ...

    @property
    def pending_points(self) -> int: ...

    def oldest_timestamp(self) -> Optional[float]: ...


class BridgeMetrics:
    """Counters and gauges describing the bridge, registered in ``registry``.

    Parameters
    ----------
    registry : CollectorRegistry or None, default=REGISTRY
        Where to register; None keeps the metrics unregistered (still usable).
    _clock : callable, default=time.time
        Returns the current Unix time (for the spool age).
    """

    def __init__(
        self,
        registry: Optional[CollectorRegistry] = REGISTRY,
        _clock: Callable[[], float] = time.time,
    ) -> None:
        p = PREFIX
        self._clock = _clock
        self.points_spooled = Counter(
            p + "points_spooled", "Points written to the spool, to be sent.", registry=registry
        )
        self.points_sent = Counter(
            p + "points_sent", "Points Anodot accepted.", registry=registry
        )
        self.points_rejected = Counter(
            p + "points_rejected",
            "Points Anodot refused one by one (indexed errors), by Anodot error code.",
            ["code"],
            registry=registry,
        )
        self.points_dead_lettered = Counter(
            p + "points_dead_lettered",
            "Points written to the dead-letter file instead of being retried, by reason.",
            ["reason"],
            registry=registry,
        )
        self.points_dropped = Counter(
            p + "points_dropped",
            "Points lost: spool over its size or age bound, unreadable, or dead-letter file full.",
            ["reason"],
            registry=registry,
        )
        self.points_skipped = Counter(
            p + "points_skipped",
            "Samples not turned into points: NaN/infinite value, or too many properties.",
            ["reason"],
            registry=registry,
        )
        self.responses = Counter(
            p + "responses",
            "HTTP responses from the Anodot API, by status code.",
            ["status"],
            registry=registry,
        )
        self.connection_errors = Counter(
            p + "connection_errors",
            "Requests that got no HTTP response (connection refused or dropped, timeout).",
            registry=registry,
        )
        self.retries = Counter(
            p + "retries",
            "Requests retried, by reason.",
            ["reason"],
            registry=registry,
        )
        self.spool_errors = Counter(
            p + "spool_errors",
            "Snapshots that could not be written to the spool (their points are lost).",
            registry=registry,
        )
        self.snapshot_errors = Counter(
            p + "snapshot_errors",
            "Snapshots that failed before reaching the spool (collect or mapping error).",
            registry=registry,
        )
        self.scrape_failures = Counter(
            p + "scrape_failures",
            "Failed scrapes of a /metrics target (anodot-bridge command), by target URL.",
            ["target"],
            registry=registry,
        )
        self.spool_bytes = Gauge(
            p + "spool_bytes", "Size of the spool's segment files.", registry=registry
        )
        self.spool_points = Gauge(
            p + "spool_points",
            "Points in the spool not yet accepted or dropped.",
            registry=registry,
        )
        self.spool_oldest_age = Gauge(
            p + "spool_oldest_age_seconds",
            "Age of the oldest point waiting in the spool (0 when empty).",
            registry=registry,
        )
        self.last_success = Gauge(
            p + "last_success_timestamp_seconds",
            "Unix time of the last request Anodot answered with 2xx (0 before the first).",
            registry=registry,
        )
        for reason in DEAD_LETTER_REASONS:
            self.points_dead_lettered.labels(reason)
        for reason in DROP_REASONS:
            self.points_dropped.labels(reason)
        for reason in SKIP_REASONS:
            self.points_skipped.labels(reason)
        for reason in RETRY_REASONS:
            self.retries.labels(reason)
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

    def track_spool(self, spool: _SpoolSizes) -> None:
        """Read the spool gauges from ``spool`` at every scrape."""
        self.spool_bytes.set_function(lambda: float(spool.bytes))
        self.spool_points.set_function(lambda: float(spool.pending_points))

        def oldest_age() -> float:
            oldest = spool.oldest_timestamp()
            return 0.0 if oldest is None else max(0.0, self._clock() - oldest)

        self.spool_oldest_age.set_function(oldest_age)
