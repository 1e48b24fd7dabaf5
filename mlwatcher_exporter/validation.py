"""Checks of one prediction batch's values: probabilities and labels.

Written with plain numpy rather than ``sklearn.utils.check_array``: these checks run for
every batch, on the caller's thread for :meth:`ModelMonitor.observe` and in bulk for the
decorator. Every failure raises a :class:`BatchValueError` or :class:`BatchTypeError`
whose ``reason`` names a counter's label.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .errors import BatchError, BatchTypeError, BatchValueError, count_rows, describe_value
from .tables import is_missing, to_array

__all__ = [
    "BatchError",
    "BatchValueError",
    "BatchTypeError",
    "PROBA_TOLERANCE",
    "check_proba",
    "to_proba_table",
    "check_proba_values",
    "count_rows",
    "ClassIndex",
]

# float32 probabilities that a softmax rounds up a hair past 1 are still probabilities.
PROBA_TOLERANCE = 1e-6


def to_proba_table(proba: Any) -> np.ndarray:
    """`proba` as a 2-D numeric array (not copied when it already is one).

    Raises
    ------
    BatchTypeError, BatchValueError
        When it is not numeric ("type") or not 2-D ("shape").
    """
    if type(proba) is np.ndarray and proba.ndim == 2 and proba.dtype.kind in "fiub":
        return proba
    rows = count_rows(proba)
    array = to_array(proba, "proba", rows)
    if array.dtype.kind not in "fiub":
        raise BatchTypeError(
            f"proba == {describe_value(proba)}, must hold numbers (float32 or float64 "
            "probabilities)",
            "type",
            rows,
        )
    if array.ndim != 2:
        raise BatchValueError(
            f"proba has shape {array.shape}, must be 2-D (n_rows, n_classes)", "shape", rows
        )
    return array


def check_proba(proba: Any, n_classes: Optional[int]) -> np.ndarray:
    """Validate a predict_proba matrix and return it as a 2-D float array.

    Parameters
    ----------
    proba : array-like of shape (n_rows, n_classes)
        Class probabilities, one row per prediction.
    n_classes : int or None
        The declared number of classes; None accepts any number >= 2.

    Returns
    -------
    ndarray of shape (n_rows, n_classes)
        The same array when it already is a float ndarray, else a converted copy.

    Raises
    ------
    BatchTypeError
        When `proba` is not numeric.
    BatchValueError
        On a wrong shape, a class-count mismatch, NaN/inf or values outside [0, 1].
    """
    array = to_proba_table(proba)
    rows = array.shape[0]
    width = array.shape[1]
    if n_classes is not None and width != n_classes:
        raise BatchValueError(
            f"proba has {width} columns, must have n_classes == {n_classes}", "n_classes", rows
        )
    if n_classes is None and width < 2:
        raise BatchValueError(
            f"proba has {width} columns, must have at least 2 classes", "n_classes", rows
        )
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    check_proba_values(array, rows)
    return array


def check_proba_values(array: np.ndarray, rows: int) -> None:
    """Raise a :class:`BatchValueError` unless every value of `array` is a probability.

    ``reason`` is "non_finite" for NaN or infinity, "out_of_range" outside [0, 1].
    """
    if not array.size:
        return
    low = array.min()
    high = array.max()
    # NaN fails both comparisons, so one test covers NaN, inf and out of range.
    if low >= -PROBA_TOLERANCE and high <= 1.0 + PROBA_TOLERANCE:
        return
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        raise BatchValueError(
            f"proba has {bad} NaN or infinite values, must be finite probabilities",
            "non_finite",
            rows,
        )
    raise BatchValueError(
        f"proba has values in [{low:.6g}, {high:.6g}], must lie in [0, 1]", "out_of_range", rows
    )


class ClassIndex:
    """Maps label values (class names, class values or one-hot rows) to column indices.

    Parameters
    ----------
    classes : array-like of shape (n_classes,)
        The class values in predict_proba column order (``estimator.classes_``).
    """

    def __init__(self, classes: Sequence[Any]) -> None:
        self.classes = np.asarray(classes)
        self.n_classes = len(self.classes)
        self._sorter = np.argsort(self.classes, kind="stable")
        self._sorted = self.classes[self._sorter]
        #: Whether the classes are 0..n-1, so that integer labels are their own indices.
        self.is_range = bool(
            self.classes.dtype.kind in "iu"
            and np.array_equal(self.classes, np.arange(self.n_classes))
        )

    def indices(self, labels: Any, n_rows: int) -> np.ndarray:
        """Return the class index of every label as int64, -1 for a missing label.

        A label is missing when it is NaN, None or masked. Integer labels are class
        indices when the classes are 0..n-1, and also when no class is a number (then
        they cannot mean anything else).

        Raises
        ------
        BatchValueError, BatchTypeError
            ``reason`` "shape", "row_mismatch", "type" or "unknown_label".
        """
        array = to_array(labels, "labels", n_rows)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim == 2:
            return self._one_hot(array, n_rows)
        if array.ndim != 1:
            raise BatchValueError(
                f"labels has shape {array.shape}, must be (n_rows,), (n_rows, 1) or one-hot "
                f"(n_rows, {self.n_classes})",
                "shape",
                n_rows,
            )
        if array.shape[0] != n_rows:
            raise BatchValueError(
                f"labels has {array.shape[0]} rows, must have as many as proba ({n_rows})",
                "row_mismatch",
                n_rows,
            )
        kind = array.dtype.kind
        if kind in "iuf" and (self.is_range or self.classes.dtype.kind not in "iufb"):
            return self.range_indices(array, n_rows)
        if kind == "O":
            present = np.array([not is_missing(v) for v in array.tolist()], dtype=bool)
            if not present.all():
                indices = np.full(n_rows, -1, dtype=np.int64)
                indices[present] = self._lookup(array[present], n_rows)
                return indices
        if kind == "f":
            present = ~np.isnan(array)
            if not present.all():
                indices = np.full(n_rows, -1, dtype=np.int64)
                indices[present] = self._lookup(array[present], n_rows)
                return indices
        return self._lookup(array, n_rows)

    def range_indices(self, array: np.ndarray, n_rows: int) -> np.ndarray:
        """Numeric labels as class indices in [0, n_classes); NaN is -1 (missing)."""
        if array.dtype.kind == "f":
            present = ~np.isnan(array)
            values = array[present]
        else:
            present, values = None, array
        if values.size:
            low, high = values.min(), values.max()
            if not (low >= 0 and high < self.n_classes):
                raise BatchValueError(
                    f"labels has values in [{low:g}, {high:g}], must be class indices in "
                    f"[0, {self.n_classes - 1}]",
                    "unknown_label",
                    n_rows,
                )
            if values.dtype.kind == "f" and not np.array_equal(np.floor(values), values):
                raise BatchValueError(
                    "labels has non-integer values, must be class indices",
                    "unknown_label",
                    n_rows,
                )
        if present is None:
            return array.astype(np.int64)
        indices = np.full(array.shape[0], -1, dtype=np.int64)
        indices[present] = values.astype(np.int64)
        return indices

    def _lookup(self, array: np.ndarray, n_rows: int) -> np.ndarray:
        try:
            position = np.searchsorted(self._sorted, array)
        except TypeError:  # e.g. strings against integer classes
            position = None
        if position is not None:
            position = np.minimum(position, self.n_classes - 1)
            found = self._sorted[position] == array
            if np.all(found):
                return self._sorter[position].astype(np.int64)
            unknown = np.asarray(array)[~np.asarray(found, dtype=bool)][:3].tolist()
        else:
            unknown = np.asarray(array)[:3].tolist()
        raise BatchValueError(
            f"labels has values {unknown} that are not classes, must be one of "
            f"{self.classes[:10].tolist()}",
            "unknown_label",
            n_rows,
        )

    def _one_hot(self, array: np.ndarray, n_rows: int) -> np.ndarray:
        if array.shape != (n_rows, self.n_classes):
            reason = "row_mismatch" if array.shape[0] != n_rows else "shape"
            raise BatchValueError(
                f"labels has shape {array.shape}, a one-hot label matrix must be "
                f"({n_rows}, {self.n_classes})",
                reason,
                n_rows,
            )
        if array.size and not (
            np.all((array == 0) | (array == 1)) and np.all(array.sum(axis=1) == 1)
        ):
            raise BatchValueError(
                "labels is 2-D but not one-hot, each row must hold a single 1 and zeros",
                "unknown_label",
                n_rows,
            )
        return np.argmax(array, axis=1).astype(np.int64)
