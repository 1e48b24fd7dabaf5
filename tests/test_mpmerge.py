"""Merging workers: the weighted reservoir merge is uniform, the window everyone closed is
published, counters of live and dead workers are summed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlwatcher_exporter.counts import LifetimeCounts
from mlwatcher_exporter.mpmerge import merge_model, merge_samples, window_stats
from mlwatcher_exporter.mpstate import WindowRecord, WorkerState, encode_attributes
from mlwatcher_exporter.reservoir import Reservoir
from mlwatcher_exporter.window import WindowSample, compute_window_stats


def reservoir_sample(ids: np.ndarray, capacity: int, rng: np.random.Generator) -> WindowSample:
    """A real reservoir's sample of rows whose first probability column is their id."""
    reservoir = Reservoir(capacity, rng)
    kept = np.empty(capacity)
    for start in range(0, ids.size, 37):  # several batches, as a worker sees them
        batch = ids[start:start + 37]
        for slots, rows in reservoir.offer(batch.size):
            kept[slots] = batch[rows]
    size = reservoir.size
    proba = np.column_stack([kept[:size], np.zeros(size)])
    return WindowSample(proba, np.zeros(size, dtype=np.intp), None, None,
                        np.full(size, -1), ids.size, np.array([ids.size, 0]))


def test_weighted_merge_is_uniform_over_the_pooled_window():
    # Workers that saw very different numbers of rows: an allocation by sample size
    # (100 each) instead of by rows seen would pick worker 0's rows 7 times too often.
    sizes, capacity, rounds = (60, 240, 700), 100, 3000
    bounds = np.cumsum((0,) + sizes)
    pooled = bounds[-1]
    rng = np.random.default_rng(12)
    hits = np.zeros(pooled)
    for _ in range(rounds):
        samples = [reservoir_sample(np.arange(lo, hi, dtype=float), capacity, rng)
                   for lo, hi in zip(bounds[:-1], bounds[1:])]
        merged = merge_samples(samples, capacity, rng)
        assert merged.rows == pooled and merged.proba.shape[0] == capacity
        ids = merged.proba[:, 0].astype(int)
        assert np.unique(ids).size == capacity  # without replacement
        hits[ids] += 1
    # Every row has probability capacity / pooled: a chi-square over 50 groups of rows.
    groups = hits.reshape(50, -1).sum(axis=1)
    expected = np.full(50, rounds * capacity / 50)
    assert stats.chisquare(groups, expected).pvalue > 1e-3
    # And per worker, the share is its share of the rows, not of the samples.
    per_worker = [hits[lo:hi].sum() / (rounds * capacity) for lo, hi in
                  zip(bounds[:-1], bounds[1:])]
    assert per_worker == pytest.approx(np.array(sizes) / pooled, abs=0.01)


def test_merge_keeps_every_row_when_they_fit():
    rng = np.random.default_rng(0)
    samples = [reservoir_sample(np.arange(n, dtype=float) + 100 * i, 1000, rng)
               for i, n in enumerate((5, 0, 17))]
    merged = merge_samples(samples, 1000, rng)
    assert sorted(merged.proba[:, 0].tolist()) == sorted(
        [float(v) for v in range(5)] + [200.0 + v for v in range(17)])
    assert merged.class_rows.tolist() == [22, 0]


def test_merge_fills_missing_features_with_nan():
    with_features = WindowSample(np.full((2, 2), 0.5), np.zeros(2, dtype=np.intp),
                                 np.ones((2, 3)), np.ones(2, dtype=bool), np.full(2, -1), 2,
                                 np.array([2, 0]))
    without = WindowSample(np.full((1, 2), 0.5), np.zeros(1, dtype=np.intp), None, None,
                           np.full(1, -1), 1, np.array([1, 0]))
    merged = merge_samples([with_features, without], 10, np.random.default_rng(0))
    assert merged.has_features.tolist() == [True, True, False]
    assert np.isnan(merged.features[2]).all()


def state(token, *, written=100.0, final=False, closed=10, windows=(), predictions=(1, 2),
          model="m"):
    counts = LifetimeCounts(2)
    counts.predictions[:] = predictions
    counts.last_prediction = written
    return WorkerState(model, token, written, final, closed, 6.0, 1000, 10, ["a", "b"],
                       encode_attributes(counts), None, {"proba": 1}, {}, list(windows))


def record(index, rows, seed):
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet([1, 1], size=rows)
    features = rng.normal(size=(rows, 2))
    sample = WindowSample(proba, proba.argmax(axis=1), features, np.ones(rows, dtype=bool),
                          rng.integers(0, 2, size=rows), rows,
                          np.bincount(proba.argmax(axis=1), minlength=2))
    return WindowRecord(index, index * 6.0 - 6.0, sample, ["x", "y"], [False, False], {})


def test_counters_sum_live_and_dead_workers():
    states = [state("a", predictions=(1, 2)), state("b", final=True, predictions=(10, 0)),
              state("c", written=10.0, predictions=(0, 5))]  # c: stale, i.e. dead
    merged, _ = merge_model(states, now=101.0, stale_after=5.0)
    assert merged.counts.predictions.tolist() == [11, 7]
    assert merged.counts.last_prediction == 100.0
    assert merged.rejected == {"proba": 3}


def test_window_waits_for_every_live_worker():
    states = [state("a", closed=11, windows=[record(10, 5, 0), record(11, 4, 1)]),
              state("b", closed=10, windows=[record(10, 7, 2)])]
    merged, index = merge_model(states, now=101.0, stale_after=5.0)
    assert index == 10 and [r.sample.rows for r in merged.records] == [5, 7]
    # Once b is dead (no heartbeat), a's latest window is published.
    states[1].written = 50.0
    merged, index = merge_model(states, now=101.0, stale_after=5.0)
    assert index == 11 and [r.sample.rows for r in merged.records] == [4]
    # With only dead workers, the latest window any of them closed.
    states[0].final = True
    merged, index = merge_model(states, now=101.0, stale_after=5.0)
    assert index == 11


def test_window_statistics_equal_those_of_the_pooled_rows():
    records = [record(10, 50, 0), record(10, 30, 1), record(10, 20, 2)]
    states = [state(token, closed=10, windows=[r]) for token, r in zip("abc", records)]
    merged, index = merge_model(states, now=101.0, stale_after=5.0)
    stats_ = window_stats(merged, index)
    pooled = WindowSample(
        np.concatenate([r.sample.proba for r in records]),
        np.concatenate([r.sample.predicted for r in records]),
        np.concatenate([r.sample.features for r in records]),
        np.ones(100, dtype=bool), np.concatenate([r.sample.labels for r in records]), 100,
        np.sum([r.sample.class_rows for r in records], axis=0))
    expected = compute_window_stats(pooled, end_time=60.0, duration=6.0,
                                    feature_names=["x", "y"], categorical=[False, False],
                                    max_categories=10)
    assert stats_.rows == 100 and stats_.end_time == 60.0
    assert stats_.pred1 == pytest.approx(expected.pred1)
    assert stats_.features["x"] == pytest.approx(expected.features["x"])
    assert stats_.scores.accuracy == pytest.approx(expected.scores.accuracy)


def test_same_page_from_every_reader():
    records = [record(10, 900, 0), record(10, 800, 1)]
    states = [state(token, closed=10, windows=[r]) for token, r in zip("ab", records)]
    merged, index = merge_model(states, now=101.0, stale_after=5.0)
    merged = merged._replace(reservoir_size=300)  # a real subsample
    first, second = window_stats(merged, index), window_stats(merged, index)
    assert first.sampled_rows == 300
    assert first.pred1 == second.pred1 and first.features == second.features


def test_text_codes_of_each_worker_are_merged_by_name():
    def text_record(codes, names, seed):
        base = record(10, len(codes), seed)
        table = base.sample.features.copy()
        table[:, 1] = codes
        sample = WindowSample(base.sample.proba, base.sample.predicted, table,
                              base.sample.has_features, base.sample.labels,
                              len(codes), base.sample.class_rows)
        return WindowRecord(10, 54.0, sample, ["x", "channel"], [False, True],
                            {"channel": names})

    # Worker a learned web=0, app=1; worker b learned app=0, web=1.
    records = [text_record([0, 0, 1], ["web", "app", "__other__"], 0),
               text_record([0, 0, 0, 1], ["app", "web", "__other__"], 1)]
    states = [state(token, closed=10, windows=[r]) for token, r in zip("ab", records)]
    merged, index = merge_model(states, now=101.0, stale_after=5.0)
    ratios = window_stats(merged, index).value_ratios["channel"]
    assert ratios == pytest.approx({"web": 3 / 7, "app": 4 / 7})
