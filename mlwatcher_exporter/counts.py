"""Lifetime counters of one monitor: every row since start, never sampled.

The bulk processing of staged batches (:mod:`.processing`) adds predictions and labels
under the monitor's processing lock; a scrape reads a :meth:`copy` under it too. The
refusal counts have a lock of their own, because the request path refuses a batch
without waiting for the processing.
"""

from __future__ import annotations

import threading
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from . import naming
from .fleetcounts import FeatureColumns, FleetLayout
from .kernel import add_label_counts

__all__ = ["LifetimeCounts", "RejectionCounts", "PRED1_EDGES"]

#: The default pred1 edges (a layout may have others).
PRED1_EDGES = np.asarray(naming.FLEET_PRED1_BUCKETS)


class LifetimeCounts:
    """Per-class prediction, label and hit counts and the pred1 histogram.

    Parameters
    ----------
    n_classes : int
        Probability columns.
    layout : FleetLayout, optional
        Histogram edges, confusion matrix and feature histograms (:mod:`.fleetcounts`).

    Every count is a numpy array or a float; `layout` and `feature_columns` are
    immutable descriptions, shared by copies.
    """

    def __init__(self, n_classes: int, layout: Optional[FleetLayout] = None) -> None:
        self.layout = layout = FleetLayout() if layout is None else layout
        self.predictions = np.zeros(n_classes, dtype=np.int64)
        self.labeled = np.zeros(n_classes, dtype=np.int64)
        self.correct = np.zeros(n_classes, dtype=np.int64)
        # Per bucket (non-cumulative); the last bucket is everything above the top edge.
        self.pred1_buckets = np.zeros(layout.pred1_edges.size + 1, dtype=np.int64)
        self.pred1_sum = 0.0
        self.last_prediction: Optional[float] = None
        # ---- fleet counters (fleetcounts.py) ----
        self.labeled_by_predicted = np.zeros(n_classes, dtype=np.int64)
        cells = n_classes * n_classes if layout.confusion_kept(n_classes) else 0
        self.confusion = np.zeros(cells, dtype=np.int64)  # true-major, flat
        self.spread12_buckets = np.zeros(layout.spread12_edges.size + 1, dtype=np.int64)
        self.spread12_sum = 0.0
        # Per continuous feature, sized when the features are known.
        self.feature_columns: Optional[FeatureColumns] = None
        self.feature_values = np.zeros(0, dtype=np.int64)
        self.feature_missing = np.zeros(0, dtype=np.int64)
        self.feature_positive_sum = np.zeros(0)
        self.feature_negative_sum = np.zeros(0)
        self.feature_squares = np.zeros(0)
        self.feature_buckets = np.zeros(0, dtype=np.int64)  # every histogram, flat

    def add(
        self,
        predicted: np.ndarray,
        pred1: np.ndarray,
        labels: Optional[np.ndarray],
        class_rows: Optional[np.ndarray] = None,
        pred1_buckets: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        """Count a batch of accepted rows; return its rows per predicted class.

        `labels` holds a class index per row, -1 where the row has none. `class_rows`
        and `pred1_buckets`, when the caller has them already (:mod:`.kernel`), are the
        rows per predicted class and per pred1 bucket.
        """
        if class_rows is None:
            class_rows = np.bincount(predicted, minlength=self.predictions.size)
        edges = self.layout.pred1_edges
        # The caller's buckets are of the default edges; a layout may have others.
        if pred1_buckets is None or pred1_buckets.size != edges.size + 1:
            pred1_buckets = np.bincount(
                np.searchsorted(edges, pred1, side="left"), minlength=edges.size + 1
            )
        self.predictions += class_rows
        self.pred1_buckets += pred1_buckets
        self.pred1_sum += float(pred1.sum())
        if labels is not None:
            self.add_labels(predicted, labels)
        return class_rows

    def add_labels(self, predicted: np.ndarray, labels: np.ndarray) -> None:
        """Count labels of predictions: those observed with their batch, and those
        joined later by id (:mod:`.latelabels`). -1 is no label."""
        add_label_counts(  # one pass (kernel.py)
            predicted, labels, self.labeled, self.correct, self.labeled_by_predicted,
            self.confusion if self.confusion.size else None,
        )

    def copy(self) -> "LifetimeCounts":
        """A snapshot that later observations do not change: every array copied, every
        other attribute (floats, immutable descriptions) shared."""
        other = LifetimeCounts.__new__(LifetimeCounts)
        for name, value in vars(self).items():
            setattr(other, name, value.copy() if isinstance(value, np.ndarray) else value)
        return other


class RejectionCounts:
    """Rows refused, by reason: whole batches rejected, or one part of a batch dropped.

    Parameters
    ----------
    log : callable(key, message)
        Rate-limited warning; called once per refusal with a key per reason.
    """

    def __init__(self, log: Callable[[str, str], object]) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._rejected: Dict[str, int] = {reason: 0 for reason in naming.REJECT_REASONS}
        self._dropped: Dict[Tuple[str, str], int] = {
            (part, reason): 0
            for part, reasons in naming.DROP_REASONS.items()
            for reason in reasons
        }

    def reject(self, reason: str, rows: int, message: str) -> None:
        """Count a whole batch (predictions included) that was not recorded."""
        with self._lock:
            self._rejected[reason] += max(rows, 1)
        self._log(f"reject:{reason}", f"rejected a batch: {message}")

    def drop(self, part: str, reason: str, rows: int, message: str) -> None:
        """Count the `part` ("features" or "labels") of a batch that was left out while
        its predictions were recorded."""
        with self._lock:
            self._dropped[(part, reason)] += rows
        self._log(f"drop:{part}:{reason}", f"left out the {part} of a batch: {message}")

    def rejected(self) -> Dict[str, int]:
        """Rejected rows by reason."""
        with self._lock:
            return dict(self._rejected)

    def dropped(self) -> Dict[Tuple[str, str], int]:
        """Rows whose features or labels were left out, by (part, reason)."""
        with self._lock:
            return dict(self._dropped)
