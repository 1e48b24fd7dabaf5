"""Judging one closed window against the reference: drift per feature and of the
predictions, and label-free performance estimates.

Called by :class:`~.rotation.WindowLedger` right after a window's statistics, on the
same sample, off the request path and outside the processing lock (:class:`WindowJudge`
is the callable it is given). Pure computation on numpy arrays; nothing here touches
locks, clocks or metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from . import drift
from .cbpe import Estimate, estimate
from .reference import (
    CategoricalProfile,
    ContinuousProfile,
    ReferenceProfile,
    load_reference,
    value_name,
)
from .window import WindowSample, top_two

__all__ = [
    "CONTINUOUS_METHODS",
    "CATEGORICAL_METHODS",
    "PREDICTION_QUANTITIES",
    "DEFAULT_THRESHOLDS",
    "PVALUE_METHODS",
    "WindowJudgement",
    "WindowJudge",
    "judge_window",
    "make_judge",
    "continuous_drift",
    "categorical_drift",
]

CONTINUOUS_METHODS = ("psi", "js", "ks", "wasserstein")
CATEGORICAL_METHODS = ("psi", "js", "chi2_pvalue")
#: The ``quantity`` label of mlwatcher_prediction_drift: the predicted class
#: distribution (categorical methods), pred1 and spread12 (continuous methods).
PREDICTION_QUANTITIES = ("class", "pred1", "spread12")
#: A feature drifted when one of its methods is beyond its threshold: above it, or
#: below it for a p-value.
DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "psi": 0.2, "js": 0.2, "ks": 0.2, "wasserstein": 0.3, "chi2_pvalue": 0.001,
}
PVALUE_METHODS = ("chi2_pvalue",)


@dataclass(frozen=True)
class WindowJudgement:
    """Drift and estimates of one window (absent values: nothing to compare).

    Attributes
    ----------
    rows : int, sampled rows compared
    feature_drift : dict feature -> method -> value
    prediction_drift : dict quantity -> method -> value
    drifted_features : int, features beyond at least one method's threshold
    estimate : Estimate or None, without a calibration or without rows
    """

    rows: int
    feature_drift: Dict[str, Dict[str, float]] = field(default_factory=dict)
    prediction_drift: Dict[str, Dict[str, float]] = field(default_factory=dict)
    drifted_features: int = 0
    estimate: Optional[Estimate] = None


def _kept(values: Dict[str, Optional[float]]) -> Dict[str, float]:
    return {method: value for method, value in values.items() if value is not None}


def continuous_drift(profile: ContinuousProfile, values: np.ndarray) -> Dict[str, float]:
    """Every continuous method for the finite `values` against `profile`."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {}
    shares = drift.bin_shares(values, profile.edges)
    return _kept({
        "psi": drift.psi(profile.shares, shares),
        "js": drift.js_distance(profile.shares, shares),
        "ks": drift.ks_statistic(profile.points, values),
        "wasserstein": drift.wasserstein(
            profile.points, values, drift.scale_of(profile.iqr, profile.std)),
    })


def categorical_drift(profile: CategoricalProfile, counts: np.ndarray) -> Dict[str, float]:
    """Every categorical method for window `counts` over ``profile.names`` plus one
    bin for every other value (the reference has 0 there)."""
    total = counts.sum()
    if total <= 0:
        return {}
    reference = np.append(profile.shares, 0.0)
    current = counts / total
    return _kept({
        "psi": drift.psi(reference, current),
        "js": drift.js_distance(reference, current),
        "chi2_pvalue": drift.chi2_pvalue(reference * profile.rows, counts),
    })


def _category_counts(column: np.ndarray, profile: CategoricalProfile,
                     names: Optional[Sequence[str]]) -> np.ndarray:
    """Counts of a window column (numbers, or codes into `names`) over the profile's
    categories and one more for the rest; distinct values first, so names are made
    once per value, not per row."""
    column = column[np.isfinite(column)]
    uniques, counts = np.unique(column, return_counts=True)
    index = {name: i for i, name in enumerate(profile.names)}
    out = np.zeros(len(profile.names) + 1)
    for value, count in zip(uniques.tolist(), counts.tolist()):
        if names is not None:
            code = int(value)
            name = names[code] if 0 <= code < len(names) else ""
        else:
            name = value_name(value)
        out[index.get(name, len(profile.names))] += count
    return out


def _beyond(method: str, value: float, thresholds: Mapping[str, float]) -> bool:
    threshold = thresholds.get(method)
    if threshold is None:
        return False
    return value < threshold if method in PVALUE_METHODS else value > threshold


def judge_window(
    sample: WindowSample,
    profile: ReferenceProfile,
    *,
    feature_names: Sequence[str],
    value_names: Optional[Mapping[str, Sequence[str]]] = None,
    class_labels: Optional[Sequence[str]] = None,
    thresholds: Mapping[str, float] = DEFAULT_THRESHOLDS,
    pause: Optional[Callable[[], None]] = None,
) -> WindowJudgement:
    """Drift of every feature the profile knows, of the predictions, and the estimates.

    Predictions are compared (and estimated) only when the window's classes are the
    profile's, in the same order.
    """
    pause = pause or (lambda: None)
    rows = int(sample.proba.shape[0])
    judgement = WindowJudgement(rows)
    if rows == 0:
        return judgement
    features: Dict[str, Dict[str, float]] = {}
    if sample.features is not None and sample.has_features is not None:
        has = sample.has_features
        table = sample.features if has.all() else sample.features[has]
        texts = value_names or {}
        for column, name in enumerate(feature_names):
            summary = profile.features.get(name)
            if summary is None or not table.shape[0]:
                continue
            values = table[:, column]
            if isinstance(summary, ContinuousProfile):
                if name not in texts:
                    features[name] = continuous_drift(summary, values)
            else:
                counts = _category_counts(values, summary, texts.get(name))
                features[name] = categorical_drift(summary, counts)
            pause()
    features = {name: methods for name, methods in features.items() if methods}
    drifted = sum(
        any(_beyond(method, value, thresholds) for method, value in methods.items())
        for methods in features.values()
    )
    predictions: Dict[str, Dict[str, float]] = {}
    result = None
    labels = list(class_labels) if class_labels is not None else None
    if labels is None or labels == profile.classes:
        counts = np.bincount(sample.predicted, minlength=len(profile.classes)).astype(float)
        predictions["class"] = categorical_drift(
            CategoricalProfile(profile.rows, profile.classes, profile.class_shares),
            np.append(counts, 0.0))
        top, margin = top_two(sample.proba)
        for quantity, summary, values in (("pred1", profile.pred1, top),
                                          ("spread12", profile.spread12, margin)):
            if summary is not None:
                predictions[quantity] = continuous_drift(summary, values)
        if profile.calibration is not None:
            result = estimate(profile.calibration, sample.proba, sample.predicted)
        pause()
    return WindowJudgement(
        rows, features, {q: m for q, m in predictions.items() if m}, int(drifted), result)


class WindowJudge:
    """The callable a window ledger calls with each window's sample: judges it against
    `profile` with the schema's names at that time."""

    def __init__(self, profile: ReferenceProfile, thresholds: Mapping[str, float],
                 names: Callable[[], List[str]], texts: Callable[[], Mapping[str, List[str]]],
                 classes: Callable[[], List[str]],
                 failed: Optional[Callable[[], None]] = None) -> None:
        self.profile = profile
        self._failed = failed
        self.thresholds = dict(thresholds)  # method -> threshold; methods left out: not counted
        self._names = names
        self._texts = texts
        self._classes = classes

    def __call__(self, sample: WindowSample, pause: Optional[Callable[[], None]] = None
                 ) -> Optional[WindowJudgement]:
        """The window's judgement; None (and `failed` called) if it failed: a bug of
        ours must not cost the window its statistics."""
        try:
            return judge_window(
                sample, self.profile, feature_names=self._names(), value_names=self._texts(),
                class_labels=self._classes(), thresholds=self.thresholds, pause=pause)
        except Exception:  # noqa: BLE001 - reported by `failed`, with the traceback
            if self._failed is not None:
                self._failed()
            return None


def make_judge(
    reference: Any,
    thresholds: Optional[Mapping[str, Optional[float]]],
    names: Callable[[], List[str]],
    texts: Callable[[], Mapping[str, List[str]]],
    classes: Callable[[], List[str]],
    failed: Optional[Callable[[], None]] = None,
) -> WindowJudge:
    """A :class:`WindowJudge` for `reference` (a profile, or the path of its file).

    Raises
    ------
    ReferenceError
        When the file cannot be read or is of another version.
    ValueError
        When the profile's classes are not the monitor's (once the monitor knows them).
    """
    profile = reference if isinstance(reference, ReferenceProfile) else load_reference(reference)
    known = classes()
    if known and known != profile.classes:
        raise ValueError(
            f"reference classes == {profile.classes!r:.200}, must be the monitor's classes "
            f"{known!r:.200} (same values, same order)")
    merged: Dict[str, float] = {}
    for method, threshold in {**DEFAULT_THRESHOLDS, **dict(thresholds or {})}.items():
        if threshold is not None:
            merged[method] = float(threshold)
    return WindowJudge(profile, merged, names, texts, classes, failed)
