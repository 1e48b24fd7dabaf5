"""prometheus_client's multiprocess mode: every worker publishes every worker's rows.

When ``PROMETHEUS_MULTIPROC_DIR`` is set before a monitor is created, each process
(gunicorn's workers, and the master with ``--preload``) writes its state to per-process
files there (:mod:`.mpstate`): at each window close and every
``MLWATCHER_FLUSH_SECONDS`` (default 1 s) from a daemon thread, before each of its
scrapes, and at exit. Windows start on the wall-clock grid
(``floor(time / window_seconds) * window_seconds``), so all workers' windows of one
index cover the same time. :class:`MultiProcessCollector` reads every file and
publishes the merge (:mod:`.mpmerge`) under the usual ``mlwatcher_*`` families: add it
next to prometheus_client's, or serve :func:`make_wsgi_app`::

    from prometheus_client import CollectorRegistry, multiprocess
    import mlwatcher_exporter.multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    mlwatcher_exporter.multiprocess.MultiProcessCollector(registry)

Files of dead workers stay and keep counting (a recycled worker loses nothing); empty
the directory when the server (re)starts, as prometheus_client asks.
"""

from __future__ import annotations

import atexit
import glob
import logging
import math
import os
import secrets
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from .collector import MonitorCollector, MonitorSnapshot
from .mpmerge import MergedModel, merge_model, window_stats
from .mpstate import (
    PREFIX, WindowRecord, WorkerState, encode_attributes, read_states, window_index,
    write_state,
)
from .judge import WindowJudgement, judge_window
from .window import WindowSample, WindowStats

if TYPE_CHECKING:  # pragma: no cover
    from .buffer import WindowBuffer
    from .monitor import ModelMonitor

__all__ = [
    "MultiProcessCollector",
    "ProcessWriter",
    "make_wsgi_app",
    "multiproc_dir",
    "multiprocess_registry",
    "flush_seconds",
    "WINDOWS_KEPT",
]

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


_WRITER: Optional[ProcessWriter] = None
_REGISTRY: Optional[CollectorRegistry] = None
_STATE_LOCK = threading.Lock()


def _writer() -> ProcessWriter:
    global _WRITER
    directory = multiproc_dir()
    assert directory is not None
    with _STATE_LOCK:
        if _WRITER is None or _WRITER.pid != os.getpid():
            _WRITER = ProcessWriter(directory, flush_seconds())
        return _WRITER


def attach(monitor: "ModelMonitor") -> None:
    """Write `monitor`'s state for the other workers (multiprocess mode)."""
    directory = multiproc_dir()
    if directory is None or not os.path.isdir(directory):
        logger.warning("mlwatcher: PROMETHEUS_MULTIPROC_DIR == %r, must be an existing "
                       "directory: model %r publishes this process's rows alone",
                       directory, monitor.model)
        return
    _writer().add(monitor)


def after_fork(monitors: Iterable["ModelMonitor"]) -> None:
    """In a child: a writer of its own (new files) for every monitor."""
    global _WRITER, _REGISTRY, _STATE_LOCK
    _STATE_LOCK = threading.Lock()
    _WRITER, _REGISTRY = None, None
    for monitor in monitors:
        attach(monitor)


@atexit.register
def _at_exit() -> None:
    writer = _WRITER
    if writer is not None and writer.pid == os.getpid():
        writer.stop()
        writer.write_all(final=True)


class _MergedPublisher:
    """A :class:`~.collector.Publisher` over the merged files of one model."""

    def __init__(self, merged: MergedModel) -> None:
        self.model = merged.model
        self.window_seconds = merged.window_seconds
        self.reservoir_size = merged.reservoir_size
        self._merged = merged
        self._key: Optional[tuple] = None
        self._index = -1
        self._window: Optional[WindowStats] = None

    @property
    def n_classes(self) -> Optional[int]:
        """Probability columns, once known."""
        return len(self._merged.class_labels) or None

    def update(self, merged: MergedModel, index: Optional[int]) -> None:
        """Take the latest merge; the window is computed once per window (and never
        goes back to an older one, should a stalled worker come back)."""
        self._merged = merged
        if index is None or index < self._index or merged.window_key == self._key:
            return
        try:
            self._window = window_stats(
                merged, index, _local_judge(self.model, merged.class_labels))
        except Exception:  # noqa: BLE001 - a bad file must not fail the scrape
            logger.warning("mlwatcher: model %r: merging the workers' windows failed",
                           self.model, exc_info=True)
            return
        self._key, self._index = merged.window_key, index

    def tick(self) -> None:
        """Nothing: the workers close their windows."""

    def snapshot(self) -> MonitorSnapshot:
        """The merged counters and window."""
        merged = self._merged
        monitor = _local_monitor(self.model)
        profile = None if monitor is None else monitor.reference
        return MonitorSnapshot(self._window, merged.counts, merged.rejected, merged.dropped,
                               merged.class_labels, merged.late,
                               None if profile is None else profile.info())


def _local_monitor(model: str) -> "Optional[ModelMonitor]":
    """This process's open monitor of `model`, if any: every worker loads the same
    configuration, so its reference profile is every worker's."""
    from .prefork import _MONITORS

    return next((m for m in list(_MONITORS) if m.model == model and not m._closed), None)


def _local_judge(model: str, class_labels: List[str]) -> Optional[Callable[..., Any]]:
    """Judges a merged window against the local monitor's reference profile, if any."""
    monitor = _local_monitor(model)
    judge = None if monitor is None else monitor._pipeline.judge
    if judge is None:
        return None

    def merged_judge(sample: WindowSample, names: List[str],
                     value_names: Any) -> WindowJudgement:
        return judge_window(sample, judge.profile, feature_names=names,
                            value_names=value_names, class_labels=class_labels,
                            thresholds=judge.thresholds)
    return merged_judge


class MultiProcessCollector(Collector):
    """Publishes the ``mlwatcher_*`` families merged over every worker's files.

    Parameters
    ----------
    registry : CollectorRegistry or None, default=prometheus_client.REGISTRY
        Registered there when given (use the registry of prometheus_client's own
        MultiProcessCollector, not one the monitors are registered on).
    path : str, optional
        The directory; default ``PROMETHEUS_MULTIPROC_DIR``.
    stale_after : float, optional
        Seconds without a heartbeat after which a worker counts as dead (its window no
        longer awaited); default ``max(5, 3 * flush interval)``.
    _clock : callable
        Unix seconds.
    _files : callable, optional
        Lists the state files (default: the directory's ``mlwatcher_*.json``).
    """

    def __init__(self, registry: Optional[CollectorRegistry] = REGISTRY,
                 path: Optional[str] = None, stale_after: Optional[float] = None,
                 _clock: Callable[[], float] = time.time,
                 _files: Optional[Callable[[], List[str]]] = None) -> None:
        directory = path or multiproc_dir()
        if directory is None and _files is None:
            raise ValueError("path == None and PROMETHEUS_MULTIPROC_DIR is not set, must "
                             "name the multiprocess directory")
        self.path = directory
        self.stale_after = max(5.0, 3 * flush_seconds()) if stale_after is None \
            else stale_after
        self._clock = _clock
        self._files = _files
        self._inner = MonitorCollector()
        self._publishers: Dict[str, _MergedPublisher] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def describe(self) -> Iterable[Metric]:
        """The families' names, for the registry's duplicate check."""
        return self._inner.describe()

    def _paths(self) -> List[str]:
        if self._files is not None:
            return self._files()
        assert self.path is not None
        return glob.glob(os.path.join(self.path, PREFIX + "*.json"))

    def collect(self) -> Iterator[Metric]:
        """Refresh this process's files, read every worker's and publish the merge."""
        writer = _WRITER
        if writer is not None and writer.pid == os.getpid() and self._files is None:
            writer.write_all()
        by_model: Dict[str, List[WorkerState]] = {}
        for state in read_states(self._paths()):
            by_model.setdefault(state.model, []).append(state)
        now = self._clock()
        with self._lock:
            for model, states in by_model.items():
                try:
                    merged, index = merge_model(states, now, self.stale_after)
                except Exception:  # noqa: BLE001 - a bad file must not fail the scrape
                    logger.warning("mlwatcher: model %r: merging the workers' files failed",
                                   model, exc_info=True)
                    continue
                publisher = self._publishers.get(model)
                if publisher is None:
                    publisher = self._publishers[model] = _MergedPublisher(merged)
                    self._inner.add(publisher)
                publisher.update(merged, index)
            families = list(self._inner.collect())
        yield from families


def multiprocess_registry() -> CollectorRegistry:
    """This process's registry of prometheus_client's multiprocess collector and ours."""
    global _REGISTRY
    with _STATE_LOCK:
        if _REGISTRY is None:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            MultiProcessCollector(registry)
            _REGISTRY = registry
        return _REGISTRY


def make_wsgi_app(registry: Optional[CollectorRegistry] = None) -> Callable[..., Any]:
    """:func:`.exposition.make_wsgi_app` of :func:`multiprocess_registry` (or
    `registry`): mount it at ``/metrics`` in every worker."""
    from .exposition import make_wsgi_app as make

    return make(registry if registry is not None else multiprocess_registry())
