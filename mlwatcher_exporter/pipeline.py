"""The bulk side of a monitor: what staging queued, processed in order, under one lock.

:class:`Pipeline` owns the state the request path never touches: the lifetime counts
and the windows (:class:`~.rotation.WindowLedger`). Whoever drains it (the background
worker, a scrape, :meth:`ModelMonitor.flush`, or a caller that found every stage full)
takes the queue from :class:`~.staging.Staging` and processes it under the processing
lock, so stages and window closes are applied exactly once and in order. It also
closes windows on request and computes their statistics, outside that lock.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, List, Optional

import numpy as np

from .collector import MonitorSnapshot
from .counts import LifetimeCounts, RejectionCounts
from .fleetcounts import FleetLayout, prime_columns
from .idstore import Key
from .judge import WindowJudge
from .latelabels import LateLabels
from .processing import process_stage
from .ratelog import RateLimitedLogger
from .rotation import WindowLedger
from .schema import InputSchema
from .staging import Staging, WindowClose
from .window import WindowStats

__all__ = ["Pipeline"]


class Pipeline:
    """Counts and windows of one monitor, fed from its staging.

    Parameters
    ----------
    model : str
        Named in log messages.
    staging : Staging
        Where the request path queued its batches and the window closes.
    schema : InputSchema
        The learned inputs (classes, features, vocabularies).
    refusals : RejectionCounts
        Where rejected batches and dropped parts are counted.
    reservoir_size : int
        Rows sampled per window.
    rng : numpy.random.Generator
        Randomness of the reservoirs.
    log : RateLimitedLogger
        For failures of our own, at a bounded rate.
    max_categories : int
        Values published per categorical feature.
    clock, wall_clock : callable
        Monotonic and Unix seconds.
    max_ids, id_ttl : int, float
        Bounds of the prediction ids kept for late labels (:mod:`.latelabels`).
    """

    def __init__(
        self,
        model: str,
        staging: Staging,
        schema: InputSchema,
        refusals: RejectionCounts,
        reservoir_size: int,
        rng: np.random.Generator,
        log: RateLimitedLogger,
        max_categories: int,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        max_ids: int = 100_000,
        id_ttl: float = 86_400.0,
        fleet: Optional[FleetLayout] = None,
    ) -> None:
        self.lock = threading.Lock()
        self._model = model
        self._staging = staging
        self._schema = schema
        self._refusals = refusals
        self._reservoir_size = reservoir_size
        self._rng = rng
        self._log = log
        self._max_categories = max_categories
        self._clock = clock
        self._wall_clock = wall_clock
        # Unix time minus monotonic time, refreshed at each window close: one reading of
        # the wall clock per window, and scrapes of one window agree to the bit.
        self._wall_offset = wall_clock() - clock()
        self.counts: Optional[LifetimeCounts] = None
        self.ledger: Optional[WindowLedger] = None
        self.late = LateLabels(max_ids, id_ttl)
        # Given to the ledger: sees each closed window's buffer (multiprocess.py).
        self.on_close: Optional[Callable[..., None]] = None
        # Judges each window against the reference profile (judge.WindowJudge), if any.
        self.judge: Optional[WindowJudge] = None
        self.fleet = fleet

    def use_reference_edges(self, profile: Any) -> bool:
        """Give the fleet histograms configured with ``"reference"`` edges the edges of
        `profile`; False (and nothing changed) once rows have been counted, since a
        histogram's buckets never change."""
        self.drain(seal=True)  # staged rows count as counted
        with self.lock:
            layout = self.fleet if self.fleet is not None else FleetLayout()
            resolved = layout.with_reference_edges(profile)
            if resolved == layout:
                return True
            counts = self.counts
            if counts is not None and counts.predictions.any():
                return False
            self.fleet = resolved
            if counts is not None:
                self.counts = LifetimeCounts(counts.predictions.size, resolved)
                prime_columns(self.counts, self._schema)
            return True

    def size(self, n_classes: int) -> None:
        """Create the counts and the windows once the number of classes is known."""
        with self.lock:
            if self.counts is None:
                self.counts = LifetimeCounts(n_classes, self.fleet)
                prime_columns(self.counts, self._schema)  # feature counters at 0
                self.ledger = WindowLedger(
                    self._reservoir_size, n_classes, self._rng, self._staging.window_start
                )
                self.ledger.on_close = self.on_close

    def drain(self, seal: bool = False) -> None:
        """Process everything queued, in order (with `seal`, the current stage too)."""
        with self.lock:
            self._drain_locked(seal)

    def _drain_locked(self, seal: bool) -> None:
        ledger, counts = self.ledger, self.counts
        now = self._clock()
        for item in self._staging.take(seal):
            if isinstance(item, WindowClose):
                self._wall_offset = self._wall_clock() - self._clock()
                if ledger is not None:
                    ledger.close(item.end, item.next_start, self._staging.window_seconds)
                self.late.next_window()
                continue
            try:
                assert ledger is not None and counts is not None
                process_stage(
                    item, self._schema, counts, self._refusals, ledger.active, self.late, now
                )
            except Exception:  # noqa: BLE001 - a bug of ours must not stop the pipeline
                self._refusals.reject("internal", item.n, "a stage failed")
                self._log.warning(
                    "internal", f"mlwatcher: model {self._model!r} failed a stage",
                    exc_info=True,
                )
            finally:
                self._staging.release(item)

    def join_labels(self, keys: List[Key], labels: Optional[Any]) -> None:
        """Join labels (class indices, -1 for none; None: no class is known yet, so
        every id is unknown) to the predictions of `keys`, after processing every
        staged batch and closing a due window."""
        with self.lock:
            self._staging.roll_if_due()
            self._drain_locked(seal=True)
            ledger = self.ledger
            window = None if ledger is None else ledger.active
            if labels is None:
                self.late.counts.unmatched["unknown"] += len(keys)
                return
            self.late.join(keys, labels, self._clock(), window, self.counts)

    def wall_time(self, monotonic: float) -> float:
        """Unix time of a point on the monotonic clock."""
        return monotonic + self._wall_offset

    def publish(self, wait: bool = False) -> Optional[WindowStats]:
        """Compute the closed window's statistics, if one waits (outside the lock).

        With `wait`, also wait for statistics another thread is computing, so that
        :attr:`published` is then the last closed window's.
        """
        ledger = self.ledger
        if ledger is None or not (wait or ledger.has_pending):
            return None
        try:
            return ledger.compute(self._schema, self._max_categories, self.wall_time,
                                  self.judge)
        except Exception:  # noqa: BLE001 - a failed window must not fail the scrape
            self._log.warning(
                "statistics",
                f"mlwatcher: model {self._model!r}: window statistics failed",
                exc_info=True,
            )
            return None

    def tick(self) -> None:
        """Close the window if it is due, process what is queued and publish a closed
        window's statistics."""
        if self._staging.roll_if_due() or self._staging.has_work():
            self.drain()
        self.publish()

    def close_window(self) -> Optional[WindowStats]:
        """Close the current window now and publish its statistics."""
        self._staging.close_now()
        self.drain()
        # A scrape may have taken this window's statistics first: wait for them.
        self.publish(wait=True)
        return self.published

    def snapshot(self, class_labels: List[str]) -> MonitorSnapshot:
        """The published window and copies of the counters after draining everything
        staged, for one scrape."""
        self.drain(seal=True)
        with self.lock:
            counts = None if self.counts is None else self.counts.copy()
            self.late.purge(self._clock())
            late = self.late.snapshot()
        last = self._staging.last_offer
        if counts is not None and last is not None:
            counts.last_prediction = self.wall_time(last)
        judge = self.judge
        return MonitorSnapshot(
            self.published, counts, self._refusals.rejected(), self._refusals.dropped(),
            class_labels, late, None if judge is None else judge.profile.info(),
        )

    @property
    def published(self) -> Optional[WindowStats]:
        """Statistics of the last completed window."""
        return None if self.ledger is None else self.ledger.published

    @property
    def nbytes(self) -> int:
        """Bytes of the window buffers."""
        return 0 if self.ledger is None else self.ledger.nbytes
