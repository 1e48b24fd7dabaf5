"""Bulk processing of one stage: value checks, labels, predictions, counts, sampling.

Everything the request path left out runs here, vectorised over all the batches of a
stage at once, so numpy's per-call cost is paid once per stage rather than once per
batch. A batch whose probabilities are not probabilities is rejected whole; a batch
whose labels cannot be used keeps its predictions and loses its labels, counted.
Called under the monitor's processing lock, in queue order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional

import numpy as np

from .buffer import WindowBuffer
from .counts import LifetimeCounts, RejectionCounts
from .errors import BatchError
from .fleetcounts import add_inputs
from .kernel import summarize
from .schema import InputSchema
from .staging import LABELS_INDICES, Stage
from .validation import PROBA_TOLERANCE, check_proba_values

if TYPE_CHECKING:  # pragma: no cover
    from .latelabels import LateLabels

__all__ = ["process_stage"]

_LOW = -PROBA_TOLERANCE
_HIGH = 1.0 + PROBA_TOLERANCE


def process_stage(
    stage: Stage,
    schema: InputSchema,
    counts: LifetimeCounts,
    refusals: RejectionCounts,
    window: WindowBuffer,
    late: Optional["LateLabels"] = None,
    now: float = 0.0,
) -> None:
    """Count every accepted row of `stage` and offer it to `window`'s sample; with
    `late`, remember the prediction ids of its batches (processed at monotonic `now`)."""
    n_rows = stage.n
    if not n_rows:
        return
    ends, thresholds, batch_features, label_kinds = stage.columns()
    starts = np.concatenate(([0], ends[:-1]))
    sizes = ends - starts
    proba = stage.proba[:n_rows]
    labels: Optional[np.ndarray] = stage.labels[:n_rows]
    _convert_labels(stage, schema, starts, ends, label_kinds, refusals)
    if not label_kinds.any():  # LABELS_NONE is 0
        labels = None
    features = None
    has_features = None
    if stage.features is not None and batch_features.any():
        features = stage.features[:n_rows]
        if not batch_features.all():
            has_features = np.repeat(batch_features, sizes)
    text = _text_columns(stage, starts, ends) if stage.text else None
    # One pass (kernel.py) finds what every row needs; numpy's separate passes remain
    # for the rare stages it cannot serve: rejected batches, thresholds that differ.
    threshold = _uniform_threshold(proba, thresholds)
    summary = summarize(proba, counts.layout.pred1_edges, threshold, second=False)
    accepted = None
    if summary.nan_seen or not (summary.low >= _LOW and summary.high <= _HIGH):
        accepted = _accepted_rows(proba, starts, ends, refusals)
    if accepted is not None:
        if not accepted.any():
            return
        proba = proba[accepted]
        labels = None if labels is None else labels[accepted]
        if features is not None:
            features = features[accepted]
            has_features = None if has_features is None else has_features[accepted]
        if text is not None:
            text = {column: values[accepted] for column, values in text.items()}
    pred2 = None
    if accepted is None and (threshold is not None or proba.shape[1] != 2):
        predicted, pred1, pred2 = summary.predicted, summary.pred1, summary.pred2
        class_rows = counts.add(predicted, pred1, labels, summary.class_rows, summary.buckets)
    else:  # some batches rejected, or thresholds that differ between batches
        predicted, pred1 = _predict(proba, thresholds, sizes, accepted)
        class_rows = counts.add(predicted, pred1, labels)
    add_inputs(counts, proba, pred1, features, has_features, schema, pred2)  # fleet counters
    first = window.rows
    plans = window.add(
        proba, predicted, class_rows, features, labels, has_features, text, schema.encode
    )
    if stage.ids and late is not None:
        late.record_stage(
            stage, starts, ends, accepted, predicted, labels, plans, first, refusals, now
        )


def _uniform_threshold(proba: np.ndarray, thresholds: np.ndarray) -> Optional[float]:
    """The threshold of every batch of a two-class stage, if they share one."""
    if proba.shape[1] != 2 or (thresholds != thresholds[0]).any():
        return None
    return float(thresholds[0])


def _accepted_rows(
    proba: np.ndarray, starts: np.ndarray, ends: np.ndarray, refusals: RejectionCounts
) -> Optional[np.ndarray]:
    """The mask of the rows of the batches that hold probabilities (None when all do);
    the others are counted as rejected."""
    good_rows = (proba.min(axis=1) >= _LOW) & (proba.max(axis=1) <= _HIGH)
    good_batches = np.logical_and.reduceat(good_rows, starts)
    for batch in np.flatnonzero(~good_batches).tolist():
        start, end = int(starts[batch]), int(ends[batch])
        try:
            check_proba_values(proba[start:end], end - start)
        except BatchError as error:
            refusals.reject(error.reason, error.rows, str(error))
    return np.repeat(good_batches, ends - starts)


def _convert_labels(
    stage: Stage,
    schema: InputSchema,
    starts: np.ndarray,
    ends: np.ndarray,
    kinds: np.ndarray,
    refusals: RejectionCounts,
) -> None:
    """Turn every batch's labels into class indices in the stage's label block; the
    labels of a batch that has a bad one are dropped (-1) and counted."""
    classes = schema.classes
    assert classes is not None
    labels = stage.labels
    indexed = kinds == LABELS_INDICES
    block = labels[: stage.n]
    # Two reductions settle the common stage (every batch with class indices, all in
    # range) without the per-batch search below.
    in_range = bool(indexed.all()) and block.min() >= 0 and block.max() < classes.n_classes
    if indexed.any() and not in_range:
        bad_rows = (block < 0) | (block >= classes.n_classes)
        bad = np.logical_or.reduceat(bad_rows, starts) & indexed
        for batch in np.flatnonzero(bad).tolist():
            start, end = int(starts[batch]), int(ends[batch])
            values = block[start:end]
            refusals.drop(
                "labels", "unknown_label", end - start,
                f"labels has values in [{values.min()}, {values.max()}], must be class "
                f"indices in [0, {classes.n_classes - 1}]",
            )
            values[:] = -1
    for batch, raw in stage.raw_labels.items():
        start, end = int(starts[batch]), int(ends[batch])
        try:
            labels[start:end] = classes.indices(raw, end - start)
        except BatchError as error:
            refusals.drop("labels", error.reason, end - start, str(error))
            labels[start:end] = -1


def _text_columns(stage: Stage, starts: np.ndarray, ends: np.ndarray) -> Dict[int, np.ndarray]:
    """Per text column, the values of every row of the stage (None where a batch had
    none)."""
    columns: Dict[int, np.ndarray] = {}
    for batch, text in stage.text.items():
        start, end = int(starts[batch]), int(ends[batch])
        for column, values in text.items():
            if column not in columns:
                columns[column] = np.full(stage.n, None, dtype=object)
            columns[column][start:end] = values
    return columns


def _predict(
    proba: np.ndarray,
    thresholds: np.ndarray,
    sizes: np.ndarray,
    accepted: Optional[np.ndarray],
) -> "tuple[np.ndarray, np.ndarray]":
    """Predicted class and top probability per row: argmax; with two classes, class 1
    iff p[1] > the batch's threshold."""
    n_rows, n_classes = proba.shape
    if n_classes == 2:
        threshold: object = thresholds[0]
        if (thresholds != thresholds[0]).any():
            per_row = np.repeat(thresholds, sizes)
            threshold = per_row if accepted is None else per_row[accepted]
        predicted = (proba[:, 1] > threshold).astype(np.intp)
        return predicted, np.maximum(proba[:, 0], proba[:, 1])
    predicted = proba.argmax(axis=1)
    # The top probability of each row: a flat take beats proba.max(axis=1) by 8x.
    flat = np.ascontiguousarray(proba).reshape(-1)
    index = np.arange(0, n_rows * n_classes, n_classes)
    index += predicted
    return predicted, flat.take(index)
