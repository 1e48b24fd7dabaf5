"""InputSchema: classes and features learned once, atomically; bounded vocabularies."""

import threading

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from mlwatcher_exporter import ModelMonitor
from mlwatcher_exporter.errors import BatchValueError
from mlwatcher_exporter.schema import InputSchema, Vocabulary
from mlwatcher_exporter.tables import to_features


def table(frame_or_array, rows=None):
    rows = len(frame_or_array) if rows is None else rows
    return to_features(frame_or_array, rows, None)


def test_learn_classes_once_whoever_asks():
    schema = InputSchema(None, None, ())
    first = schema.learn_classes(3, 1)
    assert schema.n_classes == 3 and schema.learn_classes(5, 1) is first
    with pytest.raises(BatchValueError, match="at least 2 classes") as caught:
        InputSchema(None, None, ()).learn_classes(1, 4)
    assert caught.value.reason == "n_classes" and caught.value.rows == 4


def test_two_first_batches_of_different_widths_race_and_one_wins():
    """Many trials of two threads whose first batches differ in width: exactly one width
    is learned, the other batch is rejected as n_classes, nothing else is counted."""
    for trial in range(60):
        monitor = ModelMonitor(model=f"race{trial}", registry=None, background=False)
        barrier = threading.Barrier(2)
        kept = {}

        def first(width):
            barrier.wait(timeout=30)
            kept[width] = monitor.observe_quietly(np.full((width + 1, width), 1 / width))

        threads = [threading.Thread(target=first, args=(w,)) for w in (2, 3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        winner = monitor.n_classes
        loser = 5 - winner
        assert kept == {winner: True, loser: False}
        rejected = monitor.rejected_rows()
        assert rejected["n_classes"] == loser + 1 and sum(rejected.values()) == loser + 1
        stats = monitor.close_window()
        assert stats.rows == winner + 1 and stats.class_rows.size == winner


def test_an_empty_first_batch_teaches_nothing():
    monitor = ModelMonitor(model="empty", registry=None, background=False)
    monitor.observe(np.empty((0, 4)))
    assert monitor.watch(lambda X: np.empty((0, 5)))(np.empty((0, 2))).shape == (0, 5)
    assert monitor.n_classes is None and monitor.feature_names is None
    monitor.observe(np.full((2, 2), 0.5))
    assert monitor.n_classes == 2 and monitor.close_window().rows == 2


def test_a_frame_lacking_a_categorical_feature_leaves_nothing_learned():
    schema = InputSchema(None, None, ["colour"])
    with pytest.raises(BatchValueError, match="must include categorical_features 'colour'"):
        schema.learn_features(table(pd.DataFrame({"height": [1.0]})), 1)
    assert schema.n_features is None and schema.feature_names is None
    assert schema.categorical is None and schema.text_columns == []
    good = pd.DataFrame({"height": [1.0], "colour": ["red"], "size": [3]})
    schema.learn_features(table(good), 1)
    assert schema.feature_names == ["height", "colour", "size"] and schema.n_features == 3
    assert schema.categorical.tolist() == [False, True, False]
    assert schema.text_columns == [1]


def test_declared_names_are_kept_when_a_first_batch_does_not_fit():
    schema = InputSchema(None, ["a", "b"], [5])
    with pytest.raises(BatchValueError, match="n_features == 2"):
        schema.learn_features(table(np.ones((1, 3))), 1)
    with pytest.raises(BatchValueError, match="categorical_features index 5"):
        schema.learn_features(table(np.ones((1, 2))), 1)
    assert schema.feature_names == ["a", "b"] and schema.n_features is None


def test_later_batches_must_have_the_same_columns():
    schema = InputSchema(None, None, [0])
    schema.learn_features(table(pd.DataFrame({"x": [1], "y": [2.0]})), 1)
    schema.learn_features(table(pd.DataFrame({"x": [1], "y": [2.0]})), 1)
    with pytest.raises(BatchValueError, match="differ from feature_names"):
        schema.learn_features(table(pd.DataFrame({"y": [1], "x": [2.0]})), 1)
    with pytest.raises(BatchValueError, match="n_features == 2"):
        schema.learn_features(table(np.ones((1, 3))), 1)
    assert schema.categorical.tolist() == [True, False] and schema.plain_width == 2


@pytest.mark.parametrize("classes, index_labels", [
    (["cat", "dog"], True), (range(3), True), ([10, 20], False), ([0.5, 1.5], False),
])
def test_whether_integer_labels_are_indices(classes, index_labels):
    assert InputSchema(classes, None, ()).index_labels is index_labels


def test_adopt_classes():
    schema = InputSchema(None, None, ())
    assert schema.adopt_classes(["a", "b"], keep_known=True, owner="m") is True
    assert schema.adopt_classes(["x", "y"], keep_known=True, owner="m") is False
    assert schema.classes.classes.tolist() == ["a", "b"]
    with pytest.raises(ValueError, match="classes_ has 3 classes, must match n_classes == 2"):
        schema.adopt_classes([1, 2, 3], keep_known=False, owner="monitor 'm'")


def test_vocabulary_is_bounded_and_folds_the_rest_into_other():
    vocabulary = Vocabulary(size=2)
    codes = vocabulary.encode(np.array(["a", "b", None, "c", "a", np.nan, "d"], dtype=object))
    np.testing.assert_array_equal(codes, [0, 1, np.nan, 2, 0, np.nan, 2])
    assert vocabulary.value_names() == ["a", "b", "__other__"]
    vocabulary.encode(np.array([f"w{i}" for i in range(1000)], dtype=object))
    assert vocabulary.names == ["a", "b"]  # memory bounded whatever the traffic


def test_published_values_are_bounded_by_max_categories():
    monitor = ModelMonitor(model="cats", n_classes=2, registry=CollectorRegistry(),
                           background=False, max_categories=3)
    words = [f"w{i % 7}" for i in range(70)] + ["w0"] * 30
    monitor.observe(np.full((100, 2), 0.5), pd.DataFrame({"word": words}))
    ratios = monitor.close_window().value_ratios["word"]
    assert len(ratios) == 4 and "__other__" in ratios
    assert ratios["w0"] == pytest.approx(0.4) and sum(ratios.values()) == pytest.approx(1.0)
