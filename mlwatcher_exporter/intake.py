"""The request path: what one call of ``predict_proba`` costs the model.

:class:`Intake` checks types and shapes (O(1) for numpy arrays of the learned shape),
learns the schema from the first batch, and copies the batch into staging. Values are
checked later, in bulk (:mod:`.processing`), except for :meth:`ModelMonitor.observe`
(``strict``), which validates everything before it returns and raises.

A quiet call (the decorator's) keeps a batch's predictions whenever its probabilities
are usable: features or labels that cannot be used are dropped and counted, the rest of
the batch is recorded.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from .counts import RejectionCounts
from .errors import BatchError, BatchValueError, describe_value
from .idstore import copy_ids, to_keys
from .schema import InputSchema
from .staging import LABELS_CHECKED, LABELS_INDICES, LABELS_NONE, LABELS_RAW, Stage, Staging
from .tables import NUMERIC_KINDS, to_array, to_features
from .validation import check_proba_values, to_proba_table

__all__ = ["Intake"]

Features = Tuple[Optional[np.ndarray], Optional[Dict[int, np.ndarray]]]
Labels = Tuple[int, Any]


class Intake:
    """Stages the batches of one monitor.

    Parameters
    ----------
    schema : InputSchema
    staging : Staging
    refusals : RejectionCounts
    drain : callable
        Processes everything queued in staging (when no stage is free, or after a batch
        too large for a stage).
    on_schema : callable
        Called after the classes or the features were learned, to size what depends on
        them.
    """

    def __init__(
        self,
        schema: InputSchema,
        staging: Staging,
        refusals: RejectionCounts,
        drain: Callable[[], None],
        on_schema: Callable[[], None],
    ) -> None:
        self.schema = schema
        self.staging = staging
        self.refusals = refusals
        self._drain = drain
        self._on_schema = on_schema

    def offer(
        self, proba: Any, features: Any, labels: Any, threshold: float, strict: bool,
        ids: Any = None,
    ) -> bool:
        """Stage one batch; return whether its predictions were kept. `ids` (prediction
        ids, one per row) are staged as a copy; checked now when `strict`, else in bulk.

        Raises
        ------
        BatchError
            When the probabilities cannot be used (counted as rejected first); when
            `strict`, also for unusable features or labels.
        """
        if not strict and ids is None and self.offer_common(proba, features, labels, threshold):
            return True
        if strict and (self.schema.n_classes is None or
                       (features is not None and self.schema.n_features is None)):
            self._check_before_learning(proba, features, labels, ids)
        try:
            array = self._proba(proba, strict)
        except BatchError as error:
            self.refusals.reject(error.reason, error.rows, str(error))
            raise
        if array is None:
            return True  # an empty batch: nothing to count, nothing learned
        n_rows = array.shape[0]
        table: Features = (None, None)
        label_kind, label_values = LABELS_NONE, None
        try:
            if features is not None:
                table = self._features(features, n_rows)
        except BatchError as error:
            if strict:
                # "sparse" only names dropped features; a rejected batch counts as "type".
                reason = "type" if error.reason == "sparse" else error.reason
                self.refusals.reject(reason, error.rows, str(error))
                raise
            self.refusals.drop("features", error.reason, n_rows, str(error))
        try:
            if labels is not None:
                label_kind, label_values = self._labels(labels, n_rows, strict)
        except BatchError as error:
            if strict:
                self.refusals.reject(error.reason, error.rows, str(error))
                raise
            self.refusals.drop("labels", error.reason, n_rows, str(error))
        if ids is not None:
            if strict:
                try:
                    ids = to_keys(ids, n_rows)  # a new list: nothing of the caller's
                except BatchError as error:
                    self.refusals.reject(error.reason, error.rows, str(error))
                    raise
            else:
                ids = copy_ids(ids)
        numeric, text = table
        if n_rows > self.staging.stage_rows:
            # Too large for a stage: processed now, from the caller's own arrays.
            self.staging.put_borrowed(
                Stage.borrow(
                    array.astype(np.float64, copy=False), numeric, label_values,
                    label_kind, threshold, text, ids,
                )
            )
            self._drain()
            return True
        while not self.staging.put(
            array, numeric, label_values, label_kind, threshold, text, ids=ids
        ):
            self._drain()  # every stage is full: the worker is behind, so work here
        return True

    def _check_before_learning(self, proba: Any, features: Any, labels: Any, ids: Any) -> None:
        """Check a strict batch against a scratch copy of the schema while there is still
        something to learn: the checks below learn the classes, then the features, before
        the labels and ids are checked, and a refused batch must teach nothing."""
        schema = self.schema
        known = schema.classes
        scratch = Intake(
            InputSchema(None if known is None else list(known.classes), schema.feature_names,
                        schema.categorical_features),
            self.staging, self.refusals, self._drain, lambda: None,
        )
        try:
            array = scratch._proba(proba, True)
            if array is None:
                return
            n_rows = array.shape[0]
            if features is not None:
                scratch._features(features, n_rows)
            if labels is not None:
                scratch._labels(labels, n_rows, True)
            if ids is not None:
                to_keys(ids, n_rows)
        except BatchError as error:
            reason = "type" if error.reason == "sparse" else error.reason
            self.refusals.reject(reason, error.rows, str(error))
            raise

    def offer_common(self, proba: Any, features: Any, labels: Any, threshold: float) -> bool:
        """Stage a batch of the common form at the least cost: float ndarray
        probabilities, features and labels that need no conversion (ndarrays of the
        learned shapes, integer class indices), a stage with room.

        Returns False, having done nothing, for any other batch, or when the schema is
        not learned yet or no stage is free: the caller then goes through
        :meth:`offer`, which handles every case. Never raises.
        """
        if type(proba) is not np.ndarray or proba.ndim != 2:
            return False
        schema = self.schema
        n_rows, width = proba.shape
        if (
            width != schema.n_classes
            or not 0 < n_rows <= self.staging.stage_rows
            or proba.dtype.kind != "f"
        ):
            return False
        if features is not None and not (
            type(features) is np.ndarray
            and features.shape == (n_rows, schema.plain_width)
            and features.dtype.kind in NUMERIC_KINDS
        ):
            return False
        if labels is None:
            return self.staging.put(proba, features, None, LABELS_NONE, threshold)
        if (
            type(labels) is np.ndarray
            and labels.shape == (n_rows,)
            and labels.dtype.kind in "iu"
            and schema.index_labels
        ):
            return self.staging.put(proba, features, labels, LABELS_INDICES, threshold)
        return False

    def _proba(self, proba: Any, strict: bool) -> Optional[np.ndarray]:
        array = to_proba_table(proba)
        n_rows, width = array.shape
        schema = self.schema
        if schema.n_classes is None:
            if not n_rows:
                return None
            schema.learn_classes(width, n_rows)
            self._on_schema()
        # Also after learning: another thread's first batch may have taught its width.
        if width != schema.n_classes:
            raise BatchValueError(
                f"proba has {width} columns, must have n_classes == {schema.n_classes}",
                "n_classes",
                n_rows,
            )
        if not n_rows:
            return None
        if strict:
            check_proba_values(array, n_rows)
        return array

    def _features(self, features: Any, n_rows: int) -> Features:
        schema = self.schema
        if (
            type(features) is np.ndarray
            and features.shape == (n_rows, schema.plain_width)
            and features.dtype.kind in NUMERIC_KINDS
        ):
            return features, None  # as offer_common takes them
        known = schema.n_features is not None
        table = to_features(features, n_rows, schema.text_columns if known else None)
        schema.learn_features(table, n_rows)
        if not known:
            self._on_schema()
        return table.numeric, table.text or None

    def _labels(self, labels: Any, n_rows: int, strict: bool) -> Labels:
        classes = self.schema.classes
        assert classes is not None
        if strict:
            return LABELS_CHECKED, classes.indices(labels, n_rows)
        if (
            type(labels) is np.ndarray
            and labels.ndim == 1
            and labels.dtype.kind in "iu"
            and (classes.is_range or classes.classes.dtype.kind not in "iufb")
        ):
            if labels.shape[0] != n_rows:
                raise BatchValueError(
                    f"labels has {labels.shape[0]} rows, must have as many as proba "
                    f"({n_rows})",
                    "row_mismatch",
                    n_rows,
                )
            return LABELS_INDICES, labels
        raw = to_array(labels, "labels", n_rows)
        if raw.ndim == 0 or raw.shape[0] != n_rows:
            raise BatchValueError(
                f"labels == {describe_value(labels)}, must have one label per row of "
                f"proba ({n_rows})",
                "row_mismatch" if raw.ndim else "shape",
                n_rows,
            )
        # A copy: the caller may reuse its list or array after the call returns.
        return LABELS_RAW, np.array(raw, copy=True)
