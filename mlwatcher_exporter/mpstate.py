"""The state one worker process writes for the others: counters and closed windows.

Two files per process and model in ``PROMETHEUS_MULTIPROC_DIR`` (names start with
``mlwatcher_`` and do not end in ``.db``, so prometheus_client's own collector ignores
them), each written to a temporary name and renamed, so a reader sees a whole file:

- ``mlwatcher_<token>_<model hash>.json``: the lifetime counters, rejected and dropped
  rows, late-label counters, the window index the worker has closed through, and a
  heartbeat (``written``, ``final``).
- ``mlwatcher_<token>_<model hash>.npz``: the samples of the last closed windows
  (reservoir rows, features, labels, rows seen, rows per predicted class) with what
  their statistics need (feature names, categorical mask, text values).

Counter objects are written **generically**: every numpy array and number attribute of
:class:`~.counts.LifetimeCounts` (and of the late-label counters) is written under its
name and merged by :func:`merge_attributes`, so a counter added there flows through
without a change here. Merge rule by attribute name: ``last_*`` take the maximum,
``*_edges``, strings and the configuration objects (the fleet layout, the continuous
feature columns: identical in every worker) the first value, every other array, number
and mapping of numbers is summed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import (
    Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar,
)

import numpy as np

from .fleetcounts import FeatureColumns, FleetLayout
from .window import WindowSample

__all__ = [
    "WindowRecord",
    "WorkerState",
    "encode_attributes",
    "decode_attributes",
    "merge_attributes",
    "state_paths",
    "write_state",
    "read_states",
    "window_index",
    "PREFIX",
]

PREFIX = "mlwatcher_"
VERSION = 1
T = TypeVar("T")


def window_index(wall_time: float, window_seconds: float) -> int:
    """The wall-clock window grid index of a window boundary (rounded: clocks jitter)."""
    return int(round(wall_time / window_seconds))


class WindowRecord:
    """One closed window of one worker: its sample and what its statistics need.

    ``index`` is its end on the grid (end time = index * window_seconds), ``start`` the
    Unix time the worker's window started (later for a worker born in it). Read from a
    file, the sample is loaded when first used: a scrape reads only the windows it
    publishes.
    """

    def __init__(self, index: int, start: float, sample: Optional[WindowSample],
                 feature_names: Sequence[str] = (), categorical: Sequence[bool] = (),
                 value_names: Optional[Mapping[str, Sequence[str]]] = None, *,
                 rows: Optional[int] = None,
                 loader: Optional[Callable[[], WindowSample]] = None) -> None:
        self.index = index
        self.start = start
        self._sample = sample
        self._loader = loader
        self.rows = int(sample.rows if sample is not None else (rows or 0))
        self.feature_names = list(feature_names)
        self.categorical = list(categorical)
        self.value_names = {k: list(v) for k, v in (value_names or {}).items()}

    @property
    def sample(self) -> WindowSample:
        """The sampled rows (loaded from the file on first use)."""
        if self._sample is None:
            assert self._loader is not None
            self._sample = self._loader()
        return self._sample


@dataclass
class WorkerState:
    """What one worker process published of one model."""

    model: str
    token: str
    written: float
    final: bool
    closed_through: int
    window_seconds: float
    reservoir_size: int
    max_categories: int
    class_labels: List[str]
    counts: Optional[Dict[str, Any]]
    late: Optional[Dict[str, Any]]
    rejected: Dict[str, int]
    dropped: Dict[Tuple[str, str], int]
    windows: List[WindowRecord] = field(default_factory=list)


# ---------------------------------------------------------------- generic attributes
def encode_attributes(obj: Any) -> Dict[str, Any]:
    """Every array, number, string, None and mapping attribute of `obj`, JSON-ready."""
    out: Dict[str, Any] = {}
    for name, value in vars(obj).items():
        if isinstance(value, np.ndarray):
            out[name] = {"array": value.tolist(), "dtype": str(value.dtype)}
        elif isinstance(value, Mapping):
            out[name] = {"map": [[key, _plain(item)] for key, item in value.items()]}
        elif value is None or isinstance(value, (bool, int, float, str, np.generic)):
            out[name] = {"value": _plain(value)}
        elif isinstance(value, FleetLayout):
            out[name] = {"layout": _encode_layout(value)}
        elif isinstance(value, FeatureColumns):
            out[name] = {"columns": _encode_columns(value)}
    return out


def _encode_layout(layout: FleetLayout) -> Dict[str, Any]:
    return {"pred1_buckets": list(layout.pred1_buckets),
            "spread12_buckets": list(layout.spread12_buckets),
            "confusion_matrix": layout.confusion_matrix,
            "confusion_max_classes": layout.confusion_max_classes,
            "feature_buckets": {k: v if isinstance(v, str) else list(v)
                                for k, v in layout.feature_buckets.items()},
            "max_series": layout.max_series,
            "feature_statistics": list(layout.feature_statistics),
            "features_allow": list(layout.features_allow),
            "features_deny": list(layout.features_deny)}


def _decode_layout(data: Mapping[str, Any]) -> FleetLayout:
    return FleetLayout(
        pred1_buckets=tuple(data["pred1_buckets"]),
        spread12_buckets=tuple(data["spread12_buckets"]),
        confusion_matrix=bool(data["confusion_matrix"]),
        confusion_max_classes=int(data["confusion_max_classes"]),
        feature_buckets={k: v if isinstance(v, str) else tuple(v)
                         for k, v in data["feature_buckets"].items()},
        max_series=int(data["max_series"]),
        feature_statistics=tuple(data["feature_statistics"]),
        features_allow=tuple(data["features_allow"]),
        features_deny=tuple(data["features_deny"]))


def _encode_columns(columns: FeatureColumns) -> Dict[str, Any]:
    return {"names": list(columns.names), "columns": columns.columns.tolist(),
            "all_columns": columns.all_columns,
            "histograms": [[position, edges.tolist(), offset]
                           for position, edges, offset in columns.histograms],
            "missing_histograms": list(columns.missing_histograms),
            "provisional": columns.provisional}


def _decode_columns(data: Mapping[str, Any]) -> FeatureColumns:
    return FeatureColumns(
        names=tuple(data["names"]), columns=np.asarray(data["columns"], dtype=np.intp),
        all_columns=bool(data["all_columns"]),
        histograms=tuple((int(position), np.asarray(edges, dtype=float), int(offset))
                         for position, edges, offset in data["histograms"]),
        missing_histograms=tuple(data["missing_histograms"]),
        provisional=bool(data["provisional"]))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def decode_attributes(encoded: Mapping[str, Any]) -> Dict[str, Any]:
    """The attributes :func:`encode_attributes` wrote, as Python and numpy values."""
    out: Dict[str, Any] = {}
    for name, item in encoded.items():
        if "array" in item:
            out[name] = np.asarray(item["array"], dtype=item["dtype"])
        elif "map" in item:
            out[name] = {_key(key): value for key, value in item["map"]}
        elif "layout" in item:
            out[name] = _decode_layout(item["layout"])
        elif "columns" in item:
            out[name] = _decode_columns(item["columns"])
        else:
            out[name] = item["value"]
    return out


def _key(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def merge_attributes(parts: Sequence[Mapping[str, Any]], cls: Type[T]) -> T:
    """One `cls` object (made without calling its constructor) whose attributes merge
    those of `parts` by name: see the module's rule. Raises ValueError when arrays of
    one name differ in shape."""
    result = cls.__new__(cls)
    names: Dict[str, None] = {}
    for part in parts:
        names.update(dict.fromkeys(part))
    for name in names:
        values = [part[name] for part in parts if name in part]
        setattr(result, name, _merge_values(name, values))
    return result


def _merge_values(name: str, values: List[Any]) -> Any:
    present = [value for value in values if value is not None]
    if not present:
        return None
    first = present[0]
    if name.startswith("last_"):
        return max(present)
    if name.endswith("_edges") or isinstance(first, (str, bool, FleetLayout, FeatureColumns)):
        return first
    if isinstance(first, np.ndarray):
        if any(value.shape != first.shape for value in present):
            raise ValueError(f"{name}: shapes {[v.shape for v in present]} differ")
        return np.sum(present, axis=0).astype(first.dtype)
    if isinstance(first, dict):
        merged: Dict[Any, Any] = {}
        for value in present:
            for key, item in value.items():
                merged[key] = merged.get(key, 0) + item
        return merged
    return sum(present)


# ---------------------------------------------------------------- files
def state_paths(directory: str, token: str, model: str) -> Tuple[str, str]:
    """The counters (.json) and windows (.npz) files of one process and model."""
    digest = hashlib.sha1(model.encode("utf-8")).hexdigest()[:12]
    base = os.path.join(directory, f"{PREFIX}{token}_{digest}")
    return base + ".json", base + ".npz"


def _replace(path: str, write: Any) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "wb") as file:
        write(file)
    os.replace(temporary, path)


def write_state(directory: str, state: WorkerState, windows_changed: bool) -> None:
    """Write `state` atomically: the windows first (when changed), then the counters,
    so a reader that sees ``closed_through`` also finds those windows."""
    counters_path, windows_path = state_paths(directory, state.token, state.model)
    if windows_changed:
        arrays: Dict[str, np.ndarray] = {}
        meta = []
        for position, record in enumerate(state.windows):
            sample = record.sample
            for name in ("proba", "predicted", "labels", "class_rows", "features",
                         "has_features"):
                value = getattr(sample, name)
                if value is not None:
                    arrays[f"w{position}_{name}"] = value
            meta.append({"index": record.index, "start": record.start, "rows": sample.rows,
                         "feature_names": record.feature_names,
                         "categorical": record.categorical,
                         "value_names": record.value_names})
        arrays["meta"] = np.asarray(json.dumps(meta))
        _replace(windows_path, lambda file: np.savez(file, **arrays))  # type: ignore
    document = {
        "version": VERSION, "model": state.model, "token": state.token,
        "written": state.written, "final": state.final,
        "closed_through": state.closed_through, "window_seconds": state.window_seconds,
        "reservoir_size": state.reservoir_size, "max_categories": state.max_categories,
        "class_labels": state.class_labels, "counts": state.counts, "late": state.late,
        "rejected": state.rejected,
        "dropped": [[part, reason, rows] for (part, reason), rows in state.dropped.items()],
    }
    _replace(counters_path, lambda file: file.write(json.dumps(document).encode("utf-8")))


def _load_window(path: str, index: int) -> WindowSample:
    """The sample of window `index` in a windows file (found by index: the file may
    have been replaced since its list of windows was read)."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        position = next(i for i, item in enumerate(meta) if item["index"] == index)

        def get(name: str) -> Optional[np.ndarray]:
            key = f"w{position}_{name}"
            return data[key] if key in data.files else None

        proba, predicted = get("proba"), get("predicted")
        labels, class_rows = get("labels"), get("class_rows")
        assert proba is not None and predicted is not None
        assert labels is not None and class_rows is not None
        return WindowSample(
            proba=proba, predicted=predicted, features=get("features"),
            has_features=get("has_features"), labels=labels,
            rows=int(meta[position]["rows"]), class_rows=class_rows,
        )


def _read_windows(path: str) -> List[WindowRecord]:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError):
        return []
    return [
        WindowRecord(int(item["index"]), float(item["start"]), None, item["feature_names"],
                     item["categorical"], item["value_names"], rows=int(item["rows"]),
                     loader=functools.partial(_load_window, path, int(item["index"])))
        for item in meta
    ]


def read_states(paths: Iterable[str]) -> List[WorkerState]:
    """The states of the counters files among `paths` (with their windows files); files
    being replaced or unreadable are skipped."""
    states = []
    for path in sorted(paths):
        if not (os.path.basename(path).startswith(PREFIX) and path.endswith(".json")):
            continue
        try:
            with open(path, "rb") as file:
                doc = json.loads(file.read())
        except (OSError, ValueError):
            continue
        if doc.get("version") != VERSION:
            continue
        states.append(WorkerState(
            model=doc["model"], token=doc["token"], written=float(doc["written"]),
            final=bool(doc["final"]), closed_through=int(doc["closed_through"]),
            window_seconds=float(doc["window_seconds"]),
            reservoir_size=int(doc["reservoir_size"]),
            max_categories=int(doc["max_categories"]), class_labels=list(doc["class_labels"]),
            counts=doc["counts"], late=doc["late"], rejected=dict(doc["rejected"]),
            dropped={(part, reason): rows for part, reason, rows in doc["dropped"]},
            windows=_read_windows(path[:-len(".json")] + ".npz"),
        ))
    return states
