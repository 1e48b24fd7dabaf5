"""Large batches waiting to be classified and counted off the request path.

Classifying every row of a batch (an argmax per row) costs 20-30 ns a row, several times
the cost of copying it. For a large batch the monitor only samples it on the caller's
thread and copies its probabilities and labels here; the worker (or the next scrape)
counts them later. Two preallocated arenas alternate: observers write into one while
the other is being counted, so nothing is allocated, and no page is faulted in, on the
request path once both have been used.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

import numpy as np

from .buffer import WindowBuffer

__all__ = ["DeferredBatch", "CountQueue"]

# At most this many bytes per arena (two are kept): ~47,000 rows of 10 classes.
ARENA_BYTES = 4 << 20


class DeferredBatch(NamedTuple):
    """One queued batch: its rows in the arena, and the window it belongs to."""

    start: int
    rows: int
    threshold: float
    has_labels: bool
    buffer: WindowBuffer
    generation: int


class CountQueue:
    """A bounded queue of batches to count, in two alternating preallocated arenas.

    Not thread-safe by itself: :meth:`push` and :meth:`take` run under the monitor's
    lock, and one :meth:`take` at a time (the monitor's drain lock) reads an arena.

    Parameters
    ----------
    n_classes : int
        Probability columns.
    rows : int
        Rows per arena, at most; batches larger than one arena are never queued.
    arena_bytes : int, default=ARENA_BYTES
        Bytes per arena, at most.
    """

    def __init__(self, n_classes: int, rows: int, arena_bytes: int = ARENA_BYTES) -> None:
        self.n_classes = n_classes
        self.capacity = max(1, min(rows, arena_bytes // (8 * (n_classes + 1))))
        self._arenas: List[Optional[Tuple[np.ndarray, np.ndarray]]] = [None, None]
        self._current = 0
        self._batches: List[DeferredBatch] = []
        self.rows = 0

    def has_room(self, rows: int) -> bool:
        """Whether a batch of `rows` fits in the current arena now."""
        return self.rows + rows <= self.capacity

    def push(
        self,
        proba: np.ndarray,
        labels: Optional[np.ndarray],
        threshold: float,
        buffer: WindowBuffer,
    ) -> None:
        """Copy a batch into the current arena (the caller checked :meth:`has_room`)."""
        arena = self._arenas[self._current]
        if arena is None:
            arena = self._arenas[self._current] = (
                np.empty((self.capacity, self.n_classes), dtype=np.float64),
                np.empty(self.capacity, dtype=np.int64),
            )
        start, rows = self.rows, proba.shape[0]
        arena[0][start:start + rows] = proba
        if labels is not None:
            arena[1][start:start + rows] = labels
        self._batches.append(
            DeferredBatch(start, rows, threshold, labels is not None, buffer, buffer.generation)
        )
        self.rows = start + rows

    def take(self) -> Tuple[Optional[Tuple[np.ndarray, np.ndarray]], List[DeferredBatch]]:
        """Hand over the current arena and its batches; later pushes use the other one."""
        arena, batches = self._arenas[self._current], self._batches
        self._current = 1 - self._current
        self._batches = []
        self.rows = 0
        return arena, batches
