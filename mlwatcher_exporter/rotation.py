"""The windows of one monitor: the one being filled, the closed one waiting for its
statistics, and the statistics last published.

Bulk processing fills the active window's buffer and closes it when it reaches the
:class:`~.staging.WindowClose` that ends it, so a closed window holds every row that
belongs to it. Its statistics are computed later, outside the processing lock, by the
worker or a reader; a window closed before the previous one was computed supersedes it
(the published figures are always the last completed window's). Three buffers at most:
active, pending and one being computed; memory stays flat window after window.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from .buffer import WindowBuffer
from .schema import InputSchema
from .window import WindowStats, compute_window_stats

__all__ = ["WindowLedger", "StatisticsPause", "MAX_PAUSE_SECONDS"]


# The longest pause between two blocks of statistics.
MAX_PAUSE_SECONDS = 0.005


class StatisticsPause:
    """Called between blocks of a window's statistics: sleeps as long as the last block
    took, up to :data:`MAX_PAUSE_SECONDS`.

    numpy releases the GIL inside its sorts and reductions, so what the statistics take
    from the model's threads is mostly a core, not the GIL; yielding the GIL alone
    (``sleep(0)``) leaves the core busy. Sleeping as long as the work gives the model's
    threads half a core back for the statistics' duration, which then doubles: a
    fraction of a second in a window of a minute.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._since = clock()

    def __call__(self) -> None:
        busy = self._clock() - self._since
        self._sleep(min(max(busy, 0.0), MAX_PAUSE_SECONDS))
        self._since = self._clock()


class WindowLedger:
    """Active, pending and published windows.

    Parameters
    ----------
    capacity : int
        Rows sampled per window.
    n_classes : int
    rng : numpy.random.Generator
        Randomness of the reservoirs.
    start : float
        Monotonic start of the first window.
    """

    def __init__(
        self, capacity: int, n_classes: int, rng: np.random.Generator, start: float
    ) -> None:
        self._capacity = capacity
        self._n_classes = n_classes
        self._rng = rng
        self._lock = threading.Lock()  # pending and spare: processing vs statistics
        self._compute_lock = threading.Lock()
        self._start = start
        self._active: Optional[WindowBuffer] = None
        self._pending: Optional[WindowBuffer] = None
        self._pending_end = 0.0
        self._spare: List[WindowBuffer] = []
        self.published: Optional[WindowStats] = None
        # Called with each closed buffer and its end, processing lock held (multiprocess).
        self.on_close: Optional[Callable[[WindowBuffer, float], None]] = None

    def _buffer(self, start: float) -> WindowBuffer:
        with self._lock:
            buffer = self._spare.pop() if self._spare else None
        if buffer is None:
            buffer = WindowBuffer(self._capacity, self._n_classes, self._rng)
        buffer.reset(start)
        return buffer

    @property
    def active(self) -> WindowBuffer:
        """The window being filled (processing lock held)."""
        if self._active is None:
            self._active = self._buffer(self._start)
        return self._active

    def close(self, end: float, next_start: float, window_seconds: float) -> None:
        """Close the active window at `end` (processing lock held). When whole windows
        passed without a row, the last of them is handed over, empty."""
        buffer = self.active
        self._hand_over(buffer, end)
        if next_start > end + 1e-9:
            self._hand_over(self._buffer(next_start - window_seconds), next_start)
        self._active = None
        self._start = next_start

    def _hand_over(self, buffer: WindowBuffer, end: float) -> None:
        if self.on_close is not None:
            self.on_close(buffer, end)
        with self._lock:
            if self._pending is not None:
                self._spare.append(self._pending)
            self._pending, self._pending_end = buffer, end

    @property
    def has_pending(self) -> bool:
        """Whether a closed window waits for its statistics."""
        return self._pending is not None

    def compute(
        self,
        schema: InputSchema,
        max_categories: int,
        wall_time: Callable[[float], float],
        judge: Optional[Callable[..., Any]] = None,
    ) -> Optional[WindowStats]:
        """Compute and publish the pending window's statistics, if there is one; with
        `judge` (a :class:`~.judge.WindowJudge`), also its drift and estimates."""
        with self._compute_lock:
            with self._lock:
                buffer, end = self._pending, self._pending_end
                self._pending = None
            if buffer is None:
                return None
            names: Sequence[str] = list(schema.feature_names or ())
            categorical = schema.categorical
            started = time.perf_counter()
            try:
                sample = buffer.sample()
                stats = compute_window_stats(
                    sample,
                    end_time=wall_time(end),
                    duration=end - buffer.start,
                    feature_names=names,
                    categorical=(
                        [False] * len(names) if categorical is None else categorical.tolist()
                    ),
                    max_categories=max_categories,
                    pause=StatisticsPause(),
                    value_names=schema.value_names(),
                )
                if judge is not None:  # on the same sample, before the buffer is reused
                    stats = replace(stats, judgement=judge(sample, StatisticsPause()))
            finally:
                with self._lock:
                    self._spare.append(buffer)
            stats = replace(stats, compute_seconds=time.perf_counter() - started)
            self.published = stats
            return stats

    @property
    def nbytes(self) -> int:
        """Bytes of the window buffers held."""
        with self._lock:
            buffers = [*self._spare, self._pending, self._active]
        return sum(b.nbytes for b in buffers if b is not None)
