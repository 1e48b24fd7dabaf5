"""WindowBuffer: the rows of one input stay together; sampled statistics are exact."""

import numpy as np

from mlwatcher_exporter.buffer import WindowBuffer
from mlwatcher_exporter.window import compute_window_stats, predicted_classes
from reference import assert_stats_equal, reference_stats


def _batch(start, n, rng):
    """Rows whose id can be read back from every array: proba, features and labels."""
    ids = np.arange(start, start + n)
    proba = rng.dirichlet(np.ones(3), size=n)
    features = np.column_stack([ids.astype(float), rng.normal(size=n)])
    labels = ids % 3
    return proba, features, labels, ids


def _add(buffer, proba, features, labels):
    predicted = predicted_classes(proba, 0.5)
    buffer.add(proba, predicted, np.bincount(predicted, minlength=3), features, labels)


def test_rows_of_one_input_stay_together():
    rng = np.random.default_rng(0)
    buffer = WindowBuffer(50, 3, random_state=0)
    all_proba = []
    start = 0
    for n in (10, 30, 200, 1, 500):
        proba, features, labels, _ = _batch(start, n, rng)
        _add(buffer, proba, features, labels)
        all_proba.append(proba)
        start += n
    all_proba = np.concatenate(all_proba)
    sample = buffer.sample()
    ids = sample.features[:, 0].astype(int)
    assert sample.proba.shape == (50, 3) and buffer.rows == start
    np.testing.assert_array_equal(sample.proba, all_proba[ids])
    np.testing.assert_array_equal(sample.labels, ids % 3)
    np.testing.assert_array_equal(sample.predicted, all_proba[ids].argmax(axis=1))
    np.testing.assert_array_equal(sample.class_rows,
                                  np.bincount(all_proba.argmax(axis=1), minlength=3))


def test_statistics_with_sampling_match_numpy_on_the_sample():
    rng = np.random.default_rng(5)
    buffer = WindowBuffer(400, 3, random_state=5)
    for start in range(0, 5000, 250):
        _add(buffer, *_batch(start, 250, rng)[:3])
    sample = buffer.sample()
    stats = compute_window_stats(sample, end_time=0.0, duration=1.0, feature_names=["id", "x"],
                                 categorical=[False, False], max_categories=5)
    ordered = np.sort(sample.proba, axis=1)
    assert stats.rows == 5000 and stats.sampled_rows == 400
    assert_stats_equal(stats.pred1, reference_stats(ordered[:, -1]))
    assert_stats_equal(stats.features["x"], reference_stats(sample.features[:, 1]))


def test_rows_without_features_or_labels_are_marked():
    rng = np.random.default_rng(1)
    buffer = WindowBuffer(100, 3, random_state=1)
    proba, features, labels, _ = _batch(0, 10, rng)
    _add(buffer, proba, None, None)
    _add(buffer, proba, features, labels)
    sample = buffer.sample()
    np.testing.assert_array_equal(sample.has_features, [False] * 10 + [True] * 10)
    np.testing.assert_array_equal(sample.labels[:10], [-1] * 10)


def test_reset_reuses_the_arrays():
    buffer = WindowBuffer(20, 3, random_state=0)
    proba, features, labels, _ = _batch(0, 30, np.random.default_rng(0))
    _add(buffer, proba, features, labels)
    arrays = (buffer.proba, buffer.features)
    buffer.reset(start=5.0)
    assert buffer.rows == 0 and buffer.start == 5.0 and buffer.class_rows.sum() == 0
    assert buffer.sample().proba.shape == (0, 3)
    _add(buffer, proba[:3], features[:3], labels[:3])
    assert buffer.proba is arrays[0] and buffer.features is arrays[1]
