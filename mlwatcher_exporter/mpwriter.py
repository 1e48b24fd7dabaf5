"""The writer side of multiprocess mode: this process's monitors' state, to its files.

A :class:`ProcessWriter` aligns each monitor's windows on the wall-clock grid, keeps a
copy of its last :data:`WINDOWS_KEPT` closed windows as they close, and writes its state
(:mod:`.mpstate`) to the multiprocess directory (:func:`multiproc_dir`) from a daemon
thread every :func:`flush_seconds`, before each scrape and at exit. The process's one
writer is :mod:`.multiprocess`'s; the reader is :mod:`.mpcollector`.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Callable, Deque, List, Optional

import numpy as np

from .mpstate import WindowRecord, WorkerState, encode_attributes, window_index, write_state
from .window import WindowSample

if TYPE_CHECKING:  # pragma: no cover
    from .buffer import WindowBuffer
    from .monitor import ModelMonitor

__all__ = ["ProcessWriter", "multiproc_dir", "flush_seconds", "WINDOWS_KEPT"]

logger = logging.getLogger("mlwatcher_exporter")

# Closed windows each worker keeps in its file: the slowest live worker may be behind.
WINDOWS_KEPT = 2


def multiproc_dir() -> Optional[str]:
    """``PROMETHEUS_MULTIPROC_DIR`` (or its old lower-case name), or None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get(
        "prometheus_multiproc_dir") or None


def flush_seconds() -> float:
    """Seconds between two writes of a worker's state (``MLWATCHER_FLUSH_SECONDS``)."""
    try:
        value = float(os.environ.get("MLWATCHER_FLUSH_SECONDS", "1"))
    except ValueError:
        return 1.0
    return value if 0.01 <= value <= 60 else 1.0


def _copy(sample: WindowSample) -> WindowSample:
    def copy(array: Optional[np.ndarray]) -> Optional[np.ndarray]:
        return None if array is None else array.copy()

    return WindowSample(sample.proba.copy(), sample.predicted.copy(), copy(sample.features),
                        copy(sample.has_features), sample.labels.copy(), sample.rows,
                        sample.class_rows.copy())


class _Tracked:
    """One monitor of this process: its closed windows, captured as they close."""

    def __init__(self, monitor: "ModelMonitor") -> None:
        self.ref = weakref.ref(monitor)
        self.model = monitor.model
        self.lock = threading.Lock()
        self.windows: Deque[WindowRecord] = deque(maxlen=WINDOWS_KEPT)
        self.seq = 0
        self.written_seq = -1
        self.closed_through = 0

    def align(self) -> None:
        """Move the first window's start back onto the wall-clock grid."""
        monitor = self.ref()
        assert monitor is not None
        staging, pipeline = monitor._staging, monitor._pipeline
        seconds = staging.window_seconds
        wall, mono = pipeline._wall_clock(), monitor._clock()
        start_wall = math.floor(wall / seconds) * seconds
        start = mono - (wall - start_wall)
        with staging.lock:
            staging.window_start, staging.window_end = start, start + seconds
        ledger = pipeline.ledger
        if ledger is not None and ledger._active is None:
            ledger._start = start
        self.closed_through = window_index(start_wall, seconds)
        pipeline.on_close = self.capture
        if ledger is not None:
            ledger.on_close = self.capture

    def capture(self, buffer: "WindowBuffer", end: float) -> None:
        """Keep a copy of a closed window's sample (processing lock held)."""
        monitor = self.ref()
        if monitor is None:
            return
        pipeline, schema = monitor._pipeline, monitor._schema
        seconds = monitor.window_seconds
        categorical = schema.categorical
        record = WindowRecord(
            index=window_index(pipeline.wall_time(end), seconds),
            start=pipeline.wall_time(buffer.start), sample=_copy(buffer.sample()),
            feature_names=list(schema.feature_names or ()),
            categorical=[] if categorical is None else [bool(c) for c in categorical],
            value_names={k: list(v) for k, v in schema.value_names().items()},
        )
        with self.lock:
            self.windows.append(record)
            self.closed_through = max(self.closed_through, record.index)
            self.seq += 1

    def capture_open(self) -> None:
        """At exit: the open window's rows, as the window it would have been."""
        monitor = self.ref()
        if monitor is None:
            return
        pipeline = monitor._pipeline
        with pipeline.lock:
            ledger = pipeline.ledger
            active = None if ledger is None else ledger._active
            if active is not None and active.rows:
                self.capture(active, monitor._staging.window_end)


class ProcessWriter:
    """Writes the state of this process's monitors to the multiprocess directory.

    Parameters
    ----------
    directory : str
    interval : float
        Seconds between two writes by the daemon thread.
    wall_clock : callable
        Unix seconds (the heartbeat).
    """

    def __init__(self, directory: str, interval: float,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.interval = interval
        self.pid = os.getpid()
        self.token = f"{self.pid}_{secrets.token_hex(4)}"
        self._wall_clock = wall_clock
        self._tracked: List[_Tracked] = []
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._stopped = threading.Event()

    def add(self, monitor: "ModelMonitor") -> None:
        """Align `monitor`'s windows, capture them, and write its state from now on."""
        tracked = _Tracked(monitor)
        tracked.align()
        with self._lock:
            self._tracked = [t for t in self._tracked if t.ref() is not None] + [tracked]
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="mlwatcher-multiprocess")
                self._thread.start()

    def write_all(self, final: bool = False) -> None:
        """Write every monitor's state now (``final``: at exit, the open window too)."""
        with self._lock:
            for tracked in list(self._tracked):
                monitor = tracked.ref()
                if monitor is None or monitor._closed:
                    # Its last state stays, final: it counts on, but is awaited no more.
                    self._tracked.remove(tracked)
                    if monitor is None:
                        continue
                try:
                    self._write(tracked, final or monitor._closed)
                except Exception:  # noqa: BLE001 - never fail the scrape or the exit
                    logger.warning("mlwatcher: model %r: writing the multiprocess state "
                                   "failed", tracked.model, exc_info=True)

    def _write(self, tracked: _Tracked, final: bool) -> None:
        monitor = tracked.ref()
        if monitor is None:
            return
        monitor.tick()
        snap = monitor.snapshot()
        if final:
            tracked.capture_open()
        with tracked.lock:
            windows, closed = list(tracked.windows), tracked.closed_through
            changed, seq = tracked.seq != tracked.written_seq, tracked.seq
        staging, pipeline = monitor._staging, monitor._pipeline
        if pipeline.ledger is None:  # no row can have been processed: done with the past
            start = pipeline.wall_time(staging.window_start)
            closed = max(closed, window_index(start, staging.window_seconds))
        state = WorkerState(
            model=monitor.model, token=self.token, written=self._wall_clock(), final=final,
            closed_through=closed, window_seconds=monitor.window_seconds,
            reservoir_size=monitor.reservoir_size, max_categories=monitor.max_categories,
            class_labels=list(snap.class_labels),
            counts=None if snap.counts is None else encode_attributes(snap.counts),
            late=None if snap.late is None else encode_attributes(snap.late),
            rejected=snap.rejected, dropped=snap.dropped, windows=windows,
        )
        write_state(self.directory, state, changed)
        tracked.written_seq = seq

    def _next_wait(self) -> float:
        wait = self.interval
        for tracked in list(self._tracked):
            monitor = tracked.ref()
            if monitor is not None:
                due = monitor._staging.window_end - monitor._clock() + 0.01
                wait = min(wait, max(due, 0.01))
        return wait

    def _run(self) -> None:
        while not self._stopped.wait(self._next_wait()):
            if os.getpid() != self.pid:
                return
            self.write_all()

    def stop(self) -> None:
        """Stop the thread (the files stay)."""
        self._stopped.set()
