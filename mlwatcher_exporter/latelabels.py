"""Late labels: predictions remembered by id, labels joined to them when they arrive.

The bulk processing of a stage records the ids of its batches in the :class:`IdStore`
(:meth:`LateLabels.record_stage`), with each row's predicted class, window, sample slot
and time. :meth:`ModelMonitor.observe_labels` then joins labels to them
(:meth:`LateLabels.join`), under the processing lock and after every staged batch was
processed:

* a label whose prediction is still held, not older than the ttl and not labeled yet
  is **matched**: it feeds the lifetime label counters (by true class, as a label given
  with its batch), the label delay histogram and, when the prediction's window is still
  the open one and its row is still in that window's sample, the window's label metrics
  (accuracy, precision, recall, f1 of that window);
* a second label for one prediction is a **duplicate** (the first label is kept);
* a label for an id never recorded, or already forgotten, is **unmatched** with reason
  ``unknown``; for a prediction older than the ttl but not forgotten yet, ``expired``.
  Neither is an error.

A window that has closed keeps the labels it had at its close: its statistics are
computed once. Labels that arrive later still count in the lifetime counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import naming
from .errors import BatchError, BatchValueError, count_rows
from .idstore import IdStore, Key, to_keys
from .tables import to_array
from .validation import ClassIndex

if TYPE_CHECKING:  # pragma: no cover
    from .buffer import WindowBuffer
    from .counts import LifetimeCounts, RejectionCounts
    from .staging import Stage

__all__ = ["LateLabels", "LateLabelCounts", "DELAY_EDGES", "check_label_call"]

DELAY_EDGES = np.asarray(naming.LABEL_DELAY_BUCKETS)


@dataclass
class LateLabelCounts:
    """Counters of the joins since start, and the ids held now (a snapshot)."""

    matched: int = 0
    duplicate: int = 0
    unmatched: Dict[str, int] = field(
        default_factory=lambda: {reason: 0 for reason in naming.UNMATCHED_REASONS})
    expired: Dict[str, int] = field(
        default_factory=lambda: {reason: 0 for reason in naming.EXPIRED_REASONS})
    rejected: Dict[str, int] = field(
        default_factory=lambda: {reason: 0 for reason in naming.LATE_LABEL_REJECT_REASONS})
    ids: int = 0
    # Per bucket (non-cumulative); the last is everything above the top edge.
    delay_buckets: np.ndarray = field(
        default_factory=lambda: np.zeros(DELAY_EDGES.size + 1, dtype=np.int64))
    delay_sum: float = 0.0


class LateLabels:
    """The id store of one monitor and the counters of its joins.

    Not thread-safe: the monitor's processing lock guards it.

    Parameters
    ----------
    max_ids : int
        Prediction ids kept at most.
    ttl : float
        Seconds a prediction id is kept.
    """

    def __init__(self, max_ids: int, ttl: float) -> None:
        self.store = IdStore(max_ids, ttl)
        #: Index of the open window: one more at each window close.
        self.window = 0
        self.counts = LateLabelCounts()

    def next_window(self) -> None:
        """The open window closed; the next one opens."""
        self.window += 1

    def record_stage(
        self,
        stage: "Stage",
        starts: np.ndarray,
        ends: np.ndarray,
        accepted: Optional[np.ndarray],
        predicted: np.ndarray,
        labels: Optional[np.ndarray],
        plans: Sequence[Any],
        first_position: int,
        refusals: "RejectionCounts",
        now: float,
    ) -> None:
        """Remember the ids of a processed stage's batches.

        `accepted` masks the stage's rows that were kept (None: all), `predicted` and
        `labels` are of the kept rows, `plans` are where the window's sample put them
        and `first_position` is the window's row count before them. Ids that cannot
        be used are left out, counted in ``mlwatcher_dropped_rows_total{part="ids"}``.
        """
        n_kept = predicted.shape[0]
        before = None
        if accepted is not None:
            before = np.concatenate(([0], np.cumsum(accepted)))
        all_keys: List[Key] = []
        rows: List[np.ndarray] = []
        times: List[np.ndarray] = []
        for batch, (raw, made) in sorted(stage.ids.items()):
            start, end = int(starts[batch]), int(ends[batch])
            if accepted is not None and not accepted[start]:
                continue  # a rejected batch: counted as such, nothing of it is kept
            try:
                keys = to_keys(raw, end - start)
            except BatchError as error:
                refusals.drop("ids", error.reason, end - start, str(error))
                continue
            first = start if before is None else int(before[start])
            all_keys.extend(keys)
            rows.append(np.arange(first, first + end - start))
            times.append(np.full(end - start, made))
        if not rows:
            self.store.purge(now)
            return
        slot_of_row = np.full(n_kept, -1, dtype=np.int32)
        for slots, kept in plans:
            if isinstance(slots, slice):
                slots = np.arange(slots.start, slots.stop)
            slot_of_row[kept] = slots
        row = np.concatenate(rows)
        has_label = (labels[row] >= 0) if labels is not None else np.zeros(row.size, bool)
        self.store.record(
            all_keys, predicted[row], self.window, slot_of_row[row], first_position + row,
            np.concatenate(times), has_label, now,
        )

    def join(
        self,
        keys: List[Key],
        labels: np.ndarray,
        now: float,
        window: Optional["WindowBuffer"],
        counts: Optional["LifetimeCounts"],
    ) -> None:
        """Join labels (class indices, -1 for none) to the predictions of `keys`.

        `window` is the open window's buffer, whose sample gets the labels of its own
        rows; `counts` the lifetime counters, which get every matched label.
        """
        store, tally = self.store, self.counts
        given = labels >= 0  # no label for this id (NaN, None, masked): not counted
        if not given.all():
            keys = [key for key, keep in zip(keys, given.tolist()) if keep]
            labels = labels[given]
        seqs = store.lookup(keys)
        held = seqs >= 0
        tally.unmatched["unknown"] += int(np.count_nonzero(~held))
        seqs, labels = seqs[held], labels[held]
        entries = store.fields(seqs)
        expired = now - entries["time"] > store.ttl
        tally.unmatched["expired"] += int(np.count_nonzero(expired))
        # The first label of a prediction not labeled yet is matched; any other is a
        # duplicate (also a second one in this very call).
        fresh = np.flatnonzero(~expired & ~entries["labeled"])
        _, first = np.unique(seqs[fresh], return_index=True)
        matched = np.sort(fresh[first])
        tally.duplicate += int(np.count_nonzero(~expired)) - matched.size
        if matched.size:
            store.mark_all_labeled(seqs[matched])
            true = labels[matched]
            predicted = entries["predicted"][matched].astype(np.intp)
            tally.matched += matched.size
            if counts is not None:
                counts.add_labels(predicted, true)
            spent = now - entries["time"][matched]
            tally.delay_buckets += np.bincount(
                np.searchsorted(DELAY_EDGES, spent, side="left"), minlength=DELAY_EDGES.size + 1
            )
            tally.delay_sum += float(spent.sum())
            if window is not None:
                self._label_sample(window, entries, matched, true)
        store.purge(now)

    def _label_sample(
        self, window: "WindowBuffer", entries: Dict[str, np.ndarray], matched: np.ndarray,
        true: np.ndarray,
    ) -> None:
        """Label the matched rows of the open window that are still in its sample."""
        slot = entries["slot"][matched]
        mine = (entries["window"][matched] == self.window) & (slot >= 0)
        mine &= slot < window.reservoir.size
        slot, position = slot[mine], entries["position"][matched][mine]
        still = window.positions[slot] == position  # not replaced by a later row
        window.labels[slot[still]] = true[mine][still]

    def purge(self, now: float) -> None:
        """Forget the ids older than the ttl."""
        self.store.purge(now)

    def snapshot(self) -> LateLabelCounts:
        """A copy of the counters that later joins do not change."""
        tally = self.counts
        return LateLabelCounts(
            matched=tally.matched,
            duplicate=tally.duplicate,
            unmatched=dict(tally.unmatched),
            expired=dict(self.store.expired),
            rejected=dict(tally.rejected),
            ids=len(self.store),
            delay_buckets=tally.delay_buckets.copy(),
            delay_sum=tally.delay_sum,
        )


def check_label_call(
    ids: Any,
    labels: Any,
    classes: Optional[ClassIndex],
    late: LateLabels,
    lock: threading.Lock,
    log: Callable[[str, str], None],
) -> Tuple[List[Key], Optional[np.ndarray]]:
    """The ids and class indices (-1: no label) of an ``observe_labels`` call; None for
    the indices while no class is known (no prediction yet, every id is unknown).

    Raises
    ------
    BatchTypeError, BatchValueError
        Naming the argument, its value and what was expected; the refused labels are
        counted by reason in `late` first (under `lock`) and logged with `log`.
    """
    try:
        keys = to_keys(ids, None, "ids")
        n_ids = len(keys)
        array = to_array(labels, "labels", n_ids)
        rows = array.shape[0] if array.ndim else None
        if rows != n_ids:
            raise BatchValueError(
                f"labels has {'no rows' if rows is None else f'{rows} rows'}, must have "
                f"one label per id ({n_ids})",
                "row_mismatch" if rows is not None else "shape",
                n_ids,
            )
        indices = None if classes is None else classes.indices(labels, n_ids)
    except BatchError as error:
        reason = error.reason if error.reason in late.counts.rejected else "type"
        with lock:
            late.counts.rejected[reason] += max(count_rows(ids), 1)
        log(f"late_labels:{reason}", f"refused late labels: {error}")
        raise
    return keys, indices
