"""AnodotBridge: forward a prometheus_client registry, or scraped ``/metrics`` pages, to Anodot.

Like prometheus_client's ``GraphiteBridge`` it only reads ``collect()``, so Anodot gets
exactly the numbers Prometheus scrapes. Unlike it, a snapshot is mapped to points and
fsync'd to an on-disk :class:`~.spool.Spool`, which a separate sender thread delivers
oldest first, acknowledging after a 2xx: a slow or unreachable API never blocks the code
that updates the metrics, and points survive restarts of the process.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional, Sequence, Union

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import REGISTRY

from .config import (DeadLetterOptions, MappingOptions, SendOptions, SpoolOptions, Target,
                     check_positive, redact, resolve)
from .mapping import PointMapper
from .metrics import BridgeMetrics
from .sender import AnodotClient, Response, Sender, SendResult
from .spool import DeadLetter, Spool

__all__ = ["AnodotBridge", "FlushResult", "ScrapeSource", "fetch_text"]

logger = logging.getLogger(__name__)

_IDLE_POLL_SECONDS = 1.0
_ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"


@dataclass(frozen=True)
class FlushResult:
    """What one :meth:`AnodotBridge.flush` did: points ``accepted`` by Anodot, ``rejected``
    (refused one by one or with their whole request: dead-lettered) and still
    ``pending`` in the spool (a request failed, or ``max_requests`` was reached)."""

    accepted: int
    rejected: int
    pending: int


class AnodotBridge:
    """Send the samples of a registry to Anodot through a durable spool.

    Parameters
    ----------
    base_url, token : str
        Anodot API address (``https://app.anodot.com``) and data collection token (never logged).
    spool_dir : str or os.PathLike
        Directory of the spool (one bridge per directory).
    registry : object with ``collect()``, default=REGISTRY
        What to forward: a ``CollectorRegistry`` or any collector, e.g. a :class:`ScrapeSource`.
    mapping, sending, spool, dead_letter : option groups, default=their defaults
        :class:`MappingOptions`, :class:`SendOptions`, :class:`SpoolOptions` and
        :class:`DeadLetterOptions` (default file ``<spool_dir>/dead-letter.jsonl``).
    metrics_registry : CollectorRegistry or None, default=REGISTRY
        Where the bridge's own ``mlwatcher_anodot_*`` metrics are registered.
    random_state : None, int or random.Random, default=None
        Seed of the retry jitter.
    _clock, _post : callable, default=time.time, None
        Unix time; the HTTP transport ``body -> Response`` in place of the client (tests).

    Examples
    --------
    In the exporter's process, reading the registry it serves::

        bridge = AnodotBridge("https://app.anodot.com", token, "/var/spool")
        bridge.start(60.0)
    """

    def __init__(
        self, base_url: str, token: str, spool_dir: "str | os.PathLike[str]",
        registry: Any = REGISTRY, *, mapping: Optional[MappingOptions] = None,
        sending: Optional[SendOptions] = None, spool: Optional[SpoolOptions] = None,
        dead_letter: Optional[DeadLetterOptions] = None,
        metrics_registry: Optional[CollectorRegistry] = REGISTRY,
        random_state: Union[None, int, random.Random] = None,
        _clock: Callable[[], float] = time.time,
        _post: Optional[Callable[[bytes], Response]] = None,
    ) -> None:
        if not callable(getattr(registry, "collect", None)):
            raise TypeError(f"registry == {registry!r}, must have a collect() method.")
        if not isinstance(spool_dir, (str, os.PathLike)):
            raise TypeError(f"spool_dir == {spool_dir!r}, must be a path.")
        mapping = resolve(mapping, MappingOptions, "mapping")
        self.sending = sending = resolve(sending, SendOptions, "sending")
        spool = resolve(spool, SpoolOptions, "spool")
        dead_letter = resolve(dead_letter, DeadLetterOptions, "dead_letter")
        self._registry = registry
        self._clock = _clock
        self.metrics = BridgeMetrics(metrics_registry, _clock=_clock)
        self.client = AnodotClient(base_url, token, sending.timeout_seconds)
        self.spool = Spool(spool_dir, spool, self.metrics.spool_dropped, _clock)
        self.metrics.track_spool(self.spool)
        self.mapper = PointMapper(mapping, state=self.spool.recovered_state)
        self.dead_letter = DeadLetter(
            dead_letter.path or os.path.join(self.spool.directory, "dead-letter.jsonl"),
            dead_letter.max_bytes, spool.fsync, self.metrics.dead_letter_dropped)
        self.sender = Sender(self.client if _post is None else _post, sending, self.metrics,
                             self.dead_letter, random_state, self.client.redact, _clock)
        self._last_timestamp = 0
        self._snapshot_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: List[threading.Thread] = []
        if self.spool.pending_points:
            logger.info("anodot: %d points left in the spool will be sent first",
                        self.spool.pending_points)

    def snapshot(self) -> int:
        """Map the registry's current samples to points and spool them durably; return how
        many (0 on a failure, logged and counted). No network I/O happens here.

        The timestamp is the current second, never earlier than the previous snapshot's,
        so each series stays in time order.
        """
        with self._snapshot_lock:
            timestamp = max(int(self._clock()), self._last_timestamp)
            state_before = self.mapper.state()
            try:
                result = self.mapper.map(self._registry.collect(), timestamp)
                for reason, count in result.skipped.items():
                    self.metrics.points_skipped.labels(reason).inc(count)
                state = self.mapper.state() if self.mapper.tracks_counters else None
            except Exception:
                self.metrics.snapshot_errors.inc()
                logger.exception("anodot: snapshot failed")
                self.mapper = PointMapper(self.mapper.options, state=state_before)
                return 0
            try:
                self.spool.append(result.points, state)
            except (OSError, ValueError) as exc:
                self.metrics.spool_errors.inc()
                logger.error("anodot: could not write %d points to the spool: %s",
                             len(result.points), exc)
                # Keep the counter baselines consistent with what the spool holds.
                self.mapper = PointMapper(self.mapper.options, state=state_before)
                return 0
            self._last_timestamp = timestamp
            self.metrics.points_spooled.inc(len(result.points))
        self._wake.set()
        return len(result.points)

    def _send_batch(self, **deliver: Any) -> "Optional[SendResult | bool]":
        """Deliver the oldest spooled batch and acknowledge it unless it must be retried
        (False when the spool is empty; None when stopping: the batch stays spooled)."""
        batch = self.spool.read(self.sending.batch_size)
        if not batch.points:
            return False
        body = b"[" + b",".join(line.rstrip(b"\n") for line in batch.lines) + b"]"
        result = self.sender.deliver(batch.points, body, **deliver)
        if result is not None and result.kind != "retry":
            self.spool.ack(batch)
        return result

    def flush(self, max_requests: Optional[int] = None) -> FlushResult:
        """Send spooled points from the calling thread until the spool is empty, waiting for
        the rate limits but stopping at the first request that must be retried."""
        accepted = rejected = 0
        with self._send_lock:
            for _ in itertools.count() if max_requests is None else range(max_requests):
                result = self._send_batch(max_attempts=1)
                if not isinstance(result, SendResult) or result.kind == "retry":
                    break
                accepted += result.accepted
                rejected += result.rejected
        return FlushResult(accepted, rejected, self.spool.pending_points)

    def push(self) -> FlushResult:
        """Snapshot the registry, then :meth:`flush` (one-shot use, like GraphiteBridge)."""
        self.snapshot()
        return self.flush()

    def start(self, interval: float = 60.0) -> None:
        """Snapshot every ``interval`` seconds and send continuously, in daemon threads,
        spooled points from an earlier run first, until :meth:`stop`."""
        interval = check_positive("interval", interval)
        if self._threads:
            raise RuntimeError("the bridge is already started")
        self._stop.clear()
        self._threads = [threading.Thread(target=self._snapshot_loop, args=(interval,),
                                          name="anodot-snapshot", daemon=True),
                         threading.Thread(target=self._send_loop, name="anodot-send", daemon=True)]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: Optional[float] = 10.0) -> None:
        """Stop the threads started by :meth:`start`; unsent points stay spooled."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = [t for t in self._threads if t.is_alive()]
        if self._threads:
            logger.warning("anodot: %d threads did not stop in time", len(self._threads))

    def close(self) -> None:
        """Stop, then close the spool and the connection."""
        self.stop()
        self.spool.close()
        self.client.close()

    def __enter__(self) -> "AnodotBridge":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait(self, seconds: float) -> bool:
        """Sleep unless stopping; return False when stopping."""
        # Event.wait() raises OverflowError beyond TIMEOUT_MAX (a huge interval or delay).
        return not self._stop.wait(min(max(0.0, seconds), threading.TIMEOUT_MAX))

    def _snapshot_loop(self, interval: float) -> None:
        wait_until = time.monotonic()
        while not self._stop.is_set():
            self.snapshot()
            wait_until += interval
            now = time.monotonic()
            if wait_until < now:  # skip missed ticks instead of bursting
                wait_until = now + interval - ((now - wait_until) % interval)
            if not self._wait(wait_until - now):
                return

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._wake.clear()
                with self._send_lock:
                    result = self._send_batch(wait=self._wait)
                if result is None:
                    return  # stopping
                if result is False:
                    self._wake.wait(_IDLE_POLL_SECONDS)
            except Exception:
                logger.exception("anodot: sender error")
                self._stop.wait(1.0)


def fetch_text(url: str, timeout: float) -> str:
    """GET ``url`` and return its body as text (raises ``OSError`` on failure)."""
    request = urllib.request.Request(url, headers={"Accept": _ACCEPT})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        charset = response.headers.get_content_charset() or "utf-8"
        return response.read().decode(charset, "replace")


class ScrapeSource:
    """A collector whose ``collect()`` scrapes ``/metrics`` pages of other processes.

    ``targets`` are :class:`Target` or URL strings; the target's properties are added to
    each sample's labels (a label of the same name wins). A target that fails
    (unreachable, not 200, unparsable) is skipped for this round, logged and counted in
    ``metrics`` (``mlwatcher_anodot_scrape_failures_total{target}``, see
    :meth:`use_metrics`); the others are still forwarded. ``_fetch(url, timeout) -> str``
    replaces :func:`fetch_text` in tests.
    """

    def __init__(self, targets: Sequence[Union[Target, str]], timeout_seconds: float = 10.0,
                 metrics: Optional[BridgeMetrics] = None,
                 _fetch: Callable[[str, float], str] = fetch_text) -> None:
        if isinstance(targets, (str, Target)):
            raise TypeError(f"targets == {targets!r}, must be a list of targets.")
        self.targets = [t if isinstance(t, Target) else Target(str(t)) for t in targets]
        if not self.targets:
            raise ValueError("targets == [], must name at least one /metrics address.")
        self.timeout_seconds = check_positive("timeout_seconds", timeout_seconds)
        self.metrics: Optional[BridgeMetrics] = None
        self._fetch = _fetch
        if metrics is not None:
            self.use_metrics(metrics)

    def use_metrics(self, metrics: BridgeMetrics) -> None:
        """Count scrape failures in ``metrics`` (pre-initialised to 0 per target)."""
        self.metrics = metrics
        for target in self.targets:
            metrics.scrape_failures.labels(redact(target.url))

    def collect(self) -> Iterator[Metric]:
        """Scrape each target in turn and yield its metric families."""
        for target in self.targets:
            try:
                families = list(text_string_to_metric_families(
                    self._fetch(target.url, self.timeout_seconds)))
            except Exception as exc:  # a bad target must not stop the others
                logger.warning("anodot: scrape of %s failed: %s", redact(target.url),
                               redact(f"{type(exc).__name__}: {exc}"))
                if self.metrics is not None:
                    self.metrics.scrape_failures.labels(redact(target.url)).inc()
                continue
            for family in families:
                if target.properties:
                    family.samples = [s._replace(labels={**target.properties, **s.labels})
                                      for s in family.samples]
                yield family
