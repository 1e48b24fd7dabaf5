"""The fleet counters: PromQL-style arithmetic on them equals scikit-learn and numpy."""

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from mlwatcher_exporter import ModelMonitor
from mlwatcher_exporter.counts import LifetimeCounts
from mlwatcher_exporter.fleetcounts import FleetLayout, spread12_of

N_CLASSES = 4


def stream(n=3000, seed=1):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, N_CLASSES, n)
    logits = rng.normal(size=(n, N_CLASSES))
    logits[np.arange(n), truth] += 1.5  # a model right most of the time, not always
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = truth.astype(float)
    labels[rng.random(n) >= 0.3] = np.nan  # 30 % labeled
    features = rng.normal(3.0, 2.0, size=(n, 3))
    features[rng.random((n, 3)) < 0.05] = np.nan
    return proba, labels, features


def value(registry, name, **labels):
    return registry.get_sample_value(name, {"model": "m", **labels})


def monitor(**kwargs):
    registry = CollectorRegistry()
    options = dict(model="m", n_classes=N_CLASSES, registry=registry, background=False,
                   feature_names=["a", "b", "c"])
    options.update(kwargs)
    return ModelMonitor(**options), registry


def from_counters(registry):
    """Precision, recall, F1 and accuracy as the README's queries compute them."""
    correct = np.array([value(registry, "mlwatcher_correct_predictions_total",
                              **{"class": str(c)}) for c in range(N_CLASSES)])
    by_true = np.array([value(registry, "mlwatcher_labeled_predictions_total",
                              **{"class": str(c)}) for c in range(N_CLASSES)])
    by_predicted = np.array([value(
        registry, "mlwatcher_labeled_predictions_by_predicted_class_total",
        **{"class": str(c)}) for c in range(N_CLASSES)])
    return (correct / by_predicted, correct / by_true,
            2 * correct / (by_true + by_predicted), correct.sum() / by_true.sum())


def expected(proba, labels):
    labeled = ~np.isnan(labels)
    y_true, y_pred = labels[labeled].astype(int), proba[labeled].argmax(axis=1)
    every = list(range(N_CLASSES))
    return (precision_score(y_true, y_pred, labels=every, average=None),
            recall_score(y_true, y_pred, labels=every, average=None),
            f1_score(y_true, y_pred, labels=every, average=None),
            accuracy_score(y_true, y_pred))


def test_precision_recall_f1_accuracy_from_counters_equal_scikit_learn():
    proba, labels, features = stream()
    m, registry = monitor()
    for start in range(0, len(proba), 100):
        part = slice(start, start + 100)
        m.observe(proba[part], features=features[part], labels=labels[part])
    got, want = from_counters(registry), expected(proba, labels)
    for name, g, w in zip(("precision", "recall", "f1", "accuracy"), got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, err_msg=name)
    # Not what the old counters alone gave: correct / all predictions is far lower.
    correct = sum(value(registry, "mlwatcher_correct_predictions_total", **{"class": str(c)})
                  for c in range(N_CLASSES))
    assert correct / len(proba) < 0.5 * want[3]
    m.close()


def test_late_labels_joined_by_id_feed_the_label_counters():
    proba, labels, _ = stream(n=1000, seed=2)
    m, registry = monitor(fleet={"confusion_matrix": True})
    ids = [f"r{i}" for i in range(len(proba))]
    m.observe(proba, ids=ids)
    labeled = np.flatnonzero(~np.isnan(labels))
    m.observe_labels([ids[i] for i in labeled], labels[labeled].astype(int))
    got, want = from_counters(registry), expected(proba, labels)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    y_true, y_pred = labels[labeled].astype(int), proba[labeled].argmax(axis=1)
    for t in range(N_CLASSES):
        for p in range(N_CLASSES):
            assert value(registry, "mlwatcher_confusion_matrix_rows_total",
                         true_class=str(t), predicted_class=str(p)) == \
                int(((y_true == t) & (y_pred == p)).sum())
    m.close()


def test_feature_mean_and_std_from_counters_equal_numpy():
    proba, labels, features = stream()
    m, registry = monitor(fleet={"feature_buckets": {"a": [0, 2, 4, 6]}})
    m.observe(proba, features=features, labels=labels)
    for column, name in enumerate("abc"):
        values = features[:, column]
        finite = values[np.isfinite(values)]
        count = value(registry, "mlwatcher_feature_values_total", feature=name)
        total = (value(registry, "mlwatcher_feature_value_sum_total", feature=name,
                       sign="positive")
                 - value(registry, "mlwatcher_feature_value_sum_total", feature=name,
                         sign="negative"))
        squares = value(registry, "mlwatcher_feature_value_squares_total", feature=name)
        assert count == finite.size
        assert value(registry, "mlwatcher_feature_missing_values_total",
                     feature=name) == values.size - finite.size
        mean = total / count
        assert mean == pytest.approx(finite.mean(), rel=1e-12)
        assert np.sqrt(squares / count - mean ** 2) == pytest.approx(finite.std(), rel=1e-9)
    finite = features[:, 0][np.isfinite(features[:, 0])]
    for edge in (0, 2, 4, 6):
        assert value(registry, "mlwatcher_feature_value_bucket", feature="a",
                     le=f"{edge:g}") == int((finite <= edge).sum())
    assert value(registry, "mlwatcher_feature_value_count", feature="a") == finite.size
    assert value(registry, "mlwatcher_feature_value_bucket", feature="b", le="+Inf") is None
    m.close()


def test_values_whose_square_overflows_are_missing_not_an_infinite_sum():
    proba, labels, features = stream(n=10)
    features[:] = 1.0
    features[0, 0], features[1, 0], features[2, 0] = 1e200, -1e200, np.inf
    m, registry = monitor()
    m.observe(proba, features=features)
    assert value(registry, "mlwatcher_feature_missing_values_total", feature="a") == 3
    assert value(registry, "mlwatcher_feature_values_total", feature="a") == 7
    assert value(registry, "mlwatcher_feature_value_squares_total", feature="a") == 7.0
    assert value(registry, "mlwatcher_feature_value_sum_total", feature="a",
                 sign="negative") == 0.0
    m.close()


def test_reference_edges_give_a_feature_histogram_the_profiles_bins(caplog):
    proba, labels, features = stream()
    m, registry = monitor(fleet={"feature_buckets": {"a": "reference", "b": [0, 3]}})
    assert value(registry, "mlwatcher_feature_value_count", feature="a") is None
    assert value(registry, "mlwatcher_feature_value_count", feature="b") == 0
    profile = m.fit_reference(features[:1000], proba[:1000])
    edges = [float(f"{e:.6g}") for e in profile.features["a"].edges]
    assert len(edges) == 9  # the profile's 10 quantile bins
    m.observe(proba[1000:], features=features[1000:])
    column = features[1000:, 0]
    finite = column[np.isfinite(column)]
    for edge in edges:
        assert value(registry, "mlwatcher_feature_value_bucket", feature="a",
                     le=f"{edge:g}" if edge == int(edge) else repr(edge)) == \
            int((finite <= edge).sum())
    assert value(registry, "mlwatcher_feature_value_count", feature="a") == finite.size
    # Once rows are counted, a new reference leaves the buckets alone, and says so.
    m.set_reference(profile)
    m2, registry2 = monitor(fleet={"feature_buckets": {"a": "reference"}})
    m2.observe(proba[:10], features=features[:10])
    with caplog.at_level("WARNING", logger="mlwatcher_exporter"):
        m2.set_reference(profile)
    assert "keep their edges" in caplog.text
    assert value(registry2, "mlwatcher_feature_value_count", feature="a") is None
    m.close()
    m2.close()


def test_spread12_histogram_and_configured_pred1_edges():
    proba, _, _ = stream(n=500)
    m, registry = monitor(fleet={"pred1_buckets": [0.5, 0.9, 0.99],
                                 "spread12_buckets": [0.1, 0.5]})
    m.observe(proba)
    pred1 = proba.max(axis=1)
    ordered = np.sort(proba, axis=1)
    spread = ordered[:, -1] - ordered[:, -2]
    for edge in (0.5, 0.9, 0.99):
        assert value(registry, "mlwatcher_prediction_pred1_bucket",
                     le=f"{edge:g}") == int((pred1 <= edge).sum())
    assert value(registry, "mlwatcher_prediction_pred1_bucket", le="0.95") is None
    for edge in (0.1, 0.5):
        assert value(registry, "mlwatcher_prediction_spread12_bucket",
                     le=f"{edge:g}") == int((spread <= edge).sum())
    assert value(registry, "mlwatcher_prediction_spread12_sum") == pytest.approx(spread.sum())
    m.close()


def test_confusion_matrix_is_off_by_default_and_capped():
    counts = LifetimeCounts(3)
    assert counts.confusion.size == 0
    assert LifetimeCounts(3, FleetLayout(confusion_matrix=True)).confusion.size == 9
    assert LifetimeCounts(30, FleetLayout(confusion_matrix=True,
                                          confusion_max_classes=20)).confusion.size == 0


def test_copy_copies_every_array():
    counts = LifetimeCounts(2, FleetLayout(confusion_matrix=True))
    counts.add(np.array([0, 1]), np.array([0.9, 0.8]), np.array([1, 1]))
    other = counts.copy()
    assert set(vars(other)) == set(vars(counts))
    for name, array in vars(counts).items():
        if isinstance(array, np.ndarray):
            assert vars(other)[name] is not array and np.array_equal(vars(other)[name], array)
    counts.add(np.array([0]), np.array([0.9]), np.array([0]))
    assert other.labeled_by_predicted.tolist() == [1, 1]
    assert counts.labeled_by_predicted.tolist() == [2, 1]


def test_binary_spread12_is_the_difference():
    proba = np.array([[0.2, 0.8], [0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_allclose(spread12_of(proba, proba.max(axis=1)), [0.6, 0.0, 1.0])


def test_declared_features_are_published_at_zero_before_any_row():
    m, registry = monitor(categorical_features=["c"])
    m.observe(np.full((2, N_CLASSES), 1 / N_CLASSES))  # predictions, no features yet
    assert value(registry, "mlwatcher_feature_values_total", feature="a") == 0
    assert value(registry, "mlwatcher_feature_values_total", feature="c") is None
    m.observe(np.full((2, N_CLASSES), 1 / N_CLASSES), features=[[1, 2, 3], [4, 5, 6]])
    assert value(registry, "mlwatcher_feature_values_total", feature="b") == 2
    assert value(registry, "mlwatcher_feature_value_squares_total", feature="b") == 29
    m.close()
