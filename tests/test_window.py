"""Window statistics against independent numpy and scikit-learn computations."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from mlwatcher_exporter.naming import OTHER_VALUE, STATS
from mlwatcher_exporter.window import (
    PAUSE_CELLS,
    WindowSample,
    compute_window_stats,
    describe,
    describe_columns,
    label_scores,
    predicted_classes,
    top_two,
    value_ratios,
)
from reference import assert_stats_equal, reference_stats


@pytest.mark.parametrize("seed", range(5))
def test_describe_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    values = rng.gamma(2.0, size=int(rng.integers(1, 3000)))
    assert_stats_equal(describe(values), reference_stats(values))


def test_describe_columns_ignores_nan_per_column():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(500, 4))
    matrix[rng.random(500) < 0.3, 1] = np.nan
    matrix[:, 3] = np.nan
    result = describe_columns(matrix)
    for column in range(3):
        values = matrix[:, column]
        expected = reference_stats(values[~np.isnan(values)])
        assert_stats_equal({s: result[s][column] for s in STATS}, expected)
    assert all(np.isnan(result[s][3]) for s in STATS)


def test_top_two_and_ties():
    proba = np.array([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2], [1.0, 0.0, 0.0], [0.2, 0.2, 0.6]])
    pred1, spread12 = top_two(proba)
    np.testing.assert_allclose(pred1, [0.5, 0.4, 1.0, 0.6])
    # A tie at the top is no margin at all (the ancestor reported 0.2 for row 2).
    np.testing.assert_allclose(spread12, [0.2, 0.0, 1.0, 0.4])


def test_top_two_matches_sort_on_random_rows():
    proba = np.random.default_rng(3).dirichlet(np.ones(7), size=2000)
    ordered = np.sort(proba, axis=1)
    pred1, spread12 = top_two(proba)
    np.testing.assert_allclose(pred1, ordered[:, -1])
    np.testing.assert_allclose(spread12, ordered[:, -1] - ordered[:, -2])


def test_predicted_classes_binary_threshold_and_argmax():
    binary = np.array([[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]])
    np.testing.assert_array_equal(predicted_classes(binary, 0.5), [0, 1, 0])
    np.testing.assert_array_equal(predicted_classes(binary, 0.1), [1, 1, 1])
    multi = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    np.testing.assert_array_equal(predicted_classes(multi, 0.5), [2, 0])


@pytest.mark.parametrize("seed", range(5))
def test_label_scores_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 8))
    labels = rng.integers(0, n_classes, size=int(rng.integers(5, 800)))
    # Mostly right, sometimes wrong, and one class never predicted.
    noise = rng.integers(0, n_classes, labels.size)
    predicted = np.where(rng.random(labels.size) < 0.7, labels, noise)
    predicted[predicted == n_classes - 1] = 0
    scores = label_scores(predicted, labels, n_classes)
    every = list(range(n_classes))
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, labels=every, zero_division=0
    )
    np.testing.assert_allclose(scores.precision, precision)
    np.testing.assert_allclose(scores.recall, recall)
    np.testing.assert_allclose(scores.f1, f1)
    assert scores.accuracy == pytest.approx(accuracy_score(labels, predicted))
    assert scores.f1_macro == pytest.approx(
        f1_score(labels, predicted, labels=every, average="macro", zero_division=0)
    )
    for c in every:  # the ancestor's one-vs-rest accuracy
        expected = accuracy_score(labels == c, predicted == c)
        assert scores.class_accuracy[c] == pytest.approx(expected)
    assert scores.labeled_rows == labels.size


def test_value_ratios_folds_rare_values():
    values = np.array([1.0] * 5 + [2.0] * 3 + [3.0] * 1 + [4.0] * 1 + [np.nan] * 10)
    assert value_ratios(values, 2) == pytest.approx({"1": 0.5, "2": 0.3, OTHER_VALUE: 0.2})
    assert value_ratios(values, 10) == pytest.approx({"1": 0.5, "2": 0.3, "3": 0.1, "4": 0.1})
    assert value_ratios(np.array([0.5, 0.5]), 3) == {"0.5": 1.0}
    assert value_ratios(np.array([np.nan]), 3) == {}


def _sample(proba, labels, features=None, has_features=None, rows=None, threshold=0.5):
    predicted = predicted_classes(proba, threshold)
    class_rows = np.bincount(predicted, minlength=proba.shape[1])
    return WindowSample(proba, predicted, features, has_features, labels,
                        rows if rows is not None else len(proba), class_rows)


def test_compute_window_stats_every_number():
    rng = np.random.default_rng(11)
    proba = rng.dirichlet(np.ones(4), size=300)
    labels = rng.integers(0, 4, 300)
    labels[:50] = -1  # rows without labels
    features = np.column_stack([rng.normal(size=300), rng.integers(0, 3, 300).astype(float),
                                rng.exponential(size=300)])
    features[rng.random(300) < 0.1, 2] = np.nan
    has_features = np.ones(300, bool)
    has_features[-20:] = False
    stats = compute_window_stats(
        _sample(proba, labels, features, has_features),
        end_time=123.0, duration=60.0, feature_names=["a", "b", "c"],
        categorical=[False, True, False], max_categories=10,
    )
    ordered = np.sort(proba, axis=1)
    assert_stats_equal(stats.pred1, reference_stats(ordered[:, -1]))
    assert_stats_equal(stats.spread12, reference_stats(ordered[:, -1] - ordered[:, -2]))
    predicted = proba.argmax(axis=1)
    np.testing.assert_array_equal(stats.class_rows, np.bincount(predicted, minlength=4))
    np.testing.assert_allclose(stats.class_ratio, np.bincount(predicted, minlength=4) / 300)
    table = features[:-20]
    assert_stats_equal(stats.features["a"], reference_stats(table[:, 0]))
    c = table[:, 2]
    assert_stats_equal(stats.features["c"], reference_stats(c[~np.isnan(c)]))
    assert "b" not in stats.features
    assert stats.missing_ratio["c"] == pytest.approx(np.isnan(c).mean())
    assert stats.missing_ratio["a"] == 0.0
    values, counts = np.unique(table[:, 1], return_counts=True)
    assert stats.value_ratios["b"] == pytest.approx(
        {str(int(v)): n / len(table) for v, n in zip(values, counts)})
    assert stats.scores.labeled_rows == 250
    assert stats.scores.accuracy == pytest.approx(accuracy_score(labels[50:], predicted[50:]))
    assert (stats.end_time, stats.duration) == (123.0, 60.0)
    assert (stats.rows, stats.sampled_rows) == (300, 300)


def test_empty_window_has_no_statistics():
    stats = compute_window_stats(
        _sample(np.empty((0, 3)), np.empty(0, dtype=np.int64)),
        end_time=1.0, duration=1.0, feature_names=[], categorical=[], max_categories=10,
    )
    assert stats.rows == 0 and stats.sampled_rows == 0
    assert stats.pred1 is None and stats.spread12 is None and stats.class_ratio is None
    assert stats.scores is None and stats.features == {}
    np.testing.assert_array_equal(stats.class_rows, [0, 0, 0])


def test_class_ratio_uses_every_row_not_the_sample():
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    sample = WindowSample(proba, np.array([0, 1]), None, None, np.array([-1, -1]), rows=1000,
                          class_rows=np.array([600, 400]))
    stats = compute_window_stats(sample, end_time=0, duration=1, feature_names=[],
                                 categorical=[], max_categories=3)
    np.testing.assert_allclose(stats.class_ratio, [0.6, 0.4])
    assert stats.sampled_rows == 2 and stats.rows == 1000 and stats.scores is None


def test_pausing_in_blocks_changes_no_number():
    rng = np.random.default_rng(21)
    matrix = rng.normal(size=(40_000, 7))
    matrix[rng.random(40_000) < 0.01, 4] = np.nan
    pauses = []
    paused = describe_columns(matrix, pause=lambda: pauses.append(1))
    plain = describe_columns(matrix)
    # Six dense columns, one per block of PAUSE_CELLS (5,000) cells or, when a column is
    # larger, one column per block; then the column with NaN.
    assert len(pauses) == 7
    for stat in STATS:
        np.testing.assert_array_equal(paused[stat], plain[stat])


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")  # numpy's, describing 1e308s
def test_columns_whose_sums_overflow_are_described_as_their_values():
    # A finite column whose sum is +inf, or NaN (+inf and -inf halves), is not missing:
    # the cheap finiteness check only sends it down the exact path.
    big = np.array([[1e308, 1e308, 1.0], [1e308, -1e308, 2.0],
                    [1e308, 1e308, 3.0], [1e308, -1e308, np.inf]])
    sample = WindowSample(proba=np.full((4, 2), 0.5), predicted=np.zeros(4, dtype=np.intp),
                          features=big, has_features=np.ones(4, dtype=bool),
                          labels=np.full(4, -1), rows=4, class_rows=np.array([4, 0]))
    stats = compute_window_stats(sample, end_time=0, duration=1, feature_names=["a", "b", "c"],
                                 categorical=[False] * 3, max_categories=3, pause=lambda: None)
    assert stats.missing_ratio == {"a": 0.0, "b": 0.0, "c": 0.25}
    for name, column in (("a", big[:, 0]), ("b", big[:, 1]), ("c", big[:3, 2])):
        assert_stats_equal(stats.features[name], describe(column))
    assert np.isinf(big[3, 2])  # the sample itself is left as it was


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 9, 127, 128, 129, 1001, 10_000])
def test_describe_is_numpy_bit_for_bit(size):
    # describe sorts where np.quantile selects, and takes numpy's interpolation: the same
    # floats exactly, ties, repeated values and signed zeros included.
    rng = np.random.default_rng(size)
    for values in (rng.normal(size=size) * 10.0 ** rng.integers(-3, 4),
                   rng.integers(-3, 3, size).astype(float) * 0.0,
                   rng.choice([0.1, 0.2, 1e9], size)):
        expected = {"mean": np.mean(values), "std": np.std(values), "min": np.min(values),
                    "max": np.max(values)}
        expected.update(zip(("q25", "median", "q75"),
                            np.quantile(values, [0.25, 0.5, 0.75])))
        expected["range"] = expected["max"] - expected["min"]
        expected["iqr"] = expected["q75"] - expected["q25"]
        actual = describe(values)
        assert actual == {stat: float(expected[stat]) for stat in STATS}


def test_long_columns_are_described_one_by_one_as_short_ones_in_blocks():
    rng = np.random.default_rng(5)
    long = rng.gamma(2.0, size=(3 * PAUSE_CELLS, 3))
    long[::7, 1] = np.nan
    pauses = []
    one_by_one = describe_columns(long, pause=lambda: pauses.append(1))
    assert len(pauses) == 3
    blocked = describe_columns(long)  # no pause: one vectorised block for dense columns
    for stat in STATS:
        np.testing.assert_array_equal(one_by_one[stat], blocked[stat])


def test_nan_columns_given_by_the_caller_change_no_number():
    rng = np.random.default_rng(8)
    matrix = rng.normal(size=(12_000, 4))
    matrix[::5, 2] = np.nan
    found = describe_columns(matrix, pause=lambda: None)
    given = describe_columns(matrix, pause=lambda: None,
                             nan_columns=np.array([False, False, True, False]))
    for stat in STATS:
        np.testing.assert_array_equal(found[stat], given[stat])
