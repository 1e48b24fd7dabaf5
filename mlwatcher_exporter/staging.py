"""Staging: where the request path leaves a batch, copied, for the bulk processing.

A :class:`Stage` is a preallocated block of rows (probabilities, features, labels) plus
where each batch starts and ends. The caller of ``predict_proba`` only copies its batch
into the current stage under :class:`Staging`'s lock; classifying, counting and sampling
run later over the whole stage at once (:mod:`.processing`), by the background worker or
by the next reader. Every stage holds rows of one window: when the window's time is up,
the current stage is sealed and a :class:`WindowClose` follows it in the queue, so a
window is complete when its close is processed.

Memory is bounded: a fixed pool of stages. When every stage is full and waiting, the
caller is told to process them itself (:meth:`Staging.put` returns False) rather than
drop rows or allocate more. A batch larger than a stage is not copied at all: it is
queued as a :class:`Stage` over the caller's own arrays, which the caller processes
before returning, while they are still untouched.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, Deque, Dict, List, NamedTuple, Optional, Tuple, Union

import numpy as np

from .kernel import stage_rows

__all__ = [
    "Stage",
    "Staging",
    "WindowClose",
    "LABELS_NONE",
    "LABELS_INDICES",
    "LABELS_CHECKED",
    "LABELS_RAW",
]

# How a batch's labels are staged.
LABELS_NONE = 0  # no labels: -1 in the block
LABELS_INDICES = 1  # integer class indices in the block, not range-checked yet
LABELS_RAW = 2  # anything else, copied into the batch's extras, converted in bulk
LABELS_CHECKED = 3  # class indices validated by observe(), -1 where missing

# Bytes of probabilities and features per stage, and rows at least.
STAGE_BYTES = 4 << 20
MIN_STAGE_ROWS = 256
POOL_SIZE = 3
# Batches per stage at most: the records of 1-row batches stay 256 KiB a stage.
MAX_STAGE_BATCHES = 16384


class WindowClose(NamedTuple):
    """Queued after the last stage of a window: it ended at `end` (monotonic) and the
    next one started at `next_start` (later than `end` when whole windows passed
    without a batch)."""

    end: float
    next_start: float


class Stage:
    """Rows of several batches of one window, and where each batch ends.

    Parameters
    ----------
    capacity : int
        Rows it holds.
    n_classes : int
        Probability columns.
    n_features : int or None
        Feature columns; None until the features' width is known.
    """

    def __init__(self, capacity: int, n_classes: int, n_features: Optional[int]) -> None:
        self.capacity = capacity
        self.proba = np.empty((capacity, n_classes), dtype=np.float64)
        self.labels = np.full(capacity, -1, dtype=np.int64)
        self.features: Optional[np.ndarray] = None
        if n_features is not None:
            self.features = np.empty((capacity, n_features), dtype=np.float64)
        self.borrowed = False
        self.n = 0
        # Per batch, preallocated (at most MAX_STAGE_BATCHES: a stage with as many
        # batches is full), written in place by Python and by the compiled request
        # path (kernel.stage_call): the end row, how its labels are and whether it has
        # features, packed in one integer (see _pack), and its threshold.
        batches = min(capacity, MAX_STAGE_BATCHES)
        self.meta = np.empty(batches, dtype=np.int64)
        self.thresholds = np.empty(batches, dtype=np.float64)
        self.batches = 0
        # Per batch index: text columns {position: objects} and raw labels.
        self.text: Dict[int, Dict[int, np.ndarray]] = {}
        self.raw_labels: Dict[int, Any] = {}
        # Per batch index: its prediction ids and when it was put (latelabels.py).
        self.ids: Dict[int, Tuple[Any, float]] = {}

    @classmethod
    def borrow(
        cls,
        proba: np.ndarray,
        features: Optional[np.ndarray],
        labels: Optional[np.ndarray],
        label_kind: int,
        threshold: float,
        text: Optional[Dict[int, np.ndarray]] = None,
        ids: Any = None,
    ) -> "Stage":
        """A stage over one batch's own arrays (no copy): for a batch larger than a
        stage, processed before its caller returns."""
        stage = cls.__new__(cls)
        n_rows = proba.shape[0]
        stage.capacity = stage.n = n_rows
        stage.proba = proba
        stage.features = features
        if label_kind in (LABELS_INDICES, LABELS_CHECKED) and labels is not None:
            # A copy: bulk processing marks bad labels -1 in place.
            stage.labels = np.array(labels, dtype=np.int64)
        else:
            stage.labels = np.full(n_rows, -1, dtype=np.int64)
        stage.borrowed = True
        stage.meta = np.array([_pack(n_rows, label_kind, features is not None)], np.int64)
        stage.thresholds = np.array([threshold], dtype=np.float64)
        stage.batches = 1
        stage.text = {0: text} if text else {}
        stage.raw_labels = {0: labels} if label_kind == LABELS_RAW else {}
        stage.ids = {} if ids is None else {0: (ids, 0.0)}  # put_borrowed sets the time
        return stage

    @property
    def n_batches(self) -> int:
        """Batches staged."""
        return self.batches

    def columns(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per batch: end rows, thresholds, whether it has features, label kinds."""
        records = self.meta[: self.batches]
        thresholds = self.thresholds[: self.batches]
        return records >> 3, thresholds, (records & 1).astype(bool), (records >> 1) & 3

    @property
    def nbytes(self) -> int:
        """Bytes of its arrays."""
        features = 0 if self.features is None else self.features.nbytes
        return (self.proba.nbytes + self.labels.nbytes + features + self.meta.nbytes
                + self.thresholds.nbytes)

    def reset(self) -> None:
        """Empty it for reuse."""
        self.labels[: self.n] = -1
        self.n = 0
        self.batches = 0
        self.text.clear()
        self.raw_labels.clear()
        self.ids.clear()

    def add(
        self,
        proba: np.ndarray,
        features: Optional[np.ndarray],
        labels: Any,
        label_kind: int,
        threshold: float,
        text: Optional[Dict[int, np.ndarray]],
    ) -> None:
        """Copy one batch in (the caller checked that it fits)."""
        start = self.n
        end = self.n = start + proba.shape[0]
        block = self.features
        if features is not None and block is None:
            block = self.features = np.empty((self.capacity, features.shape[1]), np.float64)
        # Rows without labels keep -1 from reset(); a block of labels is copied.
        index_labels = label_kind == LABELS_INDICES or label_kind == LABELS_CHECKED
        # One compiled copy of the arrays of the usual dtypes (kernel.py); numpy's
        # assignment (casting, strides) for the others.
        copied = stage_rows(start, self.proba, proba, block, features, self.labels,
                            labels if index_labels else None)
        if copied != 7:
            rows = slice(start, end)
            if not copied & 1:
                self.proba[rows] = proba
            if features is not None and not copied & 2:
                block[rows] = features  # type: ignore[index]
            if index_labels and not copied & 4:
                self.labels[rows] = labels
        batch = self.batches
        if batch == self.meta.size:  # Staging.put seals a stage before; others may not
            self.meta = np.resize(self.meta, 2 * batch + 1)
            self.thresholds = np.resize(self.thresholds, 2 * batch + 1)
        if label_kind == LABELS_RAW:
            self.raw_labels[batch] = labels
        if text:
            self.text[batch] = text
        self.meta[batch] = end << 3 | label_kind << 1 | (features is not None)  # _pack
        self.thresholds[batch] = threshold
        self.batches = batch + 1


def _pack(end: int, label_kind: int, has_features: bool) -> int:
    """A batch's record: its end row, its label kind (2 bits) and whether it has
    features (1 bit) in one integer."""
    return end << 3 | label_kind << 1 | has_features


QueueItem = Union[Stage, WindowClose]


class Staging:
    """The current stage, the queue of sealed stages and window closes, the pool of free
    stages, and the window clock: everything guarded by one lock that the request path
    holds only to copy.

    Parameters
    ----------
    clock : callable
        Monotonic seconds.
    window_seconds : float
        Length of the tumbling windows.
    notify : callable
        Called (outside the lock) when there is work: a sealed stage or a window close.
    """

    def __init__(
        self, clock: Callable[[], float], window_seconds: float, notify: Callable[[], None]
    ) -> None:
        self._clock = clock
        self.window_seconds = window_seconds
        self.reset(notify)

    def reset(self, notify: Callable[[], None]) -> None:
        """Empty everything, with a new lock and window: also a forked child's, where a
        function watched before the fork keeps this very object (kernel.Watched)."""
        clock = self._clock
        self._notify = notify
        self.lock = threading.Lock()
        self.window_start = clock()
        self.window_end = self.window_start + self.window_seconds
        self.last_offer: Optional[float] = None
        self._current: Optional[Stage] = None
        self._queue: Deque[QueueItem] = deque()
        self._free: List[Stage] = []
        self._stages = 0
        self._shape: Optional[tuple] = None  # (capacity, n_classes, n_features)
        #: Rows a stage holds (0 before :meth:`configure`).
        self.stage_rows = 0
        self.closed = False

    def configure(self, n_classes: int, n_features: Optional[int], row_limit: int) -> None:
        """Size the stages once the classes (and maybe the features) are known; stages
        made before keep their size."""
        with self.lock:
            width = n_classes + (n_features or 0)
            rows = max(MIN_STAGE_ROWS, min(row_limit, STAGE_BYTES // (8 * width)))
            self._shape = (rows, n_classes, n_features)
            self.stage_rows = rows

    def put(
        self,
        proba: np.ndarray,
        features: Optional[np.ndarray],
        labels: Any,
        label_kind: int,
        threshold: float,
        text: Optional[Dict[int, np.ndarray]] = None,
        ids: Any = None,
    ) -> bool:
        """Copy a batch into the current stage; False when no stage is free (the caller
        must process the queue and try again). `ids` (the batch's prediction ids, a
        copy) are kept by reference with the time of the call."""
        n_rows = proba.shape[0]
        notify = False
        with self.lock:
            now = self.last_offer = self._clock()
            if now >= self.window_end:
                if self.closed:
                    return True
                self._roll(now)
                notify = True
            stage = self._current
            if stage is None or stage.n + n_rows > stage.capacity or (
                stage.batches == stage.meta.size
            ) or (
                features is not None and stage.features is not None
                and stage.features.shape[1] != features.shape[1]
            ):
                if stage is not None and stage.n:
                    self._queue.append(stage)
                    self._current = None
                    notify = True
                stage = self._current = self._fresh_stage()
                if stage is None:
                    if notify:
                        self._notify()
                    return False
            stage.add(proba, features, labels, label_kind, threshold, text)
            if ids is not None:
                stage.ids[stage.batches - 1] = (ids, now)
        if notify:
            self._notify()
        return True

    def put_borrowed(self, stage: Stage) -> None:
        """Queue a stage over a caller's arrays, after what is staged; the caller then
        processes the queue before returning."""
        with self.lock:
            if self.closed:
                return
            now = self._clock()
            self.last_offer = now
            if now >= self.window_end:
                self._roll(now)
            if stage.ids:
                stage.ids[0] = (stage.ids[0][0], now)
            self._seal()
            self._queue.append(stage)

    def _fresh_stage(self) -> Optional[Stage]:
        if self._free:
            stage = self._free.pop()
            assert self._shape is not None
            if stage.proba.shape[0] == self._shape[0]:
                return stage
        elif self._stages >= POOL_SIZE:
            return None
        else:
            self._stages += 1
        assert self._shape is not None, "configure() first"
        return Stage(*self._shape)

    def _seal(self) -> None:
        stage = self._current
        if stage is not None and stage.n:
            self._queue.append(stage)
            self._current = None

    def _roll(self, now: float) -> None:
        """Close the window that ended before `now` (lock held)."""
        elapsed = max(1, int((now - self.window_start) // self.window_seconds))
        next_start = self.window_start + elapsed * self.window_seconds
        self._seal()
        self._queue.append(WindowClose(self.window_end, next_start))
        self.window_start = next_start
        self.window_end = next_start + self.window_seconds

    def roll_if_due(self) -> bool:
        """Close the window if its time is up; return whether there is queued work."""
        with self.lock:
            now = self._clock()
            if now >= self.window_end and not self.closed:
                self._roll(now)
            return bool(self._queue)

    def close_now(self) -> None:
        """Close the current window now; the next one starts now."""
        with self.lock:
            if self.closed:
                return
            now = self._clock()
            if now >= self.window_end:
                self._roll(now)
            self._seal()
            self._queue.append(WindowClose(now, now))
            self.window_start = now
            self.window_end = now + self.window_seconds

    def take(self, seal: bool) -> List[QueueItem]:
        """Everything queued, in order; with `seal`, the current stage too (a reader
        wants every row counted)."""
        with self.lock:
            if seal:
                self._seal()
            items = list(self._queue)
            self._queue.clear()
            return items

    def release(self, stage: Stage) -> None:
        """Give a processed stage back to the pool."""
        if stage.borrowed:
            return
        stage.reset()
        with self.lock:
            self._free.append(stage)

    def close(self) -> None:
        """Accept nothing more: later batches are ignored."""
        with self.lock:
            self.closed = True
            # put() tests the window's end first; the closed check hides behind it.
            self.window_end = float("-inf")

    def has_work(self) -> bool:
        """Whether anything is queued."""
        return bool(self._queue)

    @property
    def nbytes(self) -> int:
        """Bytes held by the stages."""
        with self.lock:
            stages = list(self._free) + [s for s in self._queue if isinstance(s, Stage)]
            if self._current is not None:
                stages.append(self._current)
        return sum(stage.nbytes for stage in stages if not stage.borrowed)
