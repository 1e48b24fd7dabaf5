"""The single-row fast path: staged rows are counted and sampled exactly like batches."""

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mlwatcher_exporter import ModelMonitor


def make(clock, n_classes=4, **kwargs):
    registry = CollectorRegistry()
    options = dict(model="m", n_classes=n_classes, window_seconds=10.0, reservoir_size=100_000,
                   registry=registry, background=False, random_state=0, _clock=clock,
                   _wall_clock=lambda: 1_700_000_000.0 + clock())
    options.update(kwargs)
    return ModelMonitor(**options), registry


def exposition(registry):
    """Every sample line but the timing, and the histogram sum, whose float rounding
    depends on how rows were grouped into batches (numpy sums a batch pairwise)."""
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if "compute_duration" not in line and "pred1_sum" not in line]


def pred1_sum(registry):
    return registry.get_sample_value("mlwatcher_prediction_pred1_sum", {"model": "m"})


@pytest.mark.parametrize("n_classes", [2, 5])
def test_rows_one_by_one_publish_what_one_batch_publishes(clock, n_classes):
    rng = np.random.default_rng(3)
    n = 700  # more than a stage, so the stage fills and flushes on its own
    proba = rng.dirichlet(np.ones(n_classes), n)
    features = rng.normal(size=(n, 3))
    features[rng.random(features.shape) < 0.1] = np.nan
    labels = rng.integers(0, n_classes, n)
    batched, batched_registry = make(clock, n_classes)
    single, single_registry = make(clock, n_classes)
    batched.observe(proba[:1], features[:1], labels[:1])  # the first batch names the features
    single.observe(proba[:1], features[:1], labels[:1])
    batched.observe(proba[1:400], features[1:400])
    batched.observe(proba[400:], None, labels[400:])
    for i in range(1, n):
        single.observe(proba[i:i + 1], features[i:i + 1] if i < 400 else None,
                       None if i < 400 else labels[i:i + 1])
    assert exposition(single_registry) == exposition(batched_registry)  # counters, pre-close
    assert pred1_sum(single_registry) == pytest.approx(pred1_sum(batched_registry), rel=1e-12)
    ours, theirs = single.close_window(), batched.close_window()
    assert ours.rows == theirs.rows == n
    np.testing.assert_array_equal(ours.class_rows, theirs.class_rows)
    assert ours.pred1 == pytest.approx(theirs.pred1)
    assert ours.features.keys() == theirs.features.keys()
    for name, stats in theirs.features.items():
        assert ours.features[name] == pytest.approx(stats)
    assert ours.scores.accuracy == theirs.scores.accuracy
    assert exposition(single_registry) == exposition(batched_registry)


def test_staged_rows_stay_in_their_window(clock):
    monitor, _ = make(clock)
    row = np.array([[0.1, 0.2, 0.3, 0.4]])
    for _ in range(3):
        monitor.observe(row, labels=[3])
    clock.advance(10.0)
    monitor.observe(row)  # the next window
    monitor.tick()
    assert monitor.last_window.rows == 3 and monitor.last_window.scores.labeled_rows == 3
    assert monitor.close_window().rows == 1


@pytest.mark.parametrize("bad, reason", [
    (np.array([[0.1, np.nan, 0.3, 0.6]]), "non_finite"),
    (np.array([[0.1, 0.2, 0.3, 1.5]]), "out_of_range"),
    (np.array([[0.5, 0.5, 0.0]]), "n_classes"),
])
def test_bad_single_rows_still_raise_and_count(clock, bad, reason):
    monitor, _ = make(clock)
    monitor.observe(np.array([[0.1, 0.2, 0.3, 0.4]]))
    with pytest.raises(ValueError, match="proba"):
        monitor.observe(bad)
    assert monitor.rejected_rows()[reason] == 1


def test_bad_single_labels_and_features_still_raise(clock):
    monitor, _ = make(clock)
    monitor.observe(np.array([[0.1, 0.2, 0.3, 0.4]]), np.zeros((1, 2)), [1])
    with pytest.raises(ValueError, match="labels"):
        monitor.observe(np.array([[0.1, 0.2, 0.3, 0.4]]), np.zeros((1, 2)), [7])
    with pytest.raises(ValueError, match="features"):
        monitor.observe(np.array([[0.1, 0.2, 0.3, 0.4]]), np.zeros((1, 3)), [1])
    rejected = monitor.rejected_rows()
    assert rejected["unknown_label"] == 1 and rejected["n_features"] == 1
    assert monitor.close_window().rows == 1


def test_small_batches_are_staged_and_publish_what_one_batch_publishes(clock):
    rng = np.random.default_rng(8)
    n = 1500
    proba = rng.dirichlet(np.ones(4), n)
    features = rng.normal(size=(n, 2))
    labels = rng.integers(0, 4, n)
    batched, batched_registry = make(clock)
    staged, staged_registry = make(clock)
    batched.observe(proba, features, labels)
    start = 0
    for size in rng.integers(2, 120, size=100):
        end = min(n, start + int(size))
        staged.observe(proba[start:end], features[start:end], labels[start:end])
        start = end
        if start == n:
            break
    staged.observe(proba[start:], features[start:], labels[start:])
    assert exposition(staged_registry) == exposition(batched_registry)
    assert pred1_sum(staged_registry) == pytest.approx(pred1_sum(batched_registry), rel=1e-12)
    ours, theirs = staged.close_window(), batched.close_window()
    np.testing.assert_array_equal(ours.class_rows, theirs.class_rows)
    assert ours.scores.accuracy == theirs.scores.accuracy
    assert ours.features["f0"] == pytest.approx(theirs.features["f0"])
