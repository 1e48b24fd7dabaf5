"""The reference profile: what drift and label-free estimation compare each window with.

Built once from training or validation data (:func:`fit_reference`,
``ModelMonitor.fit_reference``, ``mlwatcher-exporter profile``), saved as a small
versioned JSON file (:meth:`ReferenceProfile.save`, format in docs/drift.md) and loaded
at start-up (:func:`load_reference`), so the service needs no training data.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from .cbpe import Calibration, fit_calibration
from .drift import bin_shares
from .naming import OTHER_VALUE
from .tables import to_features
from .validation import ClassIndex, check_proba
from .window import predicted_classes, top_two

__all__ = [
    "FORMAT",
    "VERSION",
    "ContinuousProfile",
    "CategoricalProfile",
    "ReferenceProfile",
    "ReferenceError",
    "fit_reference",
    "load_reference",
    "value_name",
]

FORMAT = "mlwatcher-reference"
#: Version of the file format; a file of another version is refused on load.
VERSION = 1
#: Most categories kept per categorical feature; the rest are folded into __other__.
MAX_REFERENCE_CATEGORIES = 1000


class ReferenceError(ValueError):
    """A profile file that cannot be used (missing, not JSON, another version)."""


@dataclass(frozen=True)
class ContinuousProfile:
    """A continuous distribution: quantile bins and representative points.

    Attributes
    ----------
    rows : int, finite values seen
    edges : ndarray, interior bin edges (bins ``(-inf, e0], ..., (e_last, inf)``)
    shares : ndarray, share of the rows per bin (``len(edges) + 1``)
    points : ndarray, sorted: every value when there are at most ``n_points``, else
        the quantiles at ``(i + 0.5) / n_points``; KS and Wasserstein compare with them
    iqr, std : float
    """

    rows: int
    edges: np.ndarray
    shares: np.ndarray
    points: np.ndarray
    iqr: float
    std: float

    def to_dict(self) -> Dict[str, Any]:
        return {"kind": "continuous", "rows": self.rows, "edges": self.edges.tolist(),
                "shares": self.shares.tolist(), "points": self.points.tolist(),
                "iqr": self.iqr, "std": self.std}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ContinuousProfile":
        edges = np.asarray(data["edges"], float)
        shares = np.asarray(data["shares"], float)
        if shares.size != edges.size + 1:
            raise ValueError("shares must have one more value than edges")
        return cls(int(data["rows"]), edges, shares, np.sort(np.asarray(data["points"], float)),
                   float(data["iqr"]), float(data["std"]))


@dataclass(frozen=True)
class CategoricalProfile:
    """Category shares of a categorical feature (names as the ``value`` label)."""

    rows: int
    names: List[str]
    shares: np.ndarray

    def to_dict(self) -> Dict[str, Any]:
        return {"kind": "categorical", "rows": self.rows, "names": self.names,
                "shares": self.shares.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CategoricalProfile":
        names = [str(name) for name in data["names"]]
        shares = np.asarray(data["shares"], float)
        if shares.size != len(names):
            raise ValueError("names and shares must have the same length")
        return cls(int(data["rows"]), names, shares)


FeatureProfile = Union[ContinuousProfile, CategoricalProfile]


@dataclass(frozen=True)
class ReferenceProfile:
    """A model's reference: its features, predictions and calibration.

    Attributes
    ----------
    model : str
    created : float, Unix time of the fit
    rows, labeled_rows : int
    classes : list of str, class labels in predict_proba column order
    threshold : float, the binary threshold the predicted classes were taken with
    features : dict of str to ContinuousProfile or CategoricalProfile
    class_shares : ndarray (n_classes,), predicted class distribution
    pred1, spread12 : ContinuousProfile or None
    calibration : Calibration or None (no labels: no estimation)
    """

    model: str
    created: float
    rows: int
    labeled_rows: int
    classes: List[str]
    threshold: float
    features: Dict[str, FeatureProfile]
    class_shares: np.ndarray
    pred1: Optional[ContinuousProfile]
    spread12: Optional[ContinuousProfile]
    calibration: Optional[Calibration] = None
    accuracy: Optional[float] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    def info(self) -> Dict[str, str]:
        """Labels of ``mlwatcher_reference_info``."""
        return {
            "version": str(VERSION),
            "rows": str(self.rows),
            "labeled_rows": str(self.labeled_rows),
            "features": str(len(self.features)),
            "calibration": self.calibration.method if self.calibration else "none",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
        }

    def to_dict(self) -> Dict[str, Any]:
        """The profile as JSON-ready data (see docs/drift.md)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model,
            "created": self.created,
            "rows": self.rows,
            "labeled_rows": self.labeled_rows,
            "classes": self.classes,
            "threshold": self.threshold,
            "features": {name: p.to_dict() for name, p in self.features.items()},
            "predictions": {
                "class_shares": self.class_shares.tolist(),
                "pred1": None if self.pred1 is None else self.pred1.to_dict(),
                "spread12": None if self.spread12 is None else self.spread12.to_dict(),
            },
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "accuracy": self.accuracy,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "profile") -> "ReferenceProfile":
        """Check and read :meth:`to_dict`'s data; :class:`ReferenceError` if unusable."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ReferenceError(f"{source}: not a reference profile (format must be {FORMAT!r})")
        version = data.get("version")
        if version != VERSION:
            raise ReferenceError(
                f"{source}: profile version == {version!r}, must be {VERSION}: rebuild it "
                "with `mlwatcher-exporter profile` of this release")
        try:
            features: Dict[str, FeatureProfile] = {}
            for name, item in data["features"].items():
                features[str(name)] = (ContinuousProfile.from_dict(item)
                                       if item["kind"] == "continuous"
                                       else CategoricalProfile.from_dict(item))
            predictions = data["predictions"]
            pred1, spread12 = (None if predictions[key] is None
                               else ContinuousProfile.from_dict(predictions[key])
                               for key in ("pred1", "spread12"))
            calibration = data.get("calibration")
            profile = cls(
                model=str(data["model"]), created=float(data["created"]),
                rows=int(data["rows"]), labeled_rows=int(data["labeled_rows"]),
                classes=[str(c) for c in data["classes"]], threshold=float(data["threshold"]),
                features=features, class_shares=np.asarray(predictions["class_shares"], float),
                pred1=pred1, spread12=spread12,
                calibration=None if calibration is None else Calibration.from_dict(calibration),
                accuracy=None if data.get("accuracy") is None else float(data["accuracy"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ReferenceError(f"{source}: malformed profile: {error!r}") from None
        if profile.class_shares.size != len(profile.classes):
            raise ReferenceError(f"{source}: class_shares must have one share per class")
        return profile

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write the profile as JSON (atomically: a temporary file, then a rename)."""
        temporary = f"{os.fspath(path)}.tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, separators=(",", ":"), allow_nan=False)
        os.replace(temporary, path)


def load_reference(path: Union[str, "os.PathLike[str]"]) -> ReferenceProfile:
    """Read a profile file; :class:`ReferenceError` naming the file and the problem."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as error:
        raise ReferenceError(f"reference == {os.fspath(path)!r}: cannot read it: "
                             f"{error.strerror or error}") from None
    except ValueError as error:
        raise ReferenceError(f"reference == {os.fspath(path)!r}: not JSON: {error}") from None
    return ReferenceProfile.from_dict(data, f"reference {os.fspath(path)!r}")


def value_name(value: Any) -> str:
    """The ``value`` label of a categorical value (as the window statistics name it)."""
    if isinstance(value, (float, np.floating)) or isinstance(value, (int, np.integer)):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    return str(value)


def continuous_profile(values: np.ndarray, n_bins: int, n_points: int
                       ) -> Optional[ContinuousProfile]:
    """Summary of the finite `values`; None without any."""
    values = np.sort(values[np.isfinite(values)])
    if values.size == 0:
        return None
    edges = np.unique(np.quantile(values, np.arange(1, n_bins) / n_bins))
    if values.size <= n_points:
        points = values
    else:
        points = np.quantile(values, (np.arange(n_points) + 0.5) / n_points)
    q25, q75 = np.quantile(values, [0.25, 0.75])
    return ContinuousProfile(int(values.size), edges, bin_shares(values, edges), points,
                             float(q75 - q25), float(values.std()))


def categorical_profile(names: Sequence[str]) -> Optional[CategoricalProfile]:
    """Shares of the category `names` (missing values left out)."""
    if not len(names):
        return None
    uniques, counts = np.unique(np.asarray(names, dtype=object).astype(str), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    kept = order[:MAX_REFERENCE_CATEGORIES]
    kept_names = [str(uniques[i]) for i in kept]
    shares = counts[kept] / counts.sum()
    if order.size > MAX_REFERENCE_CATEGORIES:
        kept_names.append(OTHER_VALUE)
        shares = np.append(shares, counts[order[MAX_REFERENCE_CATEGORIES:]].sum() / counts.sum())
    return CategoricalProfile(int(counts.sum()), kept_names, shares)


def fit_reference(
    proba: Any,
    features: Any = None,
    labels: Any = None,
    *,
    classes: Sequence[Any],
    feature_names: Optional[Sequence[str]] = None,
    categorical_features: Sequence[Union[str, int]] = (),
    threshold: float = 0.5,
    model: str = "default",
    calibration: str = "isotonic",
    n_bins: int = 10,
    n_points: int = 1000,
    _wall_clock: Any = time.time,
) -> ReferenceProfile:
    """Build a reference profile from data the model is known to be good on.

    Parameters
    ----------
    proba : array-like (n_rows, n_classes)
        predict_proba on the reference rows.
    features : array-like, DataFrame or mapping of columns, optional
    labels : array-like (n_rows,), optional
        True classes (values as in `classes`, or indices); with them the profile holds
        a calibration for label-free estimation. Use held-out rows, not training rows.
    classes : sequence
        Class values in column order.
    feature_names : sequence of str, optional
        Default: a DataFrame's or mapping's columns, else ``f0`` .. ``fN-1``.
    categorical_features : sequence of str or int
    threshold : float
        Binary threshold for the predicted class.
    calibration : {"isotonic", "sigmoid"}
    n_bins : int, default=10
        Quantile bins per continuous distribution (PSI, JS).
    n_points : int, default=1000
        Representative points per continuous distribution (KS, Wasserstein).

    Raises
    ------
    ValueError, TypeError
        On unusable input, naming the argument.
    """
    for name, value, low in (("n_bins", n_bins, 2), ("n_points", n_points, 10)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} == {value!r}, must be an int >= {low}")
    table = check_proba(proba, len(classes))
    rows = table.shape[0]
    predicted = predicted_classes(table, threshold)
    top, margin = top_two(table)
    profiles: Dict[str, FeatureProfile] = {}
    if features is not None:
        converted = to_features(features, rows, None)
        width = converted.numeric.shape[1]
        names = list(feature_names) if feature_names is not None else (
            converted.names or [f"f{i}" for i in range(width)])
        if len(names) != width:
            raise ValueError(f"feature_names has {len(names)} names, must have {width} "
                             "(the columns of features)")
        discrete = set()
        for ref in categorical_features:
            discrete.add(names.index(ref) if isinstance(ref, str) and ref in names else ref)
        discrete |= set(converted.text)
        for column, name in enumerate(names):
            if column in discrete:
                if column in converted.text:
                    values = [str(v) for v in converted.text[column].tolist()
                              if not _missing(v)]
                else:
                    numbers = converted.numeric[:, column]
                    values = [value_name(v) for v in numbers[np.isfinite(numbers)].tolist()]
                summary: Optional[FeatureProfile] = categorical_profile(values)
            else:
                summary = continuous_profile(
                    converted.numeric[:, column].astype(np.float64), n_bins, n_points)
            if summary is not None:
                profiles[name] = summary
    fitted = None
    labeled = 0
    accuracy = None
    if labels is not None:
        indices = ClassIndex(classes).indices(labels, rows)
        known = indices >= 0
        labeled = int(known.sum())
        if labeled:
            fitted = fit_calibration(table[known], indices[known], calibration)
            accuracy = float(np.mean(predicted[known] == indices[known]))
    return ReferenceProfile(
        model=model, created=float(_wall_clock()), rows=rows, labeled_rows=labeled,
        classes=[str(c) for c in classes], threshold=float(threshold), features=profiles,
        class_shares=np.bincount(predicted, minlength=len(classes)) / max(rows, 1),
        pred1=continuous_profile(top, n_bins, n_points),
        spread12=continuous_profile(margin, n_bins, n_points),
        calibration=fitted, accuracy=accuracy,
    )


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
