"""Checks of one prediction batch: shapes, dtypes, ranges and label values.

Written with plain numpy rather than ``sklearn.utils.check_array``: these checks sit on
the request path of a production model, where a few microseconds matter. Every failure
raises a :class:`BatchValueError` or :class:`BatchTypeError` whose ``reason`` is one of
:data:`mlwatcher_exporter.naming.REJECT_REASONS`, so that callers can count it.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "BatchError",
    "BatchValueError",
    "BatchTypeError",
    "check_proba",
    "check_features",
    "count_rows",
    "is_table",
    "ClassIndex",
]

# float32 probabilities that a softmax rounds up a hair past 1 are still probabilities.
PROBA_TOLERANCE = 1e-6


class BatchError(Exception):
    """A batch that cannot be monitored; ``reason`` says why, ``rows`` how many rows."""

    def __init__(self, message: str, reason: str, rows: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.rows = rows


class BatchValueError(BatchError, ValueError):
    """A batch with the right types but wrong shapes or values."""


class BatchTypeError(BatchError, TypeError):
    """A batch that is not a numeric table."""


def _describe(value: Any) -> str:
    """Short description of a value for an error message (never its whole content)."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        dtype = getattr(value, "dtype", "?")
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of length {len(value)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def count_rows(value: Any) -> int:
    """Rows of a batch for the rejection counter: its length when it has one, else 1."""
    if isinstance(value, (str, bytes)):
        return 1
    try:
        return int(len(value))
    except Exception:  # noqa: BLE001 - anything without a length is one bad row
        return 1


def is_table(value: Any) -> bool:
    """Whether `value` looks like a 2-D feature table (array, DataFrame, list of rows)."""
    ndim = getattr(value, "ndim", None)
    if ndim is not None:
        return ndim == 2 and hasattr(value, "shape")
    if isinstance(value, list) and value:
        return isinstance(value[0], (list, tuple, np.ndarray))
    return False


def _to_array(value: Any, name: str, rows: int) -> np.ndarray:
    """`value` as a numpy array, without copying an array that already is one."""
    if isinstance(value, np.ndarray):
        return value
    to_numpy = getattr(value, "to_numpy", None)
    try:
        if to_numpy is not None:  # pandas DataFrame or Series
            return np.asarray(to_numpy())
        return np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists, odd objects
        raise BatchTypeError(
            f"{name} == {_describe(value)}, must be a 2-D numeric array-like ({exc})",
            "type",
            rows,
        ) from None


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
    rows = count_rows(proba)
    array = _to_array(proba, "proba", rows)
    if array.dtype.kind not in "fiub":
        raise BatchTypeError(
            f"proba == {_describe(proba)}, must hold numbers (float32 or float64 probabilities)",
            "type",
            rows,
        )
    if array.ndim != 2:
        raise BatchValueError(
            f"proba has shape {array.shape}, must be 2-D (n_rows, n_classes)", "shape", rows
        )
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
    if array.size:
        low = array.min()
        high = array.max()
        # NaN fails both comparisons, so one test covers NaN, inf and out of range.
        if not (low >= -PROBA_TOLERANCE and high <= 1.0 + PROBA_TOLERANCE):
            if not np.isfinite(array).all():
                bad = int(np.count_nonzero(~np.isfinite(array)))
                raise BatchValueError(
                    f"proba has {bad} NaN or infinite values, must be finite probabilities",
                    "non_finite",
                    rows,
                )
            raise BatchValueError(
                f"proba has values in [{low:.6g}, {high:.6g}], must lie in [0, 1]",
                "out_of_range",
                rows,
            )
    return array


def check_features(
    features: Any, n_rows: int, n_features: Optional[int], names: Optional[Sequence[str]]
) -> Tuple[np.ndarray, Optional[List[str]]]:
    """Validate a feature table; return it as a 2-D float64 array and its column names.

    Parameters
    ----------
    features : array-like or DataFrame of shape (n_rows, n_features)
        Numeric features. NaN marks a missing value. A DataFrame's columns name them.
    n_rows : int
        Rows of the probability matrix of the same batch.
    n_features : int or None
        Columns expected (fixed by ``feature_names`` or the first batch); None accepts any.
    names : sequence of str or None
        Expected column names, checked against a DataFrame's columns.

    Returns
    -------
    values : ndarray of shape (n_rows, n_features), float64
    columns : list of str or None
        The DataFrame's column names, None for other inputs.
    """
    columns = getattr(features, "columns", None)
    column_names = [str(c) for c in columns] if columns is not None else None
    if columns is not None:
        try:
            array = np.asarray(features.to_numpy(dtype=np.float64, na_value=np.nan))
        except (TypeError, ValueError):
            dtypes = getattr(features, "dtypes", None)
            bad = [] if dtypes is None else [
                str(c) for c, t in dtypes.items() if t.kind not in "fiub"
            ]
            raise BatchTypeError(
                f"features has non-numeric columns {bad[:5]}, must be numeric "
                "(encode categories as numbers)",
                "type",
                n_rows,
            ) from None
    else:
        array = _to_array(features, "features", n_rows)
        if array.dtype.kind not in "fiub":
            raise BatchTypeError(
                f"features == {_describe(features)}, must hold numbers "
                "(encode categories as numbers)",
                "type",
                n_rows,
            )
    if array.ndim != 2:
        raise BatchValueError(
            f"features has shape {array.shape}, must be 2-D (n_rows, n_features)", "shape", n_rows
        )
    if array.shape[0] != n_rows:
        raise BatchValueError(
            f"features has {array.shape[0]} rows, must have as many as proba ({n_rows})",
            "row_mismatch",
            n_rows,
        )
    if n_features is not None and array.shape[1] != n_features:
        raise BatchValueError(
            f"features has {array.shape[1]} columns, must have n_features == {n_features}",
            "n_features",
            n_rows,
        )
    if column_names is not None and names is not None and list(names) != column_names:
        raise BatchValueError(
            f"features columns {column_names[:5]}... differ from feature_names "
            f"{list(names)[:5]}..., must be the same columns in the same order",
            "n_features",
            n_rows,
        )
    return array, column_names


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
        """Return the class index of every label, as int64, or raise BatchValueError."""
        array = _to_array(labels, "labels", n_rows)
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
        if self.is_range and array.dtype.kind in "iuf":
            return self._range_indices(array, n_rows)
        return self._lookup(array, n_rows)

    def _range_indices(self, array: np.ndarray, n_rows: int) -> np.ndarray:
        if not array.size:
            return array.astype(np.int64)
        low, high = array.min(), array.max()
        if not (low >= 0 and high < self.n_classes):
            raise BatchValueError(
                f"labels has values in [{low}, {high}], must be class indices in "
                f"[0, {self.n_classes - 1}]",
                "unknown_label",
                n_rows,
            )
        indices = array.astype(np.int64)
        if array.dtype.kind == "f" and not np.array_equal(indices, array):
            raise BatchValueError(
                "labels has non-integer values, must be class indices", "unknown_label", n_rows
            )
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
            unknown = np.asarray(array)[~found][:3].tolist()
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
