"""The preallocated sample of one window: probability, prediction, feature and label rows.

A :class:`WindowBuffer` is filled by :meth:`add` by the bulk processing and read by
the statistics after the window closed. Its arrays are allocated once, at the first
batch, and reused window after window, so memory stays bounded by ``capacity``.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from .reservoir import Index, Reservoir
from .window import WindowSample

__all__ = ["WindowBuffer", "TextEncoder"]

# Codes of a text column's values: (column position, values) -> float codes.
TextEncoder = Callable[[int, np.ndarray], np.ndarray]


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
        # Per slot, the position among the window's rows of the row it holds: a label
        # joined later by id finds its row's slot still holding it (latelabels.py).
        self.positions = np.empty(capacity, dtype=np.int64)
        self.features: Optional[np.ndarray] = None
        self.has_features: Optional[np.ndarray] = None
        self.class_rows = np.zeros(n_classes, dtype=np.int64)
        self.start = 0.0

    @property
    def rows(self) -> int:
        """Every row offered to this window, sampled or not."""
        return self.reservoir.seen

    @property
    def nbytes(self) -> int:
        """Bytes of its arrays."""
        arrays = [self.proba, self.predicted, self.labels, self.positions, self.features,
                  self.has_features]
        return sum(a.nbytes for a in arrays if a is not None)

    def reset(self, start: float) -> None:
        """Empty the buffer for a window starting at monotonic time `start`."""
        self.reservoir.reset()
        self.class_rows[:] = 0
        self.start = start

    def add(
        self,
        proba: np.ndarray,
        predicted: np.ndarray,
        class_rows: np.ndarray,
        features: Optional[np.ndarray],
        labels: Optional[np.ndarray],
        has_features: Optional[np.ndarray] = None,
        text: Optional[Dict[int, np.ndarray]] = None,
        encode: Optional[TextEncoder] = None,
    ) -> List[Tuple[Index, Index]]:
        """Offer accepted rows; the rows kept are copied, the counts added.

        `labels` may hold -1 for rows without a label; `has_features`, when given,
        marks which rows of `features` are real. `text` holds, per text column, the
        rows' values, which `encode` turns into codes for the kept rows only. Returns
        the reservoir's ``(slots, rows)`` plans: where the kept rows went.
        """
        if features is not None and self.features is None:
            capacity = self.reservoir.capacity
            self.features = np.empty((capacity, features.shape[1]), dtype=np.float64)
            self.has_features = np.zeros(capacity, dtype=bool)
        self.class_rows += class_rows
        first = self.reservoir.seen
        plans = self.reservoir.offer(proba.shape[0])
        for slots, rows in plans:
            if isinstance(rows, slice):
                self.positions[slots] = np.arange(first + rows.start, first + rows.stop)
            else:
                self.positions[slots] = rows + first
            self.proba[slots] = proba[rows]
            self.predicted[slots] = predicted[rows]
            self.labels[slots] = -1 if labels is None else labels[rows]
            if self.has_features is None:
                continue
            if features is None:
                self.has_features[slots] = False
                continue
            assert self.features is not None  # allocated with has_features
            self.has_features[slots] = True if has_features is None else has_features[rows]
            self.features[slots] = features[rows]
            if text and encode is not None:
                for column, values in text.items():
                    self.features[slots, column] = encode(column, values[rows])
        return plans

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
