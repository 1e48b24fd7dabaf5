"""Window history: every closed window as one JSON-ready record, the last few in memory.

A consumer of closed windows (see docs/architecture.md): :meth:`WindowHistory.update`
reads ``ModelMonitor.last_window`` (and the class labels) and never the pipeline's
state. The monitor calls it after each :meth:`~.ModelMonitor.tick`, which the worker
runs when a window is due and every scrape runs first, so each published window is
seen once. Records go to a bounded deque (the landing page and the windows endpoint)
and, when configured, to rotating JSON-lines files (:mod:`.historyfile`), written by
their own thread. The record format is documented in ``docs/history.md``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Mapping, Optional, Sequence, Tuple

from ._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from .config import HistorySettings
    from .historyfile import HistoryFile
    from .window import WindowStats

__all__ = ["WindowHistory", "window_record", "DEFAULT_KEEP", "MAX_KEEP", "MAX_HELD_VALUES"]

#: Windows kept in memory by default (an hour of one-minute windows).
DEFAULT_KEEP = 60
#: Most windows kept in memory.
MAX_KEEP = 10_000
#: Most numbers the records in memory hold together (about 100 bytes each as Python
#: objects): with thousands of features, fewer than `keep` windows stay in memory. The
#: newest record is always kept.
MAX_HELD_VALUES = 200_000


def _number(value: Any) -> Optional[float]:
    """A JSON-ready float: None for NaN and infinities (JSON has neither)."""
    number = float(value)
    return number if math.isfinite(number) else None


def _stats(stats: Optional[Mapping[str, float]]) -> Optional[Dict[str, Optional[float]]]:
    return None if stats is None else {key: _number(v) for key, v in stats.items()}


def _by_class(classes: Sequence[str], values: Any) -> Optional[Dict[str, Optional[float]]]:
    if values is None:
        return None
    return {label: _number(v) for label, v in zip(classes, values.tolist())}


def _values(record: Mapping[str, Any]) -> int:
    """How many numbers a record holds (its leaves)."""
    return sum(_values(v) if isinstance(v, Mapping) else 1 for v in record.values())


def window_record(model: str, classes: Sequence[str], window: "WindowStats") -> Dict[str, Any]:
    """The history record of one closed window (the format of ``docs/history.md``).

    Every value is a JSON number, string, object or null: NaN is written as null.
    """
    scores = window.scores
    record: Dict[str, Any] = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(window.end_time))
        + f".{int(window.end_time % 1 * 1000):03d}Z",
        "model": model,
        "version": __version__,
        "window_end": _number(window.end_time),
        "window_seconds": _number(window.duration),
        "rows": int(window.rows),
        "sampled_rows": int(window.sampled_rows),
        "pred1": _stats(window.pred1),
        "spread12": _stats(window.spread12),
        "class_rows": {label: int(v) for label, v in zip(classes, window.class_rows.tolist())},
        "class_ratio": _by_class(classes, window.class_ratio),
        "features": {name: _stats(stats) for name, stats in window.features.items()},
        "missing_ratio": _stats(window.missing_ratio),
        "value_ratios": {name: _stats(ratios) for name, ratios in window.value_ratios.items()},
        "labeled_rows": int(scores.labeled_rows) if scores is not None else 0,
        "accuracy": _number(scores.accuracy) if scores is not None else None,
        "f1_macro": _number(scores.f1_macro) if scores is not None else None,
        "class_accuracy": _by_class(classes, scores.class_accuracy) if scores else None,
        "precision": _by_class(classes, scores.precision) if scores else None,
        "recall": _by_class(classes, scores.recall) if scores else None,
        "f1": _by_class(classes, scores.f1) if scores else None,
        "compute_seconds": _number(window.compute_seconds),
    }
    judgement = window.judgement  # judge.WindowJudgement, with a reference profile
    if judgement is not None:
        # PSI is computed for continuous and categorical features alike, so it ranks both.
        record["drift"] = {str(name): _number(methods.get("psi"))
                           for name, methods in judgement.feature_drift.items()}
        record["drifted_features"] = int(judgement.drifted_features)
        estimate = judgement.estimate
        if estimate is not None:
            record["estimated_accuracy"] = _number(estimate.accuracy)
            record["estimated_accuracy_stderr"] = _number(estimate.accuracy_stderr)
    return record


class WindowHistory:
    """The last `keep` closed windows of one model, and optionally their files.

    Parameters
    ----------
    model : str
    keep : int, default=60
        Records kept in memory (the oldest go first).
    file : HistoryFile, optional
        Where every record is also appended (by the file's own thread).
    max_values : int, default=MAX_HELD_VALUES
        Most numbers held by the records in memory: the oldest go first beyond it.
    """

    def __init__(self, model: str, keep: int = DEFAULT_KEEP,
                 file: "Optional[HistoryFile]" = None,
                 max_values: int = MAX_HELD_VALUES) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int):
            raise TypeError(f"keep == {keep!r}, must be an int in [1, {MAX_KEEP}]")
        if not 1 <= keep <= MAX_KEEP:
            raise ValueError(f"keep == {keep!r}, must be an int in [1, {MAX_KEEP}]")
        self.model = model
        self.keep = keep
        self.file = file
        self.max_values = max_values
        self._records: Deque[Tuple[Dict[str, Any], int]] = deque()
        self._held = 0
        self._last: "Optional[WindowStats]" = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, model: str, settings: "HistorySettings",
                      registry: Any = None) -> "WindowHistory":
        """A history as a configuration's ``history:`` section describes it."""
        file = None
        if settings.directory is not None:
            from .historyfile import HistoryFile, history_path

            file = HistoryFile(history_path(settings.directory, model), model,
                               settings.max_bytes, settings.max_files, registry=registry)
        return cls(model, settings.keep, file)

    def update(self, monitor: Any) -> bool:
        """Record `monitor`'s last window if it is new; return whether it was.

        Never raises: a history must not hurt the monitor (a failure to build a record
        is counted by the file, when there is one, and the window skipped).
        """
        window = monitor.last_window
        if window is None or window is self._last:
            return False
        with self._lock:
            if window is self._last:
                return False
            self._last = window
            try:
                record = window_record(self.model, list(monitor.class_labels), window)
            except Exception:  # noqa: BLE001 - never hurt the model
                if self.file is not None:
                    self.file.failed("encode", "could not describe a window", True)
                return False
            size = _values(record)
            self._records.append((record, size))
            self._held += size
            while len(self._records) > 1 and (len(self._records) > self.keep or
                                              self._held > self.max_values):
                self._held -= self._records.popleft()[1]
        if self.file is not None:
            self.file.put(record)
        return True

    def records(self, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """The last `limit` records (all kept by default), oldest first."""
        with self._lock:
            records = [record for record, _ in self._records]
        return records if limit is None else records[max(0, len(records) - limit):]

    def __len__(self) -> int:
        return len(self._records)

    def after_fork(self) -> None:
        """Start empty in a forked child, with a fresh lock (and a fresh file writer):
        the parent's windows are the parent's, and its locks may have been held."""
        self._lock = threading.Lock()
        self._records.clear()
        self._held = 0
        self._last = None
        if self.file is not None:
            self.file.after_fork()

    def close(self) -> None:
        """Write what is queued for the file and stop its thread."""
        if self.file is not None:
            self.file.close()
