"""A fixed-capacity uniform sample of a stream of rows (Algorithm R, vectorised).

Algorithm R keeps row ``t`` (0-based) with probability ``k / (t + 1)`` in a uniformly
chosen slot. Drawing one random number per row would cost a few nanoseconds per row on
every batch; instead, candidates are drawn with geometric skip counts at the batch's
highest keep rate and thinned to each row's exact rate. The result has the distribution
of Algorithm R while drawing random numbers only for the rows likely to be kept.
"""

from __future__ import annotations

from typing import List, Tuple, Union

import numpy as np

__all__ = ["Reservoir", "check_random_state"]

Index = Union[slice, np.ndarray]


def check_random_state(seed: Union[None, int, np.random.Generator]) -> np.random.Generator:
    """Turn `seed` into a numpy Generator (None: fresh entropy; int: seeded)."""
    if seed is None or isinstance(seed, (int, np.integer)):
        return np.random.default_rng(seed)
    if isinstance(seed, np.random.Generator):
        return seed
    raise TypeError(
        f"random_state == {seed!r}, must be None, an int or a numpy.random.Generator"
    )


class Reservoir:
    """Plans where each offered row goes in a sample of at most `capacity` rows.

    The reservoir holds no data itself: :meth:`offer` returns index pairs, and the
    caller copies the rows of every array of the batch with them, so that the
    probability, feature and label rows of one input always stay together.

    Parameters
    ----------
    capacity : int
        Rows kept at most.
    random_state : None, int or numpy.random.Generator, default=None
        Source of randomness; pass an int for reproducible samples.

    Examples
    --------
    >>> import numpy as np
    >>> reservoir = Reservoir(3, random_state=0)
    >>> sample = np.zeros(3)
    >>> for slots, rows in reservoir.offer(5):
    ...     sample[slots] = np.arange(5.0)[rows]
    >>> reservoir.seen, reservoir.size
    (5, 3)
    """

    def __init__(self, capacity: int, random_state: Union[None, int, np.random.Generator] = None):
        if not isinstance(capacity, (int, np.integer)) or isinstance(capacity, bool):
            raise TypeError(f"capacity == {capacity!r}, must be an int")
        if capacity < 1:
            raise ValueError(f"capacity == {capacity}, must be >= 1")
        self.capacity = int(capacity)
        self._rng = check_random_state(random_state)
        self.seen = 0

    @property
    def size(self) -> int:
        """Rows currently in the sample."""
        return min(self.seen, self.capacity)

    def reset(self) -> None:
        """Forget every row: the next offer starts a new sample."""
        self.seen = 0

    def offer(self, n_rows: int) -> List[Tuple[Index, Index]]:
        """Offer the next `n_rows` rows; return ``(slots, rows)`` pairs to copy.

        For each pair, ``sample[slots] = batch[rows]`` must be applied in order. Slots
        within one pair are distinct, so fancy assignment is well defined.
        """
        plans: List[Tuple[Index, Index]] = []
        start = self.seen
        fill = min(n_rows, max(0, self.capacity - start))
        if fill:
            plans.append((slice(start, start + fill), slice(0, fill)))
        if fill < n_rows:
            positions = self._kept_positions(start + fill, start + n_rows)
            if positions.size:
                slots = self._rng.integers(0, self.capacity, size=positions.size)
                slots, positions = self._last_writes(slots, positions)
                plans.append((slots, positions - start))
        self.seen = start + n_rows
        return plans

    def _last_writes(
        self, slots: np.ndarray, positions: np.ndarray
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Keep, per slot, only the last row written to it (Algorithm R lets a later row
        overwrite an earlier one in the same slot)."""
        size = slots.size
        if size < 2:
            return slots, positions
        if size * size < 2 * self.capacity:
            # Few draws: duplicates are unlikely, and a sort is cheaper than np.unique.
            ordered = np.sort(slots)
            if not (ordered[1:] == ordered[:-1]).any():
                return slots, positions
        _, last = np.unique(slots[::-1], return_index=True)
        keep = size - 1 - last
        return slots[keep], positions[keep]

    def _kept_positions(self, first: int, end: int) -> np.ndarray:
        """Stream positions in [first, end) that Algorithm R keeps (first >= capacity)."""
        rate = self.capacity / (first + 1)  # the highest keep rate in the range
        span = end - first
        expected = span * rate
        draws = int(expected + 4.0 * np.sqrt(expected) + 16)
        candidates = first - 1 + np.cumsum(self._rng.geometric(rate, size=draws))
        while candidates[-1] < end - 1:  # rare: more candidates than planned
            extra = candidates[-1] + np.cumsum(self._rng.geometric(rate, size=draws))
            candidates = np.concatenate([candidates, extra])
        candidates = candidates[candidates < end]
        # Thin each candidate to its own rate k / (t + 1).
        accept = self._rng.random(candidates.size) * (candidates + 1) < first + 1
        return candidates[accept]
