"""One pass over a stage's probabilities: predicted class, top two, counts.

Bulk processing needs, of every accepted row, the predicted class, the top probability
(pred1) and the second (for spread12), and of the whole stage the rows per predicted
class, the pred1 histogram and whether every value is a probability. In numpy that is
five passes, and the argmax along a short last axis alone costs about 30 ns per row
(``docs/benchmarks.md``, "Where the time goes"). The compiled extension ``_kernel``
(``_kernel.c``, built by ``pip install`` where a C compiler is present) does it in one
pass of a few ns per row, without the GIL. Without it, or with the environment variable
``MLWATCHER_PURE=1`` set when this module is first imported, the numpy implementation
below computes the same values; the tests hold both to the same results.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional, Tuple

import numpy as np

__all__ = [
    "RowSummary",
    "summarize",
    "summarize_pure",
    "stage_rows",
    "stage_call",
    "add_buckets",
    "add_buckets_pure",
    "add_spread_buckets",
    "add_spread_buckets_pure",
    "add_feature_sums",
    "add_feature_sums_pure",
    "add_label_counts",
    "add_label_counts_pure",
    "FEATURE_LIMIT",
    "counted_values",
    "LabelsBlockBase",
    "configure_labels_block",
    "Watched",
    "COMPILED",
]

try:
    if os.environ.get("MLWATCHER_PURE", "") not in ("", "0"):
        raise ImportError("MLWATCHER_PURE is set")
    from . import _kernel  # type: ignore[attr-defined]
except ImportError:
    _kernel = None

#: True when the compiled kernel is in use.
COMPILED = _kernel is not None


def _copy_nothing(*blocks_and_batches: object) -> int:
    return 0


#: ``stage_rows(start, proba_block, proba, features_block, features, labels_block,
#: labels) -> copied``: on the request path, copies each batch array into rows
#: ``start..`` of its block with one memcpy where it is a C-contiguous array of the
#: block's dtype and width (a ``None`` batch or block is skipped), and returns a bit
#: per pair copied (1: proba, 2: features, 4: labels); the caller assigns the others.
#: Three numpy slice assignments of a 1-row batch cost about 1 µs, this call 0.1 µs.
#: Without the compiled kernel it copies nothing and returns 0.
stage_rows = _copy_nothing if _kernel is None else _kernel.stage_rows


#: The compiled :class:`.decorator.LabelsBlock` (``LabelsBlock(var, labels,
#: ids=None)``, ``__enter__``, ``__exit__``, ``_recreate_cm``, and calling it decorates
#: a function), or None without the compiled kernel.
LabelsBlockBase: Optional[type] = None if _kernel is None else _kernel.LabelsBlock


#: The compiled wrapper of :func:`.decorator.watch` (``Watched(func, state, watchers,
#: slow, observe)``): calls ``func``, then :data:`stage_call`'s core; what that declines
#: goes to ``observe(monitor, result, args, kwargs)``, and every call while
#: ``watchers.live > 1`` to ``slow`` (the Python wrapper). None without the kernel.
Watched: Optional[type] = None if _kernel is None else _kernel.Watched


def configure_labels_block(with_ids: type, decorate: object) -> None:
    """Tell the compiled labels block what it holds with ids (``with_ids(labels,
    ids)``) and what calling it returns (``decorate(block, func)``)."""
    if _kernel is not None:
        _kernel.configure_labels_block(with_ids, decorate)


def _stage_nothing(state: object, result: object, args: object, kwargs: object) -> bool:
    return False


#: ``stage_call(state, result, args, kwargs) -> bool``: the decorator's request path for
#: the common case in one compiled call (``state`` is ``(monitor, staging, schema,
#: labels_var)``): a float64 result of the learned width, ``args[0]`` a float64 feature
#: matrix of the learned width (or no argument, no keyword), the labels block holding
#: None or int64 class indices, room in the current stage, the window not due and
#: staging's lock free; the rows are copied into the stage as ``Staging.put`` would.
#: Returns False, having done nothing, in every other case (and always without the
#: compiled kernel): the caller then takes the Python path, which handles them all.
stage_call = _stage_nothing if _kernel is None else _kernel.stage_call


def add_buckets_pure(edges: np.ndarray, values: np.ndarray, out: np.ndarray) -> None:
    """:func:`add_buckets` in numpy."""
    out += np.bincount(np.searchsorted(edges, values, side="left"), minlength=edges.size + 1)


def add_buckets(edges: np.ndarray, values: np.ndarray, out: np.ndarray) -> None:
    """Add to `out` (int64, ``edges.size + 1``) the rows of `values` per bucket:
    ``searchsorted(edges, values, side="left")``, NaN in the last, in one pass."""
    if _kernel is None:
        add_buckets_pure(edges, values, out)
        return
    _kernel.add_buckets(np.ascontiguousarray(edges, dtype=np.float64),
                        np.ascontiguousarray(values, dtype=np.float64), out)


def add_spread_buckets_pure(
    edges: np.ndarray, top: np.ndarray, second: np.ndarray, out: np.ndarray
) -> float:
    """:func:`add_spread_buckets` in numpy."""
    spread = top - second
    add_buckets_pure(edges, spread, out)
    return float(spread.sum())


def add_spread_buckets(
    edges: np.ndarray, top: np.ndarray, second: np.ndarray, out: np.ndarray
) -> float:
    """Add to `out` the rows of ``top - second`` (spread12) per bucket, as
    :func:`add_buckets`, and return their sum, in one pass without an array of spreads
    (the compiled sum runs in four lanes: it agrees with numpy's to rounding)."""
    if _kernel is None:
        return add_spread_buckets_pure(edges, top, second, out)
    return float(_kernel.add_spread_buckets(
        np.ascontiguousarray(edges, dtype=np.float64),
        np.ascontiguousarray(top, dtype=np.float64),
        np.ascontiguousarray(second, dtype=np.float64), out))


def add_label_counts_pure(
    predicted: np.ndarray, labels: np.ndarray, labeled: np.ndarray, correct: np.ndarray,
    labeled_by_predicted: np.ndarray, confusion: Optional[np.ndarray],
) -> None:
    """:func:`add_label_counts` in numpy."""
    mask = labels >= 0
    if not mask.all():
        predicted, labels = predicted[mask], labels[mask]
    n_classes = labeled.size
    labeled += np.bincount(labels, minlength=n_classes)
    correct += np.bincount(labels[labels == predicted], minlength=n_classes)
    labeled_by_predicted += np.bincount(predicted, minlength=n_classes)
    if confusion is not None:
        confusion += np.bincount(labels * n_classes + predicted,
                                 minlength=n_classes * n_classes)


def add_label_counts(
    predicted: np.ndarray, labels: np.ndarray, labeled: np.ndarray, correct: np.ndarray,
    labeled_by_predicted: np.ndarray, confusion: Optional[np.ndarray],
) -> None:
    """Add the label counters of the rows whose label (a class index) is not -1: rows
    per true class to `labeled` and per predicted class to `labeled_by_predicted`, the
    correct ones per class to `correct`, and with `confusion` (``n_classes ** 2`` cells,
    true-major) rows per (true, predicted) cell; one pass where the kernel is built."""
    if _kernel is None:
        add_label_counts_pure(predicted, labels, labeled, correct, labeled_by_predicted,
                              confusion)
        return
    _kernel.add_label_counts(
        np.ascontiguousarray(predicted, dtype=np.int64),
        np.ascontiguousarray(labels, dtype=np.int64),
        labeled, correct, labeled_by_predicted, confusion,
    )


#: Feature values beyond +-FEATURE_LIMIT count as missing in the fleet counters, like
#: NaN and the infinities: their square, or a sum of a few, would overflow a counter to
#: +Inf for good (and a published +Inf would stay).
FEATURE_LIMIT = 1e150


def counted_values(table: np.ndarray) -> np.ndarray:
    """Where `table` holds values the fleet counters count: within +-FEATURE_LIMIT."""
    with np.errstate(invalid="ignore"):
        return np.abs(table) <= FEATURE_LIMIT


def add_feature_sums_pure(
    table: np.ndarray, columns: Optional[np.ndarray], mask: Optional[np.ndarray],
    values: np.ndarray, missing: np.ndarray, positive: np.ndarray, negative: np.ndarray,
    squares: np.ndarray,
) -> None:
    """:func:`add_feature_sums` in numpy."""
    if mask is not None:
        table = table[mask]
    if columns is not None:
        table = table[:, columns]
    finite = counted_values(table)
    clean = np.where(finite, table, 0.0)
    found = finite.sum(axis=0)
    values += found
    missing += table.shape[0] - found
    positive += np.where(clean > 0, clean, 0.0).sum(axis=0)
    negative -= np.where(clean < 0, clean, 0.0).sum(axis=0)
    squares += (clean * clean).sum(axis=0)


def add_feature_sums(
    table: np.ndarray, columns: Optional[np.ndarray], mask: Optional[np.ndarray],
    values: np.ndarray, missing: np.ndarray, positive: np.ndarray, negative: np.ndarray,
    squares: np.ndarray,
) -> None:
    """Add, per column of `table` (those in `columns`, all when None), over its rows
    (those where `mask` is True, all when None): values within +-FEATURE_LIMIT to
    `values`, the others (NaN, infinities, huge) to `missing`, and with those taken as
    0, the sum of the positive values
    to `positive`, minus the sum of the negative ones to `negative`, the sum of squares
    to `squares` (the fleet's feature counters), in one pass without the GIL. The
    counts are exact; the compiled sums add four rows at a time, numpy's in its own
    order: the two paths agree to rounding (about 1e-16 relative), not to the bit."""
    if _kernel is None:
        add_feature_sums_pure(table, columns, mask, values, missing, positive, negative,
                              squares)
        return
    _kernel.add_feature_sums(
        np.ascontiguousarray(table, dtype=np.float64),
        None if columns is None else np.ascontiguousarray(columns, dtype=np.int64),
        None if mask is None else np.ascontiguousarray(mask, dtype=bool),
        values, missing, positive, negative, squares,
    )


class RowSummary(NamedTuple):
    """What :func:`summarize` finds in a block of probability rows."""

    predicted: np.ndarray  # int64 per row
    pred1: np.ndarray  # float64 per row: the top probability
    pred2: Optional[np.ndarray]  # float64 per row: the second (0.0 with one class)
    buckets: np.ndarray  # int64 per pred1 bucket: searchsorted(edges, pred1, "left")
    class_rows: np.ndarray  # int64 per class: rows predicted as it
    low: float  # the smallest value (NaN when there is none)
    high: float  # the largest value
    nan_seen: bool  # whether any value is NaN: then only this field is meaningful


def summarize(
    proba: np.ndarray, edges: np.ndarray, threshold: Optional[float] = None,
    second: bool = True,
) -> RowSummary:
    """Summarize the rows of `proba` in one pass.

    Parameters
    ----------
    proba : ndarray of shape (n_rows, n_classes), float64
        Probability rows (made C-contiguous if needed).
    edges : ndarray of shape (n_edges,), float64
        Increasing upper bucket edges of pred1; a row falls in the first bucket whose
        edge is >= its pred1, or in the last (``n_edges``) above them all.
    threshold : float, optional
        With two classes, predict class 1 iff ``p[1] > threshold``; otherwise (and with
        more classes) the argmax, the first of tied maxima.
    second : bool, default=True
        Whether `pred2` is wanted; without it the numpy implementation leaves it None
        (a partition of every row), the compiled one computes it at no cost.

    Returns
    -------
    RowSummary

    Examples
    --------
    >>> s = summarize(np.array([[0.2, 0.7, 0.1], [0.5, 0.2, 0.3]]), np.array([0.5, 0.9]))
    >>> s.predicted.tolist(), s.pred1.tolist(), s.pred2.tolist(), s.buckets.tolist()
    ([1, 0], [0.7, 0.5], [0.2, 0.3], [1, 1, 0])
    """
    if _kernel is None:
        return summarize_pure(proba, edges, threshold, second)
    n_rows, n_classes = proba.shape
    out = _outputs(n_rows, n_classes, edges.size)
    low, high, nan_seen = _kernel.summarize(
        np.ascontiguousarray(proba, dtype=np.float64),
        np.ascontiguousarray(edges, dtype=np.float64),
        float("nan") if threshold is None else float(threshold),
        *out,
    )
    predicted, pred1, pred2, buckets, class_rows = out
    return RowSummary(predicted, pred1, pred2, buckets, class_rows, low, high, nan_seen)


def _outputs(
    n_rows: int, n_classes: int, n_edges: int
) -> "Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]":
    return (
        np.empty(n_rows, dtype=np.int64),
        np.empty(n_rows, dtype=np.float64),
        np.empty(n_rows, dtype=np.float64),
        np.empty(n_edges + 1, dtype=np.int64),
        np.empty(n_classes, dtype=np.int64),
    )


def summarize_pure(
    proba: np.ndarray, edges: np.ndarray, threshold: Optional[float] = None,
    second: bool = True,
) -> RowSummary:
    """:func:`summarize` in numpy: the reference the compiled kernel is tested against."""
    proba = np.ascontiguousarray(proba, dtype=np.float64)
    n_rows, n_classes = proba.shape
    if n_rows == 0:  # numpy's reductions refuse an empty array
        empty = _outputs(0, n_classes, edges.size)
        empty[3][:] = empty[4][:] = 0  # no rows in any bucket or class
        return RowSummary(empty[0], empty[1], empty[2], empty[3], empty[4],
                          float("nan"), float("nan"), False)
    low, high = float(proba.min()), float(proba.max())
    nan_seen = low != low or high != high
    predicted: np.ndarray = proba.argmax(axis=1)
    # A flat take beats proba.max(axis=1) by 8x.
    index = np.arange(0, n_rows * n_classes, n_classes)
    pred1 = proba.reshape(-1).take(index + predicted)
    pred2 = _second(proba) if second else None
    if n_classes == 2 and threshold is not None:
        predicted = (proba[:, 1] > threshold).astype(np.int64)
    else:
        predicted = predicted.astype(np.int64)
    buckets = np.bincount(
        np.searchsorted(edges, pred1, side="left"), minlength=edges.size + 1
    ).astype(np.int64)
    class_rows = np.bincount(predicted, minlength=n_classes).astype(np.int64)
    return RowSummary(predicted, pred1, pred2, buckets, class_rows, low, high, nan_seen)


def _second(proba: np.ndarray) -> np.ndarray:
    """The second largest value of every row (0.0 with one column)."""
    n_classes = proba.shape[1]
    if n_classes == 1:
        return np.zeros(proba.shape[0])
    return np.partition(proba, n_classes - 2, axis=1)[:, n_classes - 2]
