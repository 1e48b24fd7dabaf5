"""Lifetime counts and refusal counts."""

import numpy as np

from mlwatcher_exporter import naming
from mlwatcher_exporter.counts import PRED1_EDGES, LifetimeCounts, RejectionCounts


def test_predictions_labels_and_hits_are_counted_per_class():
    counts = LifetimeCounts(3)
    predicted = np.array([0, 1, 2, 2, 1])
    labels = np.array([0, 2, 2, -1, 1])
    class_rows = counts.add(predicted, np.full(5, 0.6), labels)
    np.testing.assert_array_equal(class_rows, [1, 2, 2])
    np.testing.assert_array_equal(counts.predictions, [1, 2, 2])
    np.testing.assert_array_equal(counts.labeled, [1, 1, 2])  # by true class; -1 unlabeled
    np.testing.assert_array_equal(counts.correct, [1, 1, 1])
    counts.add(np.array([1]), np.array([0.9]), None)
    np.testing.assert_array_equal(counts.predictions, [1, 3, 2])
    np.testing.assert_array_equal(counts.labeled, [1, 1, 2])


def test_pred1_buckets_are_le_buckets():
    counts = LifetimeCounts(2)
    pred1 = np.array([0.1, 0.1000001, 0.5, 1.0, 1.0 + 5e-7])
    counts.add(np.zeros(5, dtype=np.intp), pred1, None)
    expected = np.zeros(PRED1_EDGES.size + 1, dtype=np.int64)
    expected[[0, 1, 4, 15, 16]] = 1  # an edge value falls in its own bucket (le)
    np.testing.assert_array_equal(counts.pred1_buckets, expected)
    assert counts.pred1_sum == float(pred1.sum())


def test_copy_is_independent():
    counts = LifetimeCounts(2)
    counts.add(np.array([1]), np.array([0.7]), np.array([1]))
    snapshot = counts.copy()
    counts.add(np.array([1, 0]), np.array([0.7, 0.8]), np.array([1, 1]))
    np.testing.assert_array_equal(snapshot.predictions, [0, 1])
    np.testing.assert_array_equal(snapshot.correct, [0, 1])
    assert snapshot.pred1_sum == 0.7 and snapshot.pred1_buckets.sum() == 1


def test_refusals_are_counted_by_reason_and_logged_per_reason():
    logged = []
    refusals = RejectionCounts(lambda key, text: logged.append((key, text)))
    assert set(refusals.rejected()) == set(naming.REJECT_REASONS)
    assert set(refusals.dropped()) == {
        (part, reason) for part, reasons in naming.DROP_REASONS.items() for reason in reasons}
    assert not any(refusals.rejected().values()) and not any(refusals.dropped().values())
    refusals.reject("shape", 0, "empty")  # a batch without rows still counts once
    refusals.reject("shape", 4, "bad")
    refusals.drop("features", "sparse", 7, "sparse")
    assert refusals.rejected()["shape"] == 5
    assert refusals.dropped()[("features", "sparse")] == 7
    assert [key for key, _ in logged] == ["reject:shape", "reject:shape", "drop:features:sparse"]
    assert logged[2][1] == "left out the features of a batch: sparse"
