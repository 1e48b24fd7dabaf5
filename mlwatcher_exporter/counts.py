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

__all__ = ["LifetimeCounts", "RejectionCounts", "PRED1_EDGES"]

PRED1_EDGES = np.asarray(naming.PRED1_BUCKETS)


class LifetimeCounts:
    """Per-class prediction, label and hit counts and the pred1 histogram.

    Parameters
    ----------
    n_classes : int
        Probability columns.
    """

    def __init__(self, n_classes: int) -> None:
        self.predictions = np.zeros(n_classes, dtype=np.int64)
        self.labeled = np.zeros(n_classes, dtype=np.int64)
        self.correct = np.zeros(n_classes, dtype=np.int64)
        # Per bucket (non-cumulative); the last bucket is everything above the top edge.
        self.pred1_buckets = np.zeros(len(PRED1_EDGES) + 1, dtype=np.int64)
        self.pred1_sum = 0.0
        self.last_prediction: Optional[float] = None

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
        if pred1_buckets is None:
            pred1_buckets = np.bincount(
                np.searchsorted(PRED1_EDGES, pred1, side="left"), minlength=PRED1_EDGES.size + 1
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
        labeled = labels >= 0
        if not labeled.all():
            predicted, labels = predicted[labeled], labels[labeled]
        n_classes = self.predictions.size
        self.labeled += np.bincount(labels, minlength=n_classes)
        self.correct += np.bincount(labels[labels == predicted], minlength=n_classes)

    def copy(self) -> "LifetimeCounts":
        """A snapshot that later observations do not change."""
        other = LifetimeCounts.__new__(LifetimeCounts)
        other.predictions = self.predictions.copy()
        other.labeled = self.labeled.copy()
        other.correct = self.correct.copy()
        other.pred1_buckets = self.pred1_buckets.copy()
        other.pred1_sum = self.pred1_sum
        other.last_prediction = self.last_prediction
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
