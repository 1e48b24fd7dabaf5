"""Statistics of one closed window, computed from its sample with vectorised numpy.

Pure functions: a :class:`WindowSample` in, a :class:`WindowStats` out. Nothing here
touches locks, clocks or metrics, so the tests compare each number with an independent
numpy or scikit-learn computation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .naming import OTHER_VALUE, STATS

__all__ = [
    "WindowSample",
    "WindowStats",
    "LabelScores",
    "describe",
    "describe_columns",
    "top_two",
    "predicted_classes",
    "label_scores",
    "value_ratios",
    "compute_window_stats",
]


@dataclass(frozen=True)
class WindowSample:
    """The sampled rows of one window and its exact row counts.

    Attributes
    ----------
    proba : ndarray (n_sampled, n_classes)
    predicted : ndarray (n_sampled,) of int, the predicted class of each sampled row
    features : ndarray (n_sampled, n_features) or None
    has_features : ndarray (n_sampled,) of bool or None, rows that came with features
    labels : ndarray (n_sampled,) of int, -1 where the row had no label
    rows : int, every row of the window, before sampling
    class_rows : ndarray (n_classes,) of int, predicted class counts over every row
    """

    proba: np.ndarray
    predicted: np.ndarray
    features: Optional[np.ndarray]
    has_features: Optional[np.ndarray]
    labels: np.ndarray
    rows: int
    class_rows: np.ndarray


@dataclass(frozen=True)
class LabelScores:
    """Scores of predictions against labels, one-vs-rest per class as the ancestor."""

    labeled_rows: int
    accuracy: float
    class_accuracy: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    f1_macro: float


@dataclass(frozen=True)
class WindowStats:
    """Everything published about one completed window.

    Statistics that a window cannot have (no rows, no features, no labels) are None
    or empty, so that they are absent from /metrics rather than 0 or NaN.
    """

    end_time: float
    duration: float
    rows: int
    sampled_rows: int
    class_rows: np.ndarray
    class_ratio: Optional[np.ndarray]
    pred1: Optional[Dict[str, float]]
    spread12: Optional[Dict[str, float]]
    features: Dict[str, Dict[str, float]] = field(default_factory=dict)
    missing_ratio: Dict[str, float] = field(default_factory=dict)
    value_ratios: Dict[str, Dict[str, float]] = field(default_factory=dict)
    scores: Optional[LabelScores] = None
    compute_seconds: float = 0.0
    # Drift and estimates against a reference profile (judge.WindowJudgement), if any.
    judgement: Optional[Any] = None


def describe(values: np.ndarray) -> Dict[str, float]:
    """The nine statistics of a 1-D array without NaN (population std, linear quantiles).

    The same numbers as numpy's ``mean``, ``std``, ``min``, ``max`` and ``quantile``, bit
    for bit, by way of a sort: one numpy call that releases the GIL throughout, where
    ``np.quantile`` takes a dozen steps, several of them Python code holding it.
    """
    ordered = np.array(values, dtype=np.float64)  # a copy: sorted in place below
    stats = {"mean": float(ordered.mean()), "std": float(ordered.std()),
             "min": float(ordered.min()), "max": float(ordered.max())}
    ordered.sort()
    for stat, q in zip(("q25", "median", "q75"), _QUANTILES):
        stats[stat] = _sorted_quantile(ordered, q)
    stats["range"] = stats["max"] - stats["min"]
    stats["iqr"] = stats["q75"] - stats["q25"]
    return {stat: stats[stat] for stat in STATS}


_QUANTILES = (0.25, 0.5, 0.75)


def _sorted_quantile(ordered: np.ndarray, q: float) -> float:
    """``np.quantile(ordered, q)`` (its "linear" method and its arithmetic) of sorted
    values."""
    last = ordered.size - 1
    virtual = last * q
    if virtual >= last:
        return float(ordered[last])
    below = math.floor(virtual)
    low, high = float(ordered[below]), float(ordered[below + 1])
    gamma = virtual - below
    # numpy's _lerp: from the nearer end, so that gamma 1 gives `high` exactly.
    if gamma >= 0.5:
        return high - (high - low) * (1 - gamma)
    return low + (high - low) * gamma


# Cells described between two pauses (see compute_window_stats): a column of a full
# reservoir, about a tenth of a millisecond of work.
PAUSE_CELLS = 5_000


def _nan_columns(matrix: np.ndarray) -> np.ndarray:
    """Per column, whether it may hold NaN: one summing pass instead of a strided
    ``isnan(...).any(axis=0)`` and its boolean table (half a millisecond on a full
    reservoir). NaN always survives the sum; a column whose sum overflows to NaN (+inf
    and -inf) is a false alarm, and the NaN path describes it exactly as the dense one."""
    with np.errstate(over="ignore", invalid="ignore"):  # the sums are only tested
        return np.isnan(matrix.sum(axis=0))


def describe_columns(
    matrix: np.ndarray,
    pause: Optional[Callable[[], None]] = None,
    nan_columns: Optional[np.ndarray] = None,
) -> Dict[str, np.ndarray]:
    """The nine statistics of every column of `matrix`, ignoring NaN.

    Columns without NaN take the fast vectorised path; a column with NaN is described
    from its finite values alone (all-NaN columns give NaN, which callers drop). With
    `pause`, columns are described in blocks of about ``PAUSE_CELLS`` cells, or one by
    one when a column is larger (by :func:`describe`, which holds the GIL less than the
    vectorised path), and `pause` is called after each block. `nan_columns`, per column
    whether it holds NaN, spares the pass that finds them when the caller knows.
    """
    if matrix.shape[0] == 0:
        empty = np.full(matrix.shape[1], np.nan)
        return {stat: empty for stat in STATS}
    if nan_columns is None:
        nan_columns = _nan_columns(matrix)
    if not nan_columns.any() and pause is None:
        return _describe_dense(matrix)
    result = {stat: np.full(matrix.shape[1], np.nan) for stat in STATS}
    block = matrix.shape[1] if pause is None else max(1, PAUSE_CELLS // matrix.shape[0])
    pause = pause or _no_pause
    # Short columns without NaN go in vectorised blocks; the others one by one.
    single = nan_columns if block > 1 else np.ones_like(nan_columns)
    blocked = np.flatnonzero(~single)
    for start in range(0, blocked.size, block):
        columns = blocked[start:start + block]
        for stat, values in _describe_dense(matrix[:, columns]).items():
            result[stat][columns] = values
        pause()
    for column in np.flatnonzero(single):
        values = matrix[:, column]
        if nan_columns[column]:
            values = values[~np.isnan(values)]
        if values.size:
            for stat, value in describe(values).items():
                result[stat][column] = value
        pause()
    return result


def _no_pause() -> None:
    return None


def _describe_dense(matrix: np.ndarray) -> Dict[str, np.ndarray]:
    """describe_columns for a matrix without NaN and with at least one row.

    Works on one transposed copy, so that every statistic reads each column as
    contiguous memory: numpy sums it pairwise, and ``np.quantile`` partitions it in
    place (partial selection around the three quantiles, not a full sort) instead of
    copying every column once more.
    """
    columns = matrix.T.copy(order="C")  # always a copy: partitioned in place below
    low = columns.min(axis=1)
    high = columns.max(axis=1)
    mean = columns.mean(axis=1)
    std = columns.std(axis=1)
    q25, median, q75 = np.quantile(columns, [0.25, 0.5, 0.75], axis=1, overwrite_input=True)
    return {
        "mean": mean,
        "std": std,
        "min": low,
        "max": high,
        "range": high - low,
        "q25": q25,
        "median": median,
        "q75": q75,
        "iqr": q75 - q25,
    }


def top_two(proba: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per row, the largest probability (pred1) and its margin over the second (spread12).

    Ties give a spread of 0: the ancestor took "the largest value different from the
    max", which made a row of two equal top classes look confident.
    """
    top = np.partition(proba, proba.shape[1] - 2, axis=1)[:, -2:]
    pred1 = top[:, 1]
    return pred1, pred1 - top[:, 0]


def predicted_classes(proba: np.ndarray, threshold: float) -> np.ndarray:
    """Predicted class per row: argmax; with two classes, class 1 iff p[1] > threshold."""
    if proba.shape[1] == 2:
        return (proba[:, 1] > threshold).astype(np.intp)
    return np.argmax(proba, axis=1)


def label_scores(predicted: np.ndarray, labels: np.ndarray, n_classes: int) -> LabelScores:
    """Accuracy, and per class one-vs-rest accuracy, precision, recall and f1.

    Undefined ratios (no predicted or no true rows of a class) are 0, as in the ancestor
    and scikit-learn's ``zero_division=0``.
    """
    rows = labels.size
    pairs = np.bincount(labels * n_classes + predicted, minlength=n_classes * n_classes)
    confusion = pairs.reshape(n_classes, n_classes)
    true_positive = np.diag(confusion).astype(np.float64)
    predicted_rows = confusion.sum(axis=0)
    true_rows = confusion.sum(axis=1)
    false_positive = predicted_rows - true_positive
    false_negative = true_rows - true_positive
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted_rows > 0, true_positive / predicted_rows, 0.0)
        recall = np.where(true_rows > 0, true_positive / true_rows, 0.0)
        both = precision + recall
        f1 = np.where(both > 0, 2 * precision * recall / both, 0.0)
    class_accuracy = (rows - false_positive - false_negative) / rows
    return LabelScores(
        labeled_rows=int(rows),
        accuracy=float(true_positive.sum() / rows),
        class_accuracy=class_accuracy,
        precision=precision,
        recall=recall,
        f1=f1,
        f1_macro=float(f1.mean()),
    )


def _value_name(value: float) -> str:
    """Label text of a categorical value: integral floats without a trailing .0."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def value_ratios(
    values: np.ndarray, max_categories: int, names: Optional[Sequence[str]] = None
) -> Dict[str, float]:
    """Share of each value among the non-missing ones; beyond the most frequent
    `max_categories`, the rest is folded into ``__other__``.

    With `names`, values are codes into it (a text column's vocabulary).
    """
    values = values[~np.isnan(values)]
    if not values.size:
        return {}
    uniques, counts = np.unique(values, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    kept = order[:max_categories]
    if names is None:
        ratios = {_value_name(uniques[i]): counts[i] / values.size for i in kept}
    else:
        ratios = {names[int(uniques[i])]: counts[i] / values.size for i in kept}
    if order.size > max_categories:
        folded = counts[order[max_categories:]].sum() / values.size
        ratios[OTHER_VALUE] = ratios.get(OTHER_VALUE, 0.0) + folded
    return {name: float(ratio) for name, ratio in ratios.items()}


def _missing_as_nan(table: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """`table` with +/-inf as NaN, and each column's share of missing values.

    +/-inf is a missing value, like NaN: it must not blind a feature's statistics. Only
    the columns whose sum is not finite are searched (a finite sum proves a column finite),
    so the common all-finite table costs one summing pass and is not copied.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # the sums are only tested
        suspect = np.flatnonzero(~np.isfinite(table.sum(axis=0)))
    missing_share = np.zeros(table.shape[1])
    if suspect.size:
        columns = table[:, suspect]
        missing = ~np.isfinite(columns)
        if np.isinf(columns).any():
            table = table.copy()
            table[:, suspect] = np.where(missing, np.nan, columns)
        missing_share[suspect] = missing.mean(axis=0)
    return table, missing_share


def compute_window_stats(
    sample: WindowSample,
    *,
    end_time: float,
    duration: float,
    feature_names: Sequence[str],
    categorical: Sequence[bool],
    max_categories: int,
    pause: Optional[Callable[[], None]] = None,
    value_names: Optional[Mapping[str, Sequence[str]]] = None,
) -> WindowStats:
    """Compute every statistic of one window from its sample.

    Parameters
    ----------
    sample : WindowSample
    end_time : float
        Unix time at which the window ended.
    duration : float
        Seconds the window lasted.
    feature_names : sequence of str
        One name per feature column (empty without features).
    categorical : sequence of bool
        Per feature column, whether it is discrete (value ratios) or continuous.
    max_categories : int
        Values kept per categorical feature before folding into ``__other__``.
    pause : callable, optional
        Called between steps of a fraction of a millisecond. The monitor passes a
        :class:`~.rotation.StatisticsPause`, which sleeps and so lets threads waiting for
        the GIL (the model's) run: a window's statistics never hold it for long.
    value_names : mapping of str to sequence of str, optional
        Per text feature, the names of the codes its column holds.
    """
    pause = pause or _no_pause
    sampled = sample.proba.shape[0]
    class_ratio = sample.class_rows / sample.rows if sample.rows else None
    pred1 = spread12 = None
    if sampled:
        top, margin = top_two(sample.proba)
        pause()
        pred1 = describe(top)
        pause()
        spread12 = describe(margin)
        pause()
    features: Dict[str, Dict[str, float]] = {}
    missing: Dict[str, float] = {}
    values: Dict[str, Dict[str, float]] = {}
    if sample.features is not None and sample.has_features is not None:
        has_features = sample.has_features
        # Views rather than copies in the common case: every row has features and
        # every feature is continuous.
        table = sample.features if has_features.all() else sample.features[has_features]
        if table.shape[0]:
            table, missing_share = _missing_as_nan(table)
            pause()
            continuous = np.flatnonzero(~np.asarray(categorical, dtype=bool))
            # A column holds NaN now exactly where it had missing values.
            stats = describe_columns(
                table if continuous.size == table.shape[1] else table[:, continuous], pause,
                missing_share[continuous] > 0,
            )
            for position, column in enumerate(continuous.tolist()):
                column_stats = {stat: float(stats[stat][position]) for stat in STATS}
                if not np.isnan(column_stats["mean"]):
                    features[feature_names[column]] = column_stats
            for column, is_discrete in enumerate(categorical):
                missing[feature_names[column]] = float(missing_share[column])
                if is_discrete:
                    name = feature_names[column]
                    values[name] = value_ratios(
                        table[:, column], max_categories, (value_names or {}).get(name)
                    )
                    pause()
    scores = None
    labeled = sample.labels >= 0
    if labeled.any():
        pause()
        scores = label_scores(
            sample.predicted[labeled], sample.labels[labeled], sample.proba.shape[1]
        )
    return WindowStats(
        end_time=end_time,
        duration=duration,
        rows=sample.rows,
        sampled_rows=sampled,
        class_rows=sample.class_rows.copy(),
        class_ratio=class_ratio,
        pred1=pred1,
        spread12=spread12,
        features=features,
        missing_ratio=missing,
        value_ratios=values,
        scores=scores,
    )
