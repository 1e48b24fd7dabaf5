"""The preallocated sample of one window: probability, prediction, feature and label rows.

A :class:`WindowBuffer` is filled by :meth:`add` under the monitor's lock and read by
the statistics after the window closed. Its arrays are allocated once, at the first
batch, and reused window after window, so memory stays bounded by ``capacity``.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

from .reservoir import Reservoir
from .window import WindowSample, predicted_classes

__all__ = ["WindowBuffer", "RowStage"]


class WindowBuffer:
    """Fixed-capacity rows of one window plus its exact counts.

    Parameters
    ----------
    capacity : int
        Rows kept at most (``reservoir_size``).
    n_classes : int
        Probability columns.
    random_state : None, int or numpy.random.Generator
        Randomness of the reservoir.
    """

    def __init__(
        self,
        capacity: int,
        n_classes: int,
        random_state: Union[None, int, np.random.Generator] = None,
    ) -> None:
        self.reservoir = Reservoir(capacity, random_state)
        self.proba = np.empty((capacity, n_classes), dtype=np.float64)
        self.predicted = np.empty(capacity, dtype=np.intp)
        self.labels = np.empty(capacity, dtype=np.int64)
        self.features: Optional[np.ndarray] = None
        self.has_features: Optional[np.ndarray] = None
        self.class_rows = np.zeros(n_classes, dtype=np.int64)
        self.start = 0.0
        # Incremented at each reset: counts deferred for an older window must not land here.
        self.generation = 0

    @property
    def rows(self) -> int:
        """Every row offered to this window, sampled or not."""
        return self.reservoir.seen

    def reset(self, start: float) -> None:
        """Empty the buffer for a window starting at monotonic time `start`."""
        self.reservoir.reset()
        self.class_rows[:] = 0
        self.start = start
        self.generation += 1

    def add(
        self,
        proba: np.ndarray,
        predicted: Optional[np.ndarray],
        class_rows: Optional[np.ndarray],
        features: Optional[np.ndarray],
        labels: Optional[np.ndarray],
        has_features: Optional[np.ndarray] = None,
        threshold: float = 0.5,
    ) -> None:
        """Offer one validated batch; the rows kept are copied, the counts added.

        `labels` may hold -1 for rows without a label; `has_features`, when given,
        marks which rows of `features` are real (staged single rows mix both). Without
        `predicted`, the predicted class is computed (with `threshold`) for the kept rows
        only; without `class_rows`, the caller adds the window's counts later.
        """
        if features is not None and self.features is None:
            capacity = self.reservoir.capacity
            self.features = np.empty((capacity, features.shape[1]), dtype=np.float64)
            self.has_features = np.zeros(capacity, dtype=bool)
        if class_rows is not None:
            self.class_rows += class_rows
        for slots, rows in self.reservoir.offer(proba.shape[0]):
            kept = proba[rows]
            self.proba[slots] = kept
            self.predicted[slots] = (
                predicted_classes(kept, threshold) if predicted is None else predicted[rows]
            )
            self.labels[slots] = -1 if labels is None else labels[rows]
            if self.has_features is not None:
                if features is None:
                    self.has_features[slots] = False
                else:
                    assert self.features is not None  # allocated with has_features
                    self.has_features[slots] = True if has_features is None else has_features[rows]
                    self.features[slots] = features[rows]

    def sample(self) -> WindowSample:
        """Views of the sampled rows; valid until the buffer is reset."""
        size = self.reservoir.size
        return WindowSample(
            proba=self.proba[:size],
            predicted=self.predicted[:size],
            features=None if self.features is None else self.features[:size],
            has_features=None if self.has_features is None else self.has_features[:size],
            labels=self.labels[:size],
            rows=self.rows,
            class_rows=self.class_rows,
        )


class RowStage:
    """Single rows waiting to be recorded as one vectorised batch.

    The monitor's fast path copies a validated single row here (a few hundred
    nanoseconds) instead of running a dozen numpy calls on it; the rows are counted and
    offered to the window's reservoir together when the stage is full, before a larger
    batch, when the window closes and before a scrape. Bounded by `capacity` rows.
    """

    def __init__(self, capacity: int, n_classes: int) -> None:
        self.capacity = capacity
        self.n = 0
        self.threshold = 0.5
        self.proba = np.empty((capacity, n_classes), dtype=np.float64)
        self.labels = np.empty(capacity, dtype=np.int64)
        # True by default: the fast path writes only the rows that come without features.
        self.has_features = np.ones(capacity, dtype=bool)
        self.features: Optional[np.ndarray] = None

    def ensure_features(self, n_features: int) -> np.ndarray:
        """The feature rows, allocated at the first staged row that has features."""
        if self.features is None:
            self.features = np.empty((self.capacity, n_features), dtype=np.float64)
        return self.features
