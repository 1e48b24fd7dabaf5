"""The bounded memory of prediction ids that wait for their labels.

A prediction observed with an id (``observe(..., ids=...)``) is remembered here by the
bulk processing: its predicted class, the window it belongs to, where it sits in that
window's sample, when it was made and whether it already has a label. A label that
arrives later (:meth:`ModelMonitor.observe_labels`) finds it by its id.

Memory is bounded whatever arrives: at most ``max_ids`` ids, each for at most
``ttl`` seconds; beyond the count the oldest are evicted first. Entries live in ring
arrays (numpy, one column per field, allocated as the store grows, never beyond
``max_ids``) indexed by a sequence number; a dict maps each id to its sequence number.
An id predicted again replaces its earlier prediction.

Ids are ``str`` or ``int`` (Python or numpy integers, taken as Python ints); a string
id and an integer id are different ids (``"7" != 7``). Floats, bools, ``None`` and
bytes are refused, so that ``1.0`` and ``1`` never silently name one prediction.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Set
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

import numpy as np

from .errors import BatchTypeError, BatchValueError, describe_value

__all__ = ["IdStore", "IdEntry", "Key", "copy_ids", "to_keys"]

Key = Union[str, int]

_KEY_TYPES = {str, int}

# Smallest ring allocated; it doubles until max_ids.
_MIN_CAPACITY = 1024


def copy_ids(ids: Any) -> Any:
    """What the request path stages of a batch's ids: a copy the caller cannot change
    afterwards (the ids are converted and checked later, in bulk)."""
    if isinstance(ids, np.ndarray) or isinstance(ids, list):
        return ids.copy()
    if isinstance(ids, (tuple, str, bytes)) or not hasattr(ids, "__iter__"):
        return ids  # immutable, or refused in bulk
    try:
        return list(ids)  # a pandas Series or Index, a range, a generator
    except Exception:  # noqa: BLE001 - refused in bulk, never on the request path
        return ids


def _refuse(ids: Any, name: str, n_rows: int) -> BatchTypeError:
    return BatchTypeError(
        f"{name} == {describe_value(ids)}, must be a sequence of str or int ids, one per row",
        "type",
        n_rows,
    )


def to_keys(ids: Any, n_rows: Optional[int], name: str = "ids") -> List[Key]:
    """The ids of a batch as a list of Python ``str`` and ``int``.

    Parameters
    ----------
    ids : sequence of str or int, or 1-D numpy array of integers, strings or objects
    n_rows : int or None
        Rows the batch has; None accepts any length.
    name : str, default="ids"
        The argument named in error messages.

    Raises
    ------
    BatchTypeError
        ``reason`` "type": not a sequence, or an id that is not a str or an int.
    BatchValueError
        ``reason`` "shape" (not 1-D) or "row_mismatch" (not one id per row).
    """
    expected = n_rows if n_rows is not None else 0
    if isinstance(ids, (str, bytes, Mapping, Set)) or not hasattr(ids, "__iter__"):
        raise _refuse(ids, name, expected)
    if not isinstance(ids, np.ndarray):
        if isinstance(ids, (list, tuple)) and set(map(type, ids)) <= _KEY_TYPES:
            keys: List[Any] = list(ids)  # the common case: already keys
            _check_rows(keys, name, n_rows)
            return keys
        try:
            ids = np.asarray(ids if isinstance(ids, (list, tuple)) else list(ids), dtype=object)
        except Exception:  # noqa: BLE001 - e.g. a generator that fails
            raise _refuse(ids, name, expected) from None
    if ids.ndim != 1:
        raise BatchValueError(
            f"{name} has shape {ids.shape}, must be 1-D: one id per row", "shape", expected
        )
    kind = ids.dtype.kind
    if kind in "iuU":
        keys = ids.tolist()
    elif kind == "O":
        keys = ids.tolist()
        types = set(map(type, keys))
        if not types <= _KEY_TYPES:
            keys = [_key(value, name, expected) for value in keys]
    else:
        raise BatchTypeError(
            f"{name} has dtype {ids.dtype}, must hold str or int ids (floats, bools and "
            "bytes are refused)",
            "type",
            expected,
        )
    _check_rows(keys, name, n_rows)
    return keys


def _check_rows(keys: List[Any], name: str, n_rows: Optional[int]) -> None:
    if n_rows is not None and len(keys) != n_rows:
        raise BatchValueError(
            f"{name} has {len(keys)} ids, must have one per row ({n_rows})",
            "row_mismatch",
            n_rows,
        )


def _key(value: Any, name: str, n_rows: int) -> Key:
    """One id of an object array as a Python str or int."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    raise BatchTypeError(
        f"{name} holds {value!r} ({type(value).__name__}), must hold only str or int ids",
        "type",
        n_rows,
    )


class IdEntry(NamedTuple):
    """What is remembered of one prediction (see :meth:`IdStore.find`)."""

    seq: int
    predicted: int
    window: int
    slot: int
    position: int
    time: float
    labeled: bool


class IdStore:
    """At most `max_ids` prediction ids, each for at most `ttl` seconds.

    Not thread-safe: the monitor's processing lock guards it.

    Parameters
    ----------
    max_ids : int
        Ids kept at most; the oldest are evicted first.
    ttl : float
        Seconds an id is kept after its prediction.
    """

    def __init__(self, max_ids: int, ttl: float) -> None:
        self.max_ids = int(max_ids)
        self.ttl = float(ttl)
        self._index: Dict[Key, int] = {}
        self._head = 0  # sequence number of the oldest entry kept
        self._tail = 0  # sequence number of the next entry
        self._capacity = 0
        self._keys = np.empty(0, dtype=object)
        self._predicted = np.empty(0, dtype=np.int32)
        self._window = np.empty(0, dtype=np.int64)
        self._slot = np.empty(0, dtype=np.int32)
        self._position = np.empty(0, dtype=np.int64)
        self._time = np.empty(0, dtype=np.float64)
        self._labeled = np.empty(0, dtype=bool)
        #: Ids forgotten before a label came, by reason (naming.EXPIRED_REASONS).
        self.expired: Dict[str, int] = {"ttl": 0, "max_ids": 0, "replaced": 0}

    def __len__(self) -> int:
        """Ids held."""
        return len(self._index)

    @property
    def nbytes(self) -> int:
        """Bytes of the ring arrays (without the dict and the id objects)."""
        return sum(a.nbytes for a in self._columns())

    def _columns(self) -> Tuple[np.ndarray, ...]:
        return (self._keys, self._predicted, self._window, self._slot, self._position,
                self._time, self._labeled)

    def record(
        self,
        keys: List[Key],
        predicted: np.ndarray,
        window: int,
        slots: np.ndarray,
        positions: np.ndarray,
        times: np.ndarray,
        labeled: np.ndarray,
        now: float,
    ) -> None:
        """Remember a batch of predictions (arrays of one row per key).

        `slots` is each row's slot in the window's sample, -1 when it was not sampled;
        `positions` its position among the window's rows; `labeled` whether it came
        with its label.
        """
        n = len(keys)
        self.purge(now)
        if not n:
            return
        if n > self.max_ids:  # only the last max_ids can be kept
            cut = n - self.max_ids
            self.expired["max_ids"] += int(np.count_nonzero(~labeled[:cut]))
            keys, predicted, slots = keys[cut:], predicted[cut:], slots[cut:]
            positions, times, labeled = positions[cut:], times[cut:], labeled[cut:]
            n = self.max_ids
        excess = self._tail - self._head + n - self.max_ids
        if excess > 0:
            self._forget(self._head + excess, "max_ids")
        self._reserve(self._tail - self._head + n)
        first = self._tail
        ring = np.arange(first, first + n) % self._capacity
        column = np.empty(n, dtype=object)
        column[:] = keys  # references to the id objects, never copies
        self._keys[ring] = column
        self._predicted[ring] = predicted
        self._window[ring] = window
        self._slot[ring] = slots
        self._position[ring] = positions
        self._time[ring] = times
        self._labeled[ring] = labeled
        self._tail = first + n
        index = self._index
        if index.keys().isdisjoint(keys) and len(set(keys)) == n:
            index.update(zip(keys, range(first, first + n)))
            return
        replaced = 0
        capacity = self._capacity
        get = index.get
        for seq, key in enumerate(keys, first):
            old = get(key)
            if old is not None and not self._labeled[old % capacity]:
                replaced += 1
            index[key] = seq
        self.expired["replaced"] += replaced

    def find(self, key: Key) -> Optional[IdEntry]:
        """The entry of `key`, or None when it is not held."""
        seq = self._index.get(key)
        if seq is None:
            return None
        at = seq % self._capacity
        return IdEntry(seq, int(self._predicted[at]), int(self._window[at]),
                       int(self._slot[at]), int(self._position[at]), float(self._time[at]),
                       bool(self._labeled[at]))

    def mark_labeled(self, seq: int) -> None:
        """Record that the prediction of entry `seq` got its label."""
        self._labeled[seq % self._capacity] = True

    def lookup(self, keys: List[Key]) -> np.ndarray:
        """Sequence numbers of `keys`, -1 for an id not held."""
        get = self._index.get
        return np.fromiter((get(key, -1) for key in keys), dtype=np.int64, count=len(keys))

    def fields(self, seqs: np.ndarray) -> Dict[str, np.ndarray]:
        """Columns of the entries `seqs` (all held): predicted, window, slot, position,
        time, labeled."""
        at = seqs % max(self._capacity, 1)
        return {"predicted": self._predicted[at], "window": self._window[at],
                "slot": self._slot[at], "position": self._position[at],
                "time": self._time[at], "labeled": self._labeled[at]}

    def mark_all_labeled(self, seqs: np.ndarray) -> None:
        """Record that the predictions of entries `seqs` got their labels."""
        self._labeled[seqs % self._capacity] = True

    def purge(self, now: float) -> None:
        """Forget the ids older than the ttl."""
        head, tail = self._head, self._tail
        if head == tail or self._time[head % self._capacity] >= now - self.ttl:
            return
        # Times grow with sequence numbers (batches are recorded in order): bisect.
        ring = np.arange(head, tail) % self._capacity
        old = int(np.searchsorted(self._time[ring], now - self.ttl, side="left"))
        self._forget(head + old, "ttl")

    def _forget(self, end: int, reason: str) -> None:
        """Drop the entries with sequence numbers below `end`, counting the unlabeled."""
        head = self._head
        if end <= head:
            return
        ring = np.arange(head, end) % self._capacity
        index = self._index
        unlabeled = 0
        for seq, key, labeled in zip(range(head, end), self._keys[ring].tolist(),
                                     self._labeled[ring].tolist()):
            if index.get(key) == seq:  # not replaced by a later prediction
                del index[key]
                if not labeled:
                    unlabeled += 1
        self._keys[ring] = None  # let the id objects go
        self.expired[reason] += unlabeled
        self._head = end

    def _reserve(self, size: int) -> None:
        """Grow the ring (doubling, at most max_ids) to hold `size` entries."""
        if size <= self._capacity:
            return
        capacity = max(self._capacity, _MIN_CAPACITY)
        while capacity < size:
            capacity *= 2
        capacity = min(capacity, self.max_ids)
        live = np.arange(self._head, self._tail)
        old_ring = live % self._capacity if self._capacity else live
        new_ring = live % capacity
        columns = []
        for column in self._columns():
            grown = np.empty(capacity, dtype=column.dtype)
            if column.dtype == object:
                grown[:] = None
            if live.size:
                grown[new_ring] = column[old_ring]
            columns.append(grown)
        (self._keys, self._predicted, self._window, self._slot, self._position, self._time,
         self._labeled) = columns
        self._capacity = capacity
