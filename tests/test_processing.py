"""Bulk processing of a stage: one bad batch refused, the others counted and sampled."""

import numpy as np
import pytest

from mlwatcher_exporter.buffer import WindowBuffer
from mlwatcher_exporter.counts import LifetimeCounts, RejectionCounts
from mlwatcher_exporter.processing import process_stage
from mlwatcher_exporter.schema import InputSchema
from mlwatcher_exporter.staging import (
    LABELS_CHECKED,
    LABELS_INDICES,
    LABELS_NONE,
    LABELS_RAW,
    Stage,
)


class Parts:
    def __init__(self, classes, capacity=1000):
        self.schema = InputSchema(classes, None, ())
        n_classes = self.schema.n_classes
        self.counts = LifetimeCounts(n_classes)
        self.logged = []
        self.refusals = RejectionCounts(lambda key, text: self.logged.append(text))
        self.window = WindowBuffer(capacity, n_classes, 0)

    def process(self, stage):
        process_stage(stage, self.schema, self.counts, self.refusals, self.window)


def stage_of(batches, n_classes=3, n_features=None):
    stage = Stage(100, n_classes, n_features)
    for proba, features, labels, kind, threshold in batches:
        stage.add(np.asarray(proba, dtype=float), features, labels, kind, threshold, None)
    return stage


def test_a_batch_of_non_probabilities_is_refused_whole_and_alone():
    parts = Parts(range(3))
    good = [[0.7, 0.2, 0.1]] * 2
    stage = stage_of([
        (good, None, np.array([0, 1]), LABELS_INDICES, 0.5),
        ([[np.nan, 0.5, 0.5], [0.1, 0.1, 0.8]], None, None, LABELS_NONE, 0.5),
        ([[1.5, 0.0, 0.0]], None, None, LABELS_NONE, 0.5),
        ([[0.1, 0.1, 0.8]], None, np.array([2]), LABELS_INDICES, 0.5),
    ])
    parts.process(stage)
    np.testing.assert_array_equal(parts.counts.predictions, [2, 0, 1])
    np.testing.assert_array_equal(parts.counts.correct, [1, 0, 1])
    rejected = parts.refusals.rejected()
    assert rejected["non_finite"] == 2 and rejected["out_of_range"] == 1
    assert parts.window.rows == 3 and parts.window.class_rows.tolist() == [2, 0, 1]


def test_bad_labels_of_one_batch_are_dropped_and_its_predictions_kept():
    parts = Parts(["cat", "dog"])
    proba = [[0.9, 0.1], [0.2, 0.8]]
    stage = stage_of([
        (proba, None, np.array([0, 7]), LABELS_INDICES, 0.5),
        (proba, None, ["cat", "cow"], LABELS_RAW, 0.5),
        (proba, None, ["cat", None], LABELS_RAW, 0.5),
        (proba, None, np.array([1, -1]), LABELS_CHECKED, 0.5),
    ], n_classes=2)
    parts.process(stage)
    np.testing.assert_array_equal(parts.counts.predictions, [4, 4])
    np.testing.assert_array_equal(parts.counts.labeled, [1, 1])  # batches 3 and 4
    assert parts.counts.correct.sum() == 1
    dropped = parts.refusals.dropped()
    assert dropped[("labels", "unknown_label")] == 4
    assert "labels has values in [0, 7], must be class indices in [0, 1]" in parts.logged[0]
    assert "cow" in parts.logged[1]


def test_a_borrowed_batch_keeps_the_callers_labels_untouched():
    parts = Parts(range(3))
    labels = np.array([0, 9, 1])
    stage = Stage.borrow(np.full((3, 3), 1 / 3), None, labels, LABELS_INDICES, 0.5)
    parts.process(stage)
    np.testing.assert_array_equal(labels, [0, 9, 1])
    assert parts.refusals.dropped()[("labels", "unknown_label")] == 3


def test_each_batch_keeps_its_own_threshold():
    parts = Parts(range(2))
    proba = [[0.4, 0.6], [0.25, 0.75]]
    stage = stage_of([(proba, None, None, LABELS_NONE, 0.5),
                      (proba, None, None, LABELS_NONE, 0.7),
                      ([[0.9, 0.1]], None, None, LABELS_NONE, 0.05)], n_classes=2)
    parts.process(stage)
    np.testing.assert_array_equal(parts.counts.predictions, [1, 4])


def test_top_probability_and_argmax_match_numpy():
    parts = Parts(range(4))
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(4), 50)
    parts.process(stage_of([(proba, None, None, LABELS_NONE, 0.5)], n_classes=4))
    np.testing.assert_array_equal(parts.counts.predictions,
                                  np.bincount(proba.argmax(axis=1), minlength=4))
    assert parts.counts.pred1_sum == pytest.approx(proba.max(axis=1).sum())
    sample = parts.window.sample()
    np.testing.assert_array_equal(sample.proba, proba)
    np.testing.assert_array_equal(sample.predicted, proba.argmax(axis=1))


def test_rows_without_features_are_marked_in_the_sample():
    parts = Parts(range(2))
    stage = stage_of([([[0.5, 0.5]], np.array([[3.0, 4.0]]), None, LABELS_NONE, 0.5),
                      ([[0.5, 0.5]] * 2, None, None, LABELS_NONE, 0.5)],
                     n_classes=2, n_features=2)
    parts.process(stage)
    sample = parts.window.sample()
    assert sample.has_features.tolist() == [True, False, False]
    np.testing.assert_array_equal(sample.features[0], [3.0, 4.0])


def test_an_empty_stage_changes_nothing():
    parts = Parts(range(2))
    parts.process(Stage(10, 2, None))
    assert parts.counts.predictions.sum() == 0 and parts.window.rows == 0
