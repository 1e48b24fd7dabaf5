"""Confidence-based performance estimation (CBPE, as NannyML's): accuracy and F1 without
labels, from probabilities calibrated on the reference's labels.

:func:`fit_calibration` fits one calibrator per class, one-vs-rest, with scikit-learn
(``IsotonicRegression`` or a one-feature ``LogisticRegression``: Platt's sigmoid), and
keeps only what applying it needs (isotonic thresholds, sigmoid coefficients), so a
profile file holds it as plain numbers and the service needs no pickle.
:func:`estimate` applies it to a window's probabilities and turns the calibrated
probability of each row's predicted class into expected confusion counts.

Classes are column indices throughout: string class names are only labels of the
published series, so their order (``classes_``) never gets sorted on the way, and a
class absent from a window (or from the reference labels) gives 0 expected counts, never
a division by zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

__all__ = ["Calibration", "Estimate", "CALIBRATION_METHODS", "fit_calibration", "estimate"]

CALIBRATION_METHODS = ("isotonic", "sigmoid")


@dataclass(frozen=True)
class Calibration:
    """Per class, a map from its predicted probability to the chance the row is of it.

    Attributes
    ----------
    method : str
        "isotonic" or "sigmoid".
    params : list of dict
        Per class (column order): ``{"x": [...], "y": [...]}`` thresholds of the
        isotonic fit, or ``{"a": float, "b": float}`` of ``1 / (1 + exp(-(a logit(p) + b)))``.
        With two classes only column 1 is calibrated (column 0 is its complement).
    """

    method: str
    params: List[Dict[str, Any]]

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, rows summing to 1."""
        if proba.shape[1] == 2:
            p1 = self._one(1 if len(self.params) == 2 else 0, proba[:, 1])
            return np.column_stack([1.0 - p1, p1])
        columns = [self._one(k, proba[:, k]) for k in range(proba.shape[1])]
        calibrated = np.column_stack(columns)
        total = calibrated.sum(axis=1, keepdims=True)
        # A row all of whose calibrators say 0 keeps its raw probabilities.
        return np.where(total > 0, calibrated / np.where(total > 0, total, 1.0), proba)

    def _one(self, column: int, p: np.ndarray) -> np.ndarray:
        params = self.params[column]
        if self.method == "isotonic":
            return np.interp(p, params["x"], params["y"])
        z = params["a"] * _logit(p) + params["b"]
        return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))

    def to_dict(self) -> Dict[str, Any]:
        """The calibration as JSON-ready data."""
        return {"method": self.method, "params": [
            {key: (value.tolist() if isinstance(value, np.ndarray) else value)
             for key, value in item.items()} for item in self.params]}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Calibration":
        """Inverse of :meth:`to_dict`; a ValueError on data of another shape."""
        method = data.get("method")
        params = data.get("params")
        if method not in CALIBRATION_METHODS or not isinstance(params, list):
            raise ValueError(f"calibration == {data!r:.80}, must have a method in "
                             f"{CALIBRATION_METHODS} and a list of params")
        keys = ("x", "y") if method == "isotonic" else ("a", "b")
        for position, item in enumerate(params):
            if not isinstance(item, dict) or any(key not in item for key in keys):
                raise ValueError(f"calibration.params[{position}] must have keys {keys}")
        if method == "isotonic":
            params = [{"x": np.asarray(p["x"], float), "y": np.asarray(p["y"], float)}
                      for p in params]
        else:
            params = [{"a": float(p["a"]), "b": float(p["b"])} for p in params]
        return cls(method, params)


def fit_calibration(proba: np.ndarray, labels: np.ndarray, method: str = "isotonic"
                    ) -> Calibration:
    """Fit one calibrator per class on `proba` and class indices `labels` (no -1).

    Parameters
    ----------
    proba : ndarray (n_rows, n_classes)
    labels : ndarray (n_rows,) of int, class indices
    method : {"isotonic", "sigmoid"}, default="isotonic"
        Isotonic needs more rows (a thousand or more); sigmoid suits small references.

    Fit it on held-out data (a validation split), not on the model's training rows,
    whose probabilities are over-confident.
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration == {method!r}, must be one of {CALIBRATION_METHODS}")
    columns = [1] if proba.shape[1] == 2 else list(range(proba.shape[1]))
    params = [_fit_one(proba[:, k], (labels == k).astype(np.float64), method)
              for k in columns]
    return Calibration(method, params)


def _fit_one(p: np.ndarray, target: np.ndarray, method: str) -> Dict[str, Any]:
    positives = float(target.mean()) if target.size else 0.0
    if positives in (0.0, 1.0):
        # One-sided: a constant, which isotonic and logistic fits cannot both express.
        if method == "isotonic":
            return {"x": np.array([0.0, 1.0]), "y": np.array([positives, positives])}
        return {"a": 0.0, "b": 500.0 if positives else -500.0}
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, target)
        return {"x": np.asarray(model.X_thresholds_, float),
                "y": np.asarray(model.y_thresholds_, float)}
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e6).fit(_logit(p)[:, None], target.astype(int))
    return {"a": float(model.coef_[0, 0]), "b": float(model.intercept_[0])}


def _logit(p: np.ndarray) -> np.ndarray:
    """Log-odds: Platt's sigmoid on them can leave a calibrated model as it is."""
    clipped = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(clipped / (1 - clipped))


@dataclass(frozen=True)
class Estimate:
    """Label-free estimates of one window's performance.

    Attributes
    ----------
    rows : int
        Rows estimated (the window's sample).
    accuracy, accuracy_stderr : float
        Expected accuracy and the standard deviation of the realised accuracy around it
        (Poisson binomial: ``sqrt(sum c (1 - c)) / n``, c the calibrated probability of
        each row's predicted class).
    f1 : ndarray (n_classes,)
        Expected one-vs-rest F1 per class, ``2 TP / (2 TP + FP + FN)`` on expected
        counts; 0 where the class has neither predicted nor expected rows.
    f1_macro : float
    """

    rows: int
    accuracy: float
    accuracy_stderr: float
    f1: np.ndarray
    f1_macro: float


def estimate(calibration: Calibration, proba: np.ndarray, predicted: np.ndarray
             ) -> Optional[Estimate]:
    """Estimate accuracy and F1 of rows with probabilities `proba` and predicted class
    indices `predicted`; None without rows."""
    rows = proba.shape[0]
    if rows == 0:
        return None
    n_classes = proba.shape[1]
    calibrated = calibration.apply(proba)
    confidence = calibrated[np.arange(rows), predicted]
    accuracy = float(confidence.mean())
    stderr = math.sqrt(float(np.sum(confidence * (1.0 - confidence)))) / rows
    predicted_mask = np.zeros((rows, n_classes), dtype=bool)
    predicted_mask[np.arange(rows), predicted] = True
    true_positive = np.where(predicted_mask, calibrated, 0.0).sum(axis=0)
    false_positive = np.bincount(predicted, minlength=n_classes) - true_positive
    false_negative = calibrated.sum(axis=0) - true_positive
    denominator = 2 * true_positive + false_positive + false_negative
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denominator > 0, 2 * true_positive / denominator, 0.0)
    f1 = np.clip(np.nan_to_num(f1, nan=0.0), 0.0, 1.0)
    return Estimate(rows, accuracy, stderr, f1, float(f1.mean()))
