"""What a model's inputs become: numpy arrays of numbers, whatever the caller passed.

scikit-learn services pass numpy arrays, ``np.matrix``, masked arrays, scipy sparse
matrices, nested lists and pandas DataFrames with numeric, text, categorical and datetime
columns. This module decides, once, what each of them means for the monitor:

* ``np.matrix`` is a 2-D array; a masked array's masked values are missing (NaN);
* a DataFrame's numeric columns are numbers, its datetime columns Unix seconds, its
  timedelta columns seconds, and its text, categorical, boolean and object columns
  categorical values (their text, described as value ratios);
* +/-inf in a feature is missing, like NaN (done on the window's sample, see
  :mod:`.rotation`);
* a scipy sparse matrix, a complex column or a table of text without column names cannot
  be described per column: a :class:`BatchTypeError` (``reason`` "sparse" or "type").

Conversion never changes the caller's objects.
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from .errors import BatchTypeError, BatchValueError, describe_value

__all__ = [
    "FeatureTable",
    "is_dataframe",
    "is_sparse",
    "is_table",
    "is_missing",
    "is_text_dtype",
    "to_array",
    "to_features",
    "to_numbers",
]

# numpy kinds that are numbers the statistics can use directly.
NUMERIC_KINDS = "fiub"


class FeatureTable(NamedTuple):
    """One batch's features, converted.

    Attributes
    ----------
    numeric : ndarray of shape (n_rows, n_features)
        Numbers (any numeric dtype); NaN in the text columns.
    text : dict of int to ndarray of object
        Per text column (by position), its values (see :func:`is_missing`).
    names : list of str or None
        Column names of a DataFrame, None for other inputs.
    """

    numeric: np.ndarray
    text: Dict[int, np.ndarray]
    names: Optional[List[str]]


def is_dataframe(value: Any) -> bool:
    """Whether `value` is a pandas DataFrame (without importing pandas)."""
    return hasattr(value, "columns") and hasattr(value, "dtypes") and hasattr(value, "iloc")


def is_sparse(value: Any) -> bool:
    """Whether `value` is a scipy sparse matrix or array (without importing scipy)."""
    return type(value).__module__.startswith("scipy.sparse")


def is_table(value: Any) -> bool:
    """Whether `value` looks like a 2-D feature table (array, DataFrame, sparse matrix,
    list of rows)."""
    ndim = getattr(value, "ndim", None)
    if ndim is not None:
        return ndim == 2 and hasattr(value, "shape")
    if isinstance(value, list) and value:
        return isinstance(value[0], (list, tuple, np.ndarray))
    return False


def to_array(value: Any, name: str, rows: int) -> np.ndarray:
    """`value` as a plain numpy array; an array that already is one is not copied.

    Masked values become NaN (numbers) or None (objects); ``np.matrix`` becomes a 2-D
    ndarray; pandas objects give their values.

    Raises
    ------
    BatchTypeError
        For a sparse matrix (reason "sparse") or a value numpy cannot convert ("type").
    """
    if type(value) is np.ndarray:
        return value
    if is_sparse(value):
        if name == "features":
            raise BatchTypeError(
                f"{name} == {describe_value(value)}, must be dense: sparse inputs are not "
                "described per column (their predictions are still monitored)",
                "sparse",
                rows,
            )
        # "sparse" is a reason for features only: probabilities and labels are "type".
        raise BatchTypeError(
            f"{name} == {describe_value(value)}, must be a dense array", "type", rows
        )
    if isinstance(value, np.ma.MaskedArray):
        return _unmask(value)
    try:
        to_numpy = getattr(value, "to_numpy", None)
        array = np.asarray(to_numpy() if to_numpy is not None else value)
    except (TypeError, ValueError, OverflowError) as exc:  # ragged lists, odd objects
        raise BatchTypeError(
            f"{name} == {describe_value(value)}, must be a numeric array-like ({exc})",
            "type",
            rows,
        ) from None
    # np.matrix and other subclasses: their indexing semantics differ from ndarray's.
    return array.view(np.ndarray) if type(array) is not np.ndarray else array


def _unmask(value: "np.ma.MaskedArray") -> np.ndarray:
    mask = np.ma.getmaskarray(value)
    data = np.asarray(value.data)
    if not mask.any():
        return data
    if data.dtype.kind in "fc":
        return np.where(mask, np.nan, data)
    if data.dtype.kind in "iub":
        return np.where(mask, np.nan, data.astype(np.float64))
    filled = data.astype(object)
    filled[mask] = None
    return filled


def to_numbers(array: np.ndarray, name: str, rows: int) -> np.ndarray:
    """A numeric view of `array`: numbers as they are, datetimes as Unix seconds,
    timedeltas as seconds, NaT as NaN.

    Raises
    ------
    BatchTypeError
        For complex numbers, text or objects that are not numbers.
    """
    kind = array.dtype.kind
    if kind in NUMERIC_KINDS:
        return array
    if kind in "mM":
        return _seconds(array)
    if kind == "O":
        try:
            return array.astype(np.float64)
        except (TypeError, ValueError, OverflowError):
            pass
    expected = "real numbers" if kind == "c" else "numbers (or a DataFrame with named columns)"
    raise BatchTypeError(
        f"{name} == {describe_value(array)}, must hold {expected}", "type", rows
    )


# Seconds in one tick of each fixed-length datetime64/timedelta64 unit, as a fraction
# (numerator, denominator) so that sub-second units are divided, which rounds once.
_TICK_SECONDS = {"W": (604800, 1), "D": (86400, 1), "h": (3600, 1), "m": (60, 1),
                 "s": (1, 1), "ms": (1, 10**3), "us": (1, 10**6), "ns": (1, 10**9),
                 "ps": (1, 10**12), "fs": (1, 10**15), "as": (1, 10**18)}
# Years and months have no fixed length: a timedelta counts them at their mean Gregorian
# length (what numpy uses too); a date is placed by numpy's calendar, which counts in
# days only up to about 2.5e16 years, so dates further out count as missing.
_MEAN_CALENDAR_SECONDS = {"Y": 31556952, "M": 2629746}
_CALENDAR_TICKS_LIMIT = 10**12


def _seconds(array: np.ndarray) -> np.ndarray:
    """Datetimes as Unix seconds, timedeltas as seconds, NaT as NaN, as float64.

    Computed from the integer ticks in the array's own unit: numpy's own arithmetic
    converts to a common unit first, which overflows without a word (a date after 2262
    in nanoseconds, or a far date in days).
    """
    unit, count = np.datetime_data(array.dtype)
    ticks = np.ascontiguousarray(array).view(np.int64)
    missing = np.isnat(array)
    if unit in _MEAN_CALENDAR_SECONDS and array.dtype.kind == "M":
        missing = missing | (np.abs(ticks) >= _CALENDAR_TICKS_LIMIT // max(count, 1))
        placed = np.where(missing, np.zeros((), array.dtype), array)
        seconds = placed.astype("M8[D]").view(np.int64) * 86400.0
    elif unit in _MEAN_CALENDAR_SECONDS:
        seconds = ticks * float(_MEAN_CALENDAR_SECONDS[unit] * count)
    else:
        numerator, denominator = _TICK_SECONDS[unit]
        seconds = ticks * float(numerator * count)
        if denominator != 1:
            seconds /= denominator
    seconds[missing] = np.nan
    return seconds


def is_missing(value: Any) -> bool:
    """Whether a text column's value is missing: None, NaN, NaT or pandas.NA."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except TypeError:  # pandas.NA refuses to be a bool
        return True


def is_text_dtype(dtype: Any) -> bool:
    """Whether a DataFrame column of `dtype` is described as categorical text: strings,
    objects, pandas categoricals and booleans."""
    return getattr(dtype, "kind", "O") in "bOSU" or str(dtype) in ("category", "string")


def to_features(features: Any, n_rows: int, text_columns: Optional[Sequence[int]]) -> FeatureTable:
    """Convert one batch's features.

    Parameters
    ----------
    features : array-like or DataFrame of shape (n_rows, n_features)
    n_rows : int
        Rows of the probability matrix of the same batch.
    text_columns : sequence of int or None
        Positions of the DataFrame columns the monitor describes as text (learned at the
        first DataFrame); None: decide from this batch's dtypes.

    Raises
    ------
    BatchTypeError, BatchValueError
        With ``reason`` "type", "sparse", "shape" or "row_mismatch".
    """
    if is_dataframe(features):
        return _frame_features(features, n_rows, text_columns)
    array = to_array(features, "features", n_rows)
    if array.ndim != 2:
        raise BatchValueError(
            f"features has shape {array.shape}, must be 2-D (n_rows, n_features)", "shape", n_rows
        )
    _check_rows(array.shape[0], n_rows)
    return FeatureTable(to_numbers(array, "features", n_rows), {}, None)


def _check_rows(rows: int, n_rows: int) -> None:
    if rows != n_rows:
        raise BatchValueError(
            f"features has {rows} rows, must have as many as proba ({n_rows})",
            "row_mismatch",
            n_rows,
        )


def _frame_features(frame: Any, n_rows: int, text_columns: Optional[Sequence[int]]) -> FeatureTable:
    _check_rows(len(frame), n_rows)
    names = [str(c) for c in frame.columns]
    dtypes = list(frame.dtypes)
    if text_columns is None:
        text_columns = [i for i, dtype in enumerate(dtypes) if is_text_dtype(dtype)]
    text_set = set(text_columns)
    numeric = np.full((n_rows, len(names)), np.nan)
    text: Dict[int, np.ndarray] = {}
    for position, dtype in enumerate(dtypes):
        column = frame.iloc[:, position]
        if position in text_set:
            # References to the values; they become str only for the rows sampled.
            text[position] = column.to_numpy(dtype=object, copy=True)
            continue
        label = f"features column {names[position]!r}"
        kind = getattr(dtype, "kind", "O")
        if kind in "iuf":
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        elif kind == "M" and getattr(dtype, "tz", None) is not None:
            values = column.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
        else:
            values = column.to_numpy()
        numeric[:, position] = to_numbers(np.asarray(values), label, n_rows)
    return FeatureTable(numeric, text, names)
