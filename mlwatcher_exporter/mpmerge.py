"""Merging the states of several worker processes into what one monitor would publish.

Pure functions of the states read from files and of the time (both passed in), so the
tests drive them without processes:

- **Counters** are summed over every worker, live or dead: a worker recycled by
  ``--max-requests`` wrote its final state at exit, and its file stays.
- **The window** published is the last one every *live* worker has closed (a worker is
  live while its heartbeat is fresh and it did not write a final state). Windows are
  aligned on the wall clock (``start = floor(t / window) * window``), so the workers'
  windows of one grid index are the same span of time. Their samples are merged by
  :func:`merge_samples`: a multivariate hypergeometric allocation by the rows each
  worker saw, then a uniform subsample of each worker's sample, which makes the merged
  sample a uniform sample of the pooled window. The randomness is seeded by the model,
  the window and the workers, so every worker publishes the same page for one window.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .counts import LifetimeCounts
from .latelabels import LateLabelCounts
from .mpstate import WindowRecord, WorkerState, decode_attributes, merge_attributes
from .window import WindowSample, WindowStats, compute_window_stats

__all__ = ["merge_samples", "merge_model", "MergedModel", "merge_seed"]


class MergedModel(NamedTuple):
    """What every worker publishes of one model, merged."""

    model: str
    window_seconds: float
    reservoir_size: int
    class_labels: List[str]
    counts: Optional[LifetimeCounts]
    late: Optional[LateLabelCounts]
    rejected: Dict[str, int]
    dropped: Dict[Tuple[str, str], int]
    window_key: Optional[tuple]
    records: List[WindowRecord]
    max_categories: int


def merge_seed(model: str, index: int, tokens: Sequence[str]) -> int:
    """The seed of one window's merge: the same in every worker."""
    text = "|".join([model, str(index), *map(str, tokens)]).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little")


def merge_samples(samples: Sequence[WindowSample], capacity: int,
                  rng: np.random.Generator) -> WindowSample:
    """One uniform sample of at most `capacity` rows of the pooled windows of `samples`.

    Each input must be a uniform sample of its own window (``rows`` rows seen,
    ``min(rows, capacity)`` kept). Rows per predicted class are summed exactly.

    Examples
    --------
    >>> import numpy as np
    >>> def sample(n):
    ...     return WindowSample(np.full((n, 2), 0.5), np.zeros(n, dtype=int), None, None,
    ...                         np.full(n, -1), n, np.array([n, 0]))
    >>> merged = merge_samples([sample(3), sample(4)], 5, np.random.default_rng(0))
    >>> merged.rows, merged.proba.shape[0], merged.class_rows.tolist()
    (7, 5, [7, 0])
    """
    rows = np.array([sample.rows for sample in samples], dtype=np.int64)
    total = int(rows.sum())
    kept = min(capacity, total)
    if total:
        allocation = rng.multivariate_hypergeometric(rows, kept)
    else:
        allocation = np.zeros(len(samples), dtype=np.int64)
    picks = []
    for sample, take in zip(samples, allocation.tolist()):
        size = sample.proba.shape[0]
        if take > size:
            raise ValueError(f"a sample of {size} rows of {sample.rows}, must hold "
                             f"min(rows, capacity) = {min(sample.rows, capacity)}")
        picks.append(np.arange(size) if take == size else
                     np.sort(rng.choice(size, take, replace=False)))
    n_classes = samples[0].proba.shape[1]
    width = next((s.features.shape[1] for s in samples if s.features is not None), None)
    features = has_features = None
    if width is not None:
        blocks, flags = [], []
        for sample, pick in zip(samples, picks):
            if sample.features is not None and sample.features.shape[1] == width:
                blocks.append(sample.features[pick])
                assert sample.has_features is not None
                flags.append(sample.has_features[pick])
            else:
                blocks.append(np.full((pick.size, width), np.nan))
                flags.append(np.zeros(pick.size, dtype=bool))
        features, has_features = np.concatenate(blocks), np.concatenate(flags)
    return WindowSample(
        proba=np.concatenate([s.proba[p] for s, p in zip(samples, picks)]).reshape(
            -1, n_classes),
        predicted=np.concatenate([s.predicted[p] for s, p in zip(samples, picks)]),
        features=features,
        has_features=has_features,
        labels=np.concatenate([s.labels[p] for s, p in zip(samples, picks)]),
        rows=total,
        class_rows=np.sum([s.class_rows for s in samples], axis=0).astype(np.int64),
    )


def _recode_text(records: Sequence[WindowRecord], names: List[str]
                 ) -> Tuple[List[WindowSample], Dict[str, List[str]]]:
    """Samples whose text codes refer to one merged vocabulary (each worker learned its
    own codes), and that vocabulary."""
    merged: Dict[str, Dict[str, int]] = {}
    for record in records:
        for feature, values in record.value_names.items():
            vocabulary = merged.setdefault(feature, {})
            for value in values:
                vocabulary.setdefault(value, len(vocabulary))
    samples = []
    for record in records:
        sample = record.sample
        if record.value_names and sample.features is not None:
            table = sample.features.copy()
            for feature, values in record.value_names.items():
                if feature not in names or names.index(feature) >= table.shape[1]:
                    continue
                column = names.index(feature)
                lookup = np.array([merged[feature][value] for value in values] + [np.nan])
                codes = table[:, column]
                known = ~np.isnan(codes)
                table[known, column] = lookup[codes[known].astype(np.intp)]
            sample = WindowSample(sample.proba, sample.predicted, table, sample.has_features,
                                  sample.labels, sample.rows, sample.class_rows)
        samples.append(sample)
    return samples, {feature: list(v) for feature, v in merged.items()}


def window_stats(merged: MergedModel, index: int,
                 judge: Optional[Callable[..., Any]] = None) -> Optional[WindowStats]:
    """The statistics of window `index` over every worker's records; with `judge`
    (called as ``judge(sample, feature_names, value_names)``), also its judgement
    against a reference profile."""
    records = merged.records
    if not records:
        return None
    with_features = next((r for r in records if r.feature_names), records[0])
    names = with_features.feature_names
    samples, value_names = _recode_text(records, names)
    rng = np.random.default_rng(merge_seed(merged.model, index, merged.window_key or ()))
    sample = merge_samples(samples, merged.reservoir_size, rng)
    end = index * merged.window_seconds
    categorical = with_features.categorical or [False] * len(names)
    if sample.features is not None and sample.features.shape[1] != len(names):
        names = [f"f{column}" for column in range(sample.features.shape[1])]
        categorical = [False] * len(names)
    stats = compute_window_stats(
        sample, end_time=end, duration=end - min(r.start for r in records),
        feature_names=names, categorical=categorical,
        max_categories=merged.max_categories, value_names=value_names,
    )
    if judge is not None:
        stats = replace(stats, judgement=judge(sample, names, value_names))
    return stats


def _live(state: WorkerState, now: float, stale_after: float) -> bool:
    return not state.final and state.written >= now - stale_after


def merge_model(states: Sequence[WorkerState], now: float,
                stale_after: float) -> Tuple[MergedModel, Optional[int]]:
    """Merge the states of one model (files of live and dead workers); also returns the
    grid index of the window to publish (None before any)."""
    first = states[0]
    counts_parts = [decode_attributes(s.counts) for s in states if s.counts]
    late_parts = [decode_attributes(s.late) for s in states if s.late]
    counts = merge_attributes(counts_parts, LifetimeCounts) if counts_parts else None
    late = merge_attributes(late_parts, LateLabelCounts) if late_parts else None
    live = [s for s in states if _live(s, now, stale_after)]
    if late is not None:
        # Ids held is a gauge: dead workers hold none.
        late.ids = sum(int((s.late or {}).get("ids", {}).get("value", 0)) for s in live)
    rejected: Dict[str, int] = {}
    dropped: Dict[Tuple[str, str], int] = {}
    for state in states:
        for reason, rows in state.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + rows
        for key, rows in state.dropped.items():
            dropped[key] = dropped.get(key, 0) + rows
    candidates = live or list(states)
    index: Optional[int] = (min if live else max)(s.closed_through for s in candidates)
    records = [(s.token, r) for s in states for r in s.windows if r.index == index]
    if not records:
        index = None
    window_key: Optional[tuple] = None
    if index is not None:
        window_key = (index, *(f"{token}:{r.rows}:{r.start!r}" for token, r in records))
    labels = max((s.class_labels for s in states), key=len)
    merged = MergedModel(
        first.model, first.window_seconds, first.reservoir_size, labels, counts, late,
        rejected, dropped, window_key, [r for _, r in records], first.max_categories,
    )
    return merged, index
