"""The reader side of multiprocess mode: every worker's files, merged and published.

:class:`MultiProcessCollector` reads every worker's state file (:mod:`.mpstate`), merges
them per model (:mod:`.mpmerge`) and publishes the merge under the usual ``mlwatcher_*``
families through :class:`~.collector.MonitorCollector`, one merged publisher a model
(its window judged against this process's reference profile, if any).
:mod:`.multiprocess` imports it too.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from .collector import MonitorCollector, MonitorSnapshot
from .judge import WindowJudgement, judge_window
from .mpmerge import MergedModel, merge_model, window_stats
from .mpstate import PREFIX, WorkerState, read_states
from .mpwriter import flush_seconds, multiproc_dir
from .window import WindowSample, WindowStats

if TYPE_CHECKING:  # pragma: no cover
    from .monitor import ModelMonitor

__all__ = ["MultiProcessCollector"]

logger = logging.getLogger("mlwatcher_exporter")


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
        from . import multiprocess  # this process's writer, if it has one

        writer = multiprocess._WRITER
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
