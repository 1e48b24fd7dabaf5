"""The request path: what Intake stages, refuses or drops, and the inputs real
scikit-learn services pass (np.matrix, masked arrays, sparse matrices, DataFrames with
text and categorical columns, +/-inf), each monitored rather than rejected whole."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from prometheus_client import CollectorRegistry, generate_latest

from mlwatcher_exporter import ModelMonitor
from mlwatcher_exporter.counts import RejectionCounts
from mlwatcher_exporter.errors import BatchValueError
from mlwatcher_exporter.intake import Intake
from mlwatcher_exporter.schema import InputSchema
from mlwatcher_exporter.staging import Staging


def make_monitor(registry, clock, **kwargs):
    options = dict(model="m", n_classes=3, window_seconds=10.0, reservoir_size=5000,
                   registry=registry, background=False, random_state=0, _clock=clock)
    options.update(kwargs)
    return ModelMonitor(**options)


def uniform(n, width=3):
    return np.full((n, width), 1 / width)


class Parts:
    """An Intake over real staging and counts, without a monitor."""

    def __init__(self, clock, schema):
        self.schema = schema
        self.staging = Staging(clock, 10.0, lambda: None)
        self.refusals = RejectionCounts(lambda key, text: None)
        self.drains = 0
        self.intake = Intake(schema, self.staging, self.refusals, self._drain, self._learned)
        if schema.n_classes is not None:
            self._learned()

    def _drain(self):
        self.drains += 1
        for item in self.staging.take(False):
            if not isinstance(item, tuple):
                self.staging.release(item)

    def _learned(self):
        self.staging.configure(self.schema.n_classes, self.schema.n_features, 1 << 30)


def test_an_empty_batch_stages_nothing_and_teaches_nothing(clock):
    parts = Parts(clock, InputSchema(None, None, ()))
    assert parts.intake.offer(np.empty((0, 5)), None, None, 0.5, strict=True) is True
    assert parts.schema.n_classes is None and parts.staging.last_offer is None
    assert parts.intake.offer(uniform(2, 2), None, None, 0.5, strict=True) is True
    assert parts.schema.n_classes == 2


def test_the_loser_of_the_first_batch_race_is_refused(clock):
    """Two threads' first batches of 2 and 3 columns: the one that finds the classes
    learned by the other while it was learning must be refused, not staged into stages
    of the other width (it raised numpy's broadcast error, counted as internal)."""

    class RacedSchema(InputSchema):
        def learn_classes(self, width, rows):
            if self.classes is None:  # the other thread's batch, just before this one
                InputSchema.learn_classes(self, 2, 1)
            return InputSchema.learn_classes(self, width, rows)

    parts = Parts(clock, RacedSchema(None, None, ()))
    with pytest.raises(BatchValueError) as caught:
        parts.intake.offer(uniform(4), None, None, 0.5, strict=False)
    assert caught.value.reason == "n_classes"
    assert "proba has 3 columns, must have n_classes == 2" in str(caught.value)
    assert parts.refusals.rejected()["n_classes"] == 4
    assert parts.intake.offer(uniform(1, 2), None, None, 0.5, strict=False) is True


def test_the_caller_may_reuse_its_arrays_after_the_call(registry, clock):
    monitor = make_monitor(registry, clock)
    proba = np.array([[0.8, 0.1, 0.1]] * 5)
    features = np.ones((5, 2))
    labels = np.zeros(5, dtype=int)
    monitor.observe_quietly(proba, features, labels)
    proba[:] = [0.1, 0.1, 0.8]
    features[:] = 7.0
    labels[:] = 2
    stats = monitor.close_window()
    np.testing.assert_array_equal(stats.class_rows, [5, 0, 0])
    assert stats.features["f0"]["mean"] == 1.0 and stats.scores.accuracy == 1.0


def test_quiet_calls_drop_the_unusable_part_strict_calls_reject(registry, clock):
    monitor = make_monitor(registry, clock)
    monitor.observe(uniform(2), np.ones((2, 2)))  # learns two features
    assert monitor.observe_quietly(uniform(3), np.ones((3, 4)), [0, 1, 9]) is True
    assert monitor.dropped_rows()[("features", "n_features")] == 3
    assert monitor.dropped_rows()[("labels", "unknown_label")] == 3
    with pytest.raises(ValueError, match="features has 4 columns, must have n_features == 2"):
        monitor.observe(uniform(3), np.ones((3, 4)))
    assert monitor.rejected_rows()["n_features"] == 3
    stats = monitor.close_window()
    assert stats.rows == 5 and stats.scores is None


# ---------------------------------------------------------------------- labels (issue 8)

@pytest.mark.parametrize("quiet", [False, True])
def test_integer_class_indices_are_labels_when_class_names_are_strings(registry, clock, quiet):
    monitor = make_monitor(registry, clock, n_classes=None, class_names=["cat", "dog", "emu"])
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    for labels in ([0, 2, 0], np.array([0, 2, 0]), ["cat", "emu", "cat"]):
        if quiet:
            assert monitor.observe_quietly(proba, None, labels)
        else:
            monitor.observe(proba, None, labels)
    scores = monitor.close_window().scores
    assert scores.labeled_rows == 9 and scores.accuracy == pytest.approx(2 / 3)
    assert registry.get_sample_value("mlwatcher_labeled_predictions_total",
                                     {"model": "m", "class": "cat"}) == 6


def test_labels_nan_and_an_unknown_index_name_the_real_values(registry, clock):
    monitor = make_monitor(registry, clock)
    with pytest.raises(ValueError) as caught:
        monitor.observe(uniform(2), None, [np.nan, 5])
    assert "values in [5, 5]" in str(caught.value) and "nan" not in str(caught.value)
    monitor.observe_quietly(uniform(2), None, [np.nan, 5])
    assert monitor.dropped_rows()[("labels", "unknown_label")] == 2
    assert monitor.close_window().rows == 2


# ---------------------------------------------------------------------- inputs (issue 8)

@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_a_1024_row_matrix_batch_reports_1024_rows(registry, clock):
    monitor = make_monitor(registry, clock)
    rng = np.random.default_rng(0)
    proba = np.matrix(rng.dirichlet(np.ones(3), 1024))
    predict_proba = monitor.watch(lambda X: proba)
    assert predict_proba(np.matrix(rng.normal(size=(1024, 2)))) is proba
    stats = monitor.close_window()
    assert stats.rows == 1024 and int(stats.class_rows.sum()) == 1024
    np.testing.assert_array_equal(
        stats.class_rows, np.bincount(np.asarray(proba).argmax(axis=1), minlength=3))
    assert stats.sampled_rows == 1024 and set(stats.features) == {"f0", "f1"}
    assert sum(monitor.rejected_rows().values()) == 0
    assert sum(monitor.dropped_rows().values()) == 0


def test_infinite_features_are_missing_and_never_published(registry, clock):
    monitor = make_monitor(registry, clock)
    features = np.array([[1.0, np.inf], [3.0, -np.inf], [np.inf, 2.0], [5.0, 4.0]])
    monitor.observe(uniform(4), features)
    stats = monitor.close_window()
    assert stats.features["f0"]["mean"] == 3.0 and stats.features["f0"]["max"] == 5.0
    assert stats.features["f1"]["mean"] == 3.0
    assert stats.missing_ratio == {"f0": 0.25, "f1": 0.5}
    text = generate_latest(registry).decode()
    samples = [line for line in text.splitlines()
               if line.startswith("mlwatcher_") and "_bucket" not in line]
    assert samples and not [s for s in samples if s.endswith(("Inf", "NaN"))]


def test_masked_arrays_honour_their_mask(registry, clock):
    monitor = make_monitor(registry, clock)
    features = np.ma.masked_array([[1.0, 10], [1e9, 20], [3.0, 30]],
                                  mask=[[0, 0], [1, 0], [0, 0]])
    labels = np.ma.masked_array([0, 1, 1], mask=[False, True, False])
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]])
    assert monitor.watch(lambda X: proba)(features) is proba
    monitor.observe(proba, features, labels)
    stats = monitor.close_window()
    assert stats.rows == 6
    assert stats.features["f0"]["max"] == 3.0 and stats.missing_ratio["f0"] == pytest.approx(1 / 3)
    assert stats.scores.labeled_rows == 2 and stats.scores.accuracy == 1.0


def test_dataframe_text_and_categorical_columns_are_categorical_values(registry, clock):
    monitor = make_monitor(registry, clock)
    frame = pd.DataFrame({
        "age": [30.0, 40.0, 50.0, 60.0],
        "city": ["paris", "oslo", "paris", None],
        "plan": pd.Categorical(["gold", "free", "free", "free"]),
        "active": [True, False, True, True],
    })
    predict_proba = monitor.watch(lambda X: uniform(len(X)))
    predict_proba(frame)
    stats = monitor.close_window()
    assert monitor.feature_names == ["age", "city", "plan", "active"]
    assert stats.rows == 4 and stats.features["age"]["mean"] == 45.0
    # Shares among the present values; the missing share is published beside them.
    assert stats.value_ratios["city"] == {"paris": pytest.approx(2 / 3),
                                          "oslo": pytest.approx(1 / 3)}
    assert stats.missing_ratio["city"] == 0.25
    assert stats.value_ratios["plan"] == {"gold": 0.25, "free": 0.75}
    assert stats.value_ratios["active"] == {"True": 0.75, "False": 0.25}
    assert sum(monitor.dropped_rows().values()) == 0
    text = generate_latest(registry).decode()
    assert 'feature="city"' in text and 'value="paris"' in text


def test_text_values_beyond_max_categories_are_other(registry, clock):
    monitor = make_monitor(registry, clock, max_categories=2)
    frame = pd.DataFrame({"word": ["a"] * 5 + ["b"] * 3 + ["c", "d"]})
    monitor.observe(uniform(10), frame)
    ratios = monitor.close_window().value_ratios["word"]
    assert ratios == {"a": 0.5, "b": 0.3, "__other__": pytest.approx(0.2)}


def test_a_sparse_matrix_keeps_its_predictions_and_drops_its_features(registry, clock):
    monitor = make_monitor(registry, clock)
    X = scipy.sparse.random(6, 1000, density=0.01, format="csr", random_state=0)
    proba = np.array([[0.8, 0.1, 0.1]] * 6)
    assert monitor.watch(lambda X: proba)(X) is proba
    assert registry.get_sample_value("mlwatcher_predictions_total",
                                     {"model": "m", "class": "0"}) == 6
    assert monitor.dropped_rows()[("features", "sparse")] == 6
    with pytest.raises(TypeError, match="sparse"):
        monitor.observe(proba, X)  # strict: the batch is rejected, counted as "type"
    assert monitor.rejected_rows()["type"] == 6
    stats = monitor.close_window()
    assert stats.rows == 6 and stats.features == {}
    assert monitor.rejected_rows()["internal"] == 0


def test_a_sparse_proba_is_a_type_error_not_an_internal_one(registry, clock):
    monitor = make_monitor(registry, clock)
    proba = scipy.sparse.csr_matrix(uniform(2))
    assert monitor.watch(lambda X: proba)(np.ones((2, 2))) is proba
    with pytest.raises(TypeError, match="proba == csr_matrix"):
        monitor.observe(proba)
    assert monitor.rejected_rows()["type"] == 4 and monitor.rejected_rows()["internal"] == 0


def test_datetime_columns_are_unix_seconds_and_complex_ones_are_dropped(registry, clock):
    monitor = make_monitor(registry, clock)
    frame = pd.DataFrame({"when": pd.to_datetime([10, 20], unit="s")})
    monitor.observe(uniform(2), frame)
    assert monitor.close_window().features["when"]["mean"] == 15.0
    other = make_monitor(CollectorRegistry(), clock)
    assert other.observe_quietly(uniform(2), np.array([[1 + 2j], [3j]]))
    assert other.dropped_rows()[("features", "type")] == 2
    with pytest.raises(TypeError, match="must hold real numbers"):
        other.observe(uniform(2), np.array([[1 + 2j], [3j]]))
    assert other.close_window().rows == 2


@pytest.mark.parametrize("odd", [
    np.array([[2**70, 1, 0]] * 1024, dtype=object),
    np.full((1024, 3), np.iinfo(np.int64).max),
    np.array([["a", "b", "c"]] * 1024),
    np.zeros((1024, 3), dtype="M8[s]"),
    np.zeros((1024, 3), dtype=complex),
    np.zeros((1024, 3, 1)),
])
def test_odd_1024_row_proba_is_a_clear_error_and_keeps_the_window_clean(registry, clock, odd):
    monitor = make_monitor(registry, clock)
    monitor.observe(uniform(5))
    with pytest.raises((ValueError, TypeError)) as caught:
        monitor.observe(odd)
    assert str(caught.value).startswith("proba")
    assert monitor.watch(lambda X: odd)(np.ones((1024, 2))) is odd
    stats = monitor.close_window()
    assert stats.rows == 5 and int(stats.class_rows.sum()) == 5
    assert sum(monitor.rejected_rows().values()) == 2048
    assert monitor.rejected_rows()["internal"] == 0


@pytest.mark.parametrize("proba, features, labels", [
    ([[0.2, 0.3, 0.5]], None, None),  # not an ndarray
    (uniform(1, 2), None, None),  # another width
    (np.ones((1, 3), dtype=np.int64), None, None),  # not floats
    (uniform(0), None, None),  # empty
    (uniform(1), np.ones((1, 4)), None),  # other feature columns than learned
    (uniform(1), pd.DataFrame({"a": [1.0], "b": [2.0]}), None),  # needs conversion
    (uniform(1), np.array([["a", "b"]]), None),  # text
    (uniform(1), None, [1]),  # labels not an ndarray
    (uniform(1), None, np.array([1.0])),  # labels not integers
    (uniform(2), None, np.array([1])),  # labels of another length
])
def test_the_common_case_declines_everything_else_and_stages_nothing(clock, proba, features,
                                                                     labels):
    parts = Parts(clock, InputSchema(range(3), ["a", "b"], ()))
    assert parts.intake.offer_common(proba, features, labels, 0.5) is False
    assert parts.staging.last_offer is None and parts.staging.take(True) == []


def test_the_common_case_stages_learned_arrays_until_no_stage_is_free(clock, monkeypatch):
    parts = Parts(clock, InputSchema(None, None, ()))
    assert parts.intake.offer_common(uniform(1), None, None, 0.5) is False  # nothing learned
    parts.intake.offer(uniform(1), np.ones((1, 2)), None, 0.5, strict=False)
    labels = np.array([2])
    assert parts.intake.offer_common(uniform(1), np.ones((1, 2)), labels, 0.5) is True
    (stage,) = parts.staging.take(True)
    assert stage.n == 2 and stage.labels[:2].tolist() == [-1, 2]
    monkeypatch.setattr(parts.staging, "put", lambda *args: False)  # every stage full
    assert parts.intake.offer_common(uniform(1), None, None, 0.5) is False
