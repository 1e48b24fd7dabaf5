"""The ``mlwatcher-exporter profile`` command: reference data from a file to a profile.

Reads CSV, NPZ, and Parquet when pyarrow is installed (optional). Layout:

- NPZ: arrays ``proba`` (n_rows, n_classes), optional ``features`` (n_rows, n_features)
  and ``labels`` (n_rows,).
- CSV and Parquet: one column ``proba_<class>`` per class (in ``class_names`` order when
  the configuration has them, else in file order), an optional ``label`` column, and
  the features: the ``feature_names`` of the configuration, or every other column.
  CSV cells that are all numbers (or empty: missing) make a numeric column, any other
  makes a text column.
"""

from __future__ import annotations

import csv
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .config import ConfigError, MonitorSettings, load_config
from .reference import ReferenceError, fit_reference

__all__ = ["read_reference_data", "run_profile", "PROBA_PREFIX", "LABEL_COLUMN"]

PROBA_PREFIX = "proba_"
LABEL_COLUMN = "label"

Data = Tuple[np.ndarray, Any, Optional[np.ndarray], Optional[List[str]]]


def _column(values: List[str]) -> np.ndarray:
    """Numbers when every non-empty cell is one (empty: NaN), else the text."""
    try:
        return np.array([float(v) if v.strip() else np.nan for v in values])
    except ValueError:
        return np.array([v if v.strip() else None for v in values], dtype=object)


def _read_csv(path: str) -> Dict[str, np.ndarray]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty CSV, expected a header row")
    header, body = rows[0], rows[1:]
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}: line {number} has {len(row)} cells, must have "
                             f"{len(header)} (the header's)")
    return {name: _column([row[i] for row in body]) for i, name in enumerate(header)}


def _read_parquet(path: str) -> Dict[str, np.ndarray]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow); "
                         "or give a CSV or NPZ file") from None
    table = pq.read_table(path).to_pydict()
    out = {}
    for name, values in table.items():
        try:
            out[name] = np.array([np.nan if v is None else v for v in values], dtype=float)
        except (TypeError, ValueError):
            out[name] = np.array(values, dtype=object)
    return out


def _split_columns(columns: Dict[str, np.ndarray], settings: MonitorSettings,
                   path: str) -> Data:
    names = settings.class_names
    if names is not None:
        wanted = [f"{PROBA_PREFIX}{name}" for name in names]
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r}, expected one "
                             f"{PROBA_PREFIX}<class> column per class_names value")
        classes: Optional[List[str]] = None
    else:
        wanted = [c for c in columns if c.startswith(PROBA_PREFIX)]
        classes = [c[len(PROBA_PREFIX):] for c in wanted]
        if len(wanted) < 2:
            raise ValueError(f"{path}: found {len(wanted)} {PROBA_PREFIX}<class> columns, "
                             "must have one per class (at least 2)")
    proba = np.column_stack([columns[c].astype(float) for c in wanted])
    labels = columns.get(LABEL_COLUMN)
    feature_names = (list(settings.feature_names) if settings.feature_names is not None
                     else [c for c in columns if c not in wanted and c != LABEL_COLUMN])
    absent = [c for c in feature_names if c not in columns]
    if absent:
        raise ValueError(f"{path}: no column {absent[0]!r} (a feature_names value)")
    features = {name: columns[name] for name in feature_names} if feature_names else None
    return proba, features, labels, classes


def read_reference_data(path: str, settings: MonitorSettings) -> Data:
    """Read `path`; returns proba, features (a mapping of columns, an array or None),
    labels or None, and the class names found in the file when the settings have none.

    Raises
    ------
    ValueError
        Naming the file and what is wrong with it.
    """
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            if "proba" not in data:
                raise ValueError(f"{path}: no array 'proba', expected proba, features, labels")
            return (data["proba"], data["features"] if "features" in data else None,
                    data["labels"] if "labels" in data else None, None)
    if suffix == ".csv":
        return _split_columns(_read_csv(path), settings, path)
    if suffix in (".parquet", ".pq"):
        return _split_columns(_read_parquet(path), settings, path)
    raise ValueError(f"{path}: unknown suffix {suffix!r}, expected .csv, .npz or .parquet")


def run_profile(config: str, data: str, output: str, calibration: str = "isotonic",
                n_bins: int = 10, n_points: int = 1000) -> int:
    """Build the profile of `data` for the model of `config` and write it to `output`."""
    try:
        settings = load_config(config)
        proba, features, labels, found = read_reference_data(data, settings)
        classes: List[Any]
        if settings.class_names is not None:
            classes = list(settings.class_names)
        elif found is not None:
            classes = list(found)
        else:
            classes = list(range(settings.n_classes or np.asarray(proba).shape[1]))
        if labels is not None and np.asarray(labels).dtype.kind == "f" and found is not None:
            labels = np.array([None if np.isnan(v) else repr(v) if not float(v).is_integer()
                               else str(int(v)) for v in labels], dtype=object)
        profile = fit_reference(
            proba, features, labels, classes=classes,
            feature_names=None if isinstance(features, dict) else settings.feature_names,
            categorical_features=settings.categorical_features, threshold=settings.threshold,
            model=settings.model, calibration=calibration, n_bins=n_bins, n_points=n_points)
        profile.save(output)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, ReferenceError) as error:
        print(f"mlwatcher-exporter profile: error: {error}", file=sys.stderr)
        return 2
    calibrated = (f", calibrated ({profile.calibration.method}) on {profile.labeled_rows} "
                  "labels" if profile.calibration else ", no labels: no estimation")
    print(f"{output}: profile of {profile.rows} rows, {len(profile.features)} features"
          f"{calibrated}")
    return 0
