"""ModelMonitor: windows on a hand-driven clock, counters, validation, thread safety."""

import threading

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from mlwatcher_exporter import BatchValueError, ModelMonitor
from mlwatcher_exporter import staging
from mlwatcher_exporter.config import check_monitor_arguments
from reference import assert_stats_equal, reference_stats


def make_monitor(registry, clock, **kwargs):
    options = dict(model="m", n_classes=3, window_seconds=10.0, reservoir_size=1000,
                   registry=registry, background=False, random_state=0, _clock=clock,
                   _wall_clock=lambda: 1_700_000_000.0 + clock())
    options.update(kwargs)
    return ModelMonitor(**options)


def batch(rng, n, n_classes=3, n_features=2):
    return (rng.dirichlet(np.ones(n_classes), size=n), rng.normal(size=(n, n_features)),
            rng.integers(0, n_classes, n))


def test_window_statistics_without_sampling_are_exact(registry, clock):
    monitor = make_monitor(registry, clock)
    rng = np.random.default_rng(0)
    parts = [batch(rng, n) for n in (5, 300, 1, 94)]
    for proba, features, labels in parts:
        monitor.observe(proba, features, labels)
    clock.advance(10.0)
    monitor.tick()
    stats = monitor.last_window
    proba = np.concatenate([p for p, _, _ in parts])
    features = np.concatenate([f for _, f, _ in parts])
    labels = np.concatenate([y for _, _, y in parts])
    assert stats.rows == stats.sampled_rows == 400
    assert_stats_equal(stats.pred1, reference_stats(proba.max(axis=1)))
    assert_stats_equal(stats.features["f1"], reference_stats(features[:, 1]))
    assert stats.scores.accuracy == pytest.approx(accuracy_score(labels, proba.argmax(axis=1)))
    assert stats.duration == 10.0
    assert stats.end_time == pytest.approx(1_700_000_000.0 + 1010.0)


def test_sampling_bounds_the_sample_but_counts_every_row(registry, clock):
    monitor = make_monitor(registry, clock, reservoir_size=100)
    rng = np.random.default_rng(1)
    all_predicted = []
    for _ in range(20):
        proba, features, labels = batch(rng, 250)
        monitor.observe(proba, features, labels)
        all_predicted.append(proba.argmax(axis=1))
    stats = monitor.close_window()
    assert stats.rows == 5000 and stats.sampled_rows == 100 and stats.scores.labeled_rows == 100
    np.testing.assert_array_equal(stats.class_rows,
                                  np.bincount(np.concatenate(all_predicted), minlength=3))


def test_windows_tumble_and_empty_windows_publish_no_statistics(registry, clock):
    monitor = make_monitor(registry, clock)
    rng = np.random.default_rng(2)
    monitor.observe(*batch(rng, 10))
    clock.advance(9.9)
    monitor.tick()
    assert monitor.last_window is None  # the first window is not over yet
    clock.advance(0.2)
    monitor.observe(*batch(rng, 7))  # belongs to the second window
    first = monitor.last_window
    monitor.tick()
    first = monitor.last_window
    assert first.rows == 10
    clock.advance(10.0)
    monitor.tick()
    assert monitor.last_window.rows == 7
    clock.advance(35.0)  # three whole windows without a batch
    monitor.tick()
    empty = monitor.last_window
    assert empty.rows == 0 and empty.pred1 is None and empty.scores is None
    assert empty.duration == 10.0
    assert empty.end_time == pytest.approx(1_700_000_000.0 + 1050.0)


def test_close_window_returns_a_partial_window_and_restarts(registry, clock):
    monitor = make_monitor(registry, clock)
    rng = np.random.default_rng(3)
    monitor.observe(*batch(rng, 10))
    clock.advance(4.0)
    stats = monitor.close_window()
    assert stats.rows == 10 and stats.duration == 4.0
    clock.advance(9.0)
    monitor.tick()
    assert monitor.last_window is stats  # the new window started at the close
    clock.advance(1.0)
    assert monitor.close_window().rows == 0


def test_bad_batch_raises_and_is_counted(registry, clock):
    monitor = make_monitor(registry, clock)
    with pytest.raises(ValueError, match=r"proba has 2 columns, must have n_classes == 3"):
        monitor.observe(np.full((4, 2), 0.5))
    with pytest.raises(ValueError, match="labels"):
        monitor.observe(np.full((2, 3), 1 / 3), labels=[0, 7])
    with pytest.raises(TypeError, match="features"):
        monitor.observe(np.full((2, 3), 1 / 3), features=[["a", "b"], ["c", "d"]])
    assert monitor.rejected_rows() == {**{r: 0 for r in monitor.rejected_rows()},
                                       "n_classes": 4, "unknown_label": 2, "type": 2}
    assert monitor.close_window().rows == 0  # nothing of a bad batch is kept


def test_observe_quietly_never_raises(registry, clock, caplog):
    monitor = make_monitor(registry, clock)
    for _ in range(5):  # staged: values are checked in bulk, off the caller's thread
        assert monitor.observe_quietly(np.full((3, 3), np.nan)) is True
    assert monitor.observe_quietly(np.full((1, 4), 1 / 4)) is False  # a shape: at once
    assert monitor.observe_quietly(np.full((1, 3), 1 / 3)) is True
    assert monitor.rejected_rows()["non_finite"] == 15
    assert monitor.rejected_rows()["n_classes"] == 1
    assert monitor.close_window().rows == 1
    # Logged at a bounded rate: one message per reason for six rejections.
    assert sum("rejected a batch" in r.message for r in caplog.records) == 2


def test_classes_from_first_batch_and_class_names(registry, clock):
    monitor = make_monitor(registry, clock, n_classes=None)
    monitor.observe(np.array([[0.1, 0.9]]))
    assert monitor.n_classes == 2 and monitor.class_labels == ["0", "1"]
    with pytest.raises(BatchValueError):
        monitor.observe(np.full((1, 3), 1 / 3))
    named = make_monitor(registry, clock, model="named", n_classes=None,
                         class_names=["cat", "dog", "emu"])
    named.observe(np.array([[0.1, 0.8, 0.1]]), labels=["dog"])
    assert named.close_window().scores.accuracy == 1.0


def test_binary_threshold(registry, clock):
    monitor = make_monitor(registry, clock, n_classes=2, threshold=0.8)
    monitor.observe(np.array([[0.3, 0.7], [0.1, 0.9]]))
    np.testing.assert_array_equal(monitor.close_window().class_rows, [1, 1])


def test_dataframe_features_name_the_features(registry, clock):
    monitor = make_monitor(registry, clock, categorical_features=["colour"])
    frame = pd.DataFrame({"height": [1.0, 2.0, np.nan, 4.0], "colour": [1, 1, 2, 3]})
    monitor.observe(np.full((4, 3), 1 / 3), frame)
    stats = monitor.close_window()
    assert monitor.feature_names == ["height", "colour"]
    assert stats.features["height"]["mean"] == pytest.approx(7 / 3)
    assert stats.missing_ratio["height"] == 0.25
    assert stats.value_ratios["colour"] == {"1": 0.5, "2": 0.25, "3": 0.25}


def test_integer_features_are_continuous_unless_declared(registry, clock):
    """The ancestor made every integer column discrete; pixel counts deserve statistics."""
    monitor = make_monitor(registry, clock)
    monitor.observe(np.full((4, 3), 1 / 3), np.array([[0, 5], [16, 5], [8, 6], [4, 6]]))
    stats = monitor.close_window()
    assert stats.features["f0"]["median"] == 6.0 and stats.value_ratios == {}


@pytest.mark.parametrize("kwargs, words", [
    (dict(window_seconds=0), "window_seconds == 0, must be a number of seconds > 0"),
    (dict(reservoir_size=0), "reservoir_size == 0, must be an int >= 1"),
    (dict(threshold=2), "threshold == 2, must be a number in [0, 1]"),
    (dict(n_classes=1), "n_classes == 1"),
    (dict(n_classes=3, class_names=["a", "b"]), "class_names has 2 names"),
    (dict(model=""), "model == ''"),
])
def test_bad_arguments_are_named(registry, clock, kwargs, words):
    with pytest.raises(ValueError) as caught:
        make_monitor(registry, clock, **kwargs)
    assert words in str(caught.value)


def test_concurrent_observers_scrapes_and_closes_conserve_every_row(registry, clock):
    monitor = make_monitor(registry, clock, reservoir_size=64, window_seconds=1e9)
    rng = np.random.default_rng(9)
    sizes = [rng.integers(1, 50, size=300) for _ in range(4)]
    batches = [[batch(np.random.default_rng(i * 1000 + j), int(n))[0] for j, n in enumerate(s)]
               for i, s in enumerate(sizes)]
    closed_rows = []
    done = threading.Event()

    def observer(own):
        for proba in own:
            monitor.observe(proba)

    def closer():
        while not done.is_set():
            closed_rows.append(monitor.close_window().rows)

    def scraper():
        while not done.is_set():
            list(registry.collect())

    workers = [threading.Thread(target=observer, args=(b,)) for b in batches]
    helpers = [threading.Thread(target=closer), threading.Thread(target=scraper)]
    for thread in workers + helpers:
        thread.start()
    for thread in workers:
        thread.join()
    done.set()
    for thread in helpers:
        thread.join()
    closed_rows.append(monitor.close_window().rows)
    total = int(sum(s.sum() for s in sizes))
    assert sum(closed_rows) == total
    assert registry.get_sample_value("mlwatcher_predictions_total", {"model": "m", "class": "0"}) \
        + registry.get_sample_value("mlwatcher_predictions_total", {"model": "m", "class": "1"}) \
        + registry.get_sample_value("mlwatcher_predictions_total", {"model": "m", "class": "2"}) \
        == total


def test_background_worker_publishes_on_time(registry):
    monitor = ModelMonitor(model="bg", n_classes=2, window_seconds=0.2, registry=registry)
    try:
        monitor.observe(np.array([[0.4, 0.6]] * 3))
        deadline = threading.Event()
        for _ in range(100):
            if monitor.last_window is not None:
                break
            deadline.wait(0.05)
        assert monitor.last_window is not None and monitor.last_window.rows == 3
    finally:
        monitor.close()
    assert registry.get_sample_value("mlwatcher_window_rows", {"model": "bg"}) is None


def test_from_config(registry, tmp_path):
    path = tmp_path / "m.yml"
    path.write_text("model: cfg\nn_classes: 4\nwindow_seconds: 5\nhttp: {port: 0}\n")
    monitor = ModelMonitor.from_config(str(path), registry=registry, background=False)
    assert (monitor.model, monitor.n_classes, monitor.window_seconds) == ("cfg", 4, 5.0)
    assert monitor.http_port == 0 and monitor.http_addr == "127.0.0.1"


def counted(monitor):
    """Rows the bulk processing has counted so far (without draining, unlike a read)."""
    counts = monitor._pipeline.counts
    return 0 if counts is None else int(counts.predictions.sum())


def test_batches_are_counted_off_the_request_path_and_exactly_when_read(registry, clock):
    monitor = make_monitor(registry, clock, reservoir_size=5000)
    rng = np.random.default_rng(12)
    predicted, truth = [], []
    for n in (300, 1024, 50):
        proba, features, labels = batch(rng, n)
        assert monitor.observe_quietly(proba, features, labels)
        predicted.append(proba.argmax(axis=1))
        truth.append(labels.copy())
        proba[:] = 0.0  # the caller reuses its buffers: the monitor kept its own copy
        labels[:] = 0
    assert counted(monitor) == 0  # the caller only copied
    predicted, truth = np.concatenate(predicted), np.concatenate(truth)
    expected = np.bincount(predicted, minlength=3)
    for index in range(3):
        labels = {"model": "m", "class": str(index)}
        assert registry.get_sample_value("mlwatcher_predictions_total", labels) == expected[index]
        assert registry.get_sample_value("mlwatcher_correct_predictions_total", labels) == \
            ((truth == index) & (predicted == index)).sum()
    assert counted(monitor) == 1374
    stats = monitor.close_window()
    np.testing.assert_array_equal(stats.class_rows, expected)
    assert stats.rows == 1374 and stats.sampled_rows == 1374
    assert stats.scores.labeled_rows == 1374
    np.testing.assert_allclose(stats.scores.accuracy, (truth == predicted).mean())


def test_a_batch_larger_than_a_stage_is_counted_before_the_call_returns(
        registry, clock, monkeypatch):
    monkeypatch.setattr(staging, "STAGE_BYTES", 1)  # stages of MIN_STAGE_ROWS rows
    monitor = make_monitor(registry, clock, reservoir_size=100)
    rng = np.random.default_rng(15)
    monitor.observe_quietly(batch(rng, 10)[0])
    assert counted(monitor) == 0
    proba = batch(rng, staging.MIN_STAGE_ROWS + 1)[0]
    monitor.observe_quietly(proba)
    # Not copied, so processed at once, after what was staged before it.
    assert counted(monitor) == staging.MIN_STAGE_ROWS + 11
    assert monitor.close_window().rows == staging.MIN_STAGE_ROWS + 11


def test_when_every_stage_is_full_the_caller_does_the_work(registry, clock, monkeypatch):
    monkeypatch.setattr(staging, "STAGE_BYTES", 1)  # stages of MIN_STAGE_ROWS rows
    monitor = make_monitor(registry, clock, reservoir_size=10)
    rng = np.random.default_rng(14)
    per_stage = staging.MIN_STAGE_ROWS // 100  # 100-row batches per stage
    for _ in range(per_stage * staging.POOL_SIZE):
        monitor.observe_quietly(batch(rng, 100)[0])
    assert counted(monitor) == 0  # every stage in use, nothing processed yet
    before = monitor._staging.nbytes
    monitor.observe_quietly(batch(rng, 100)[0])  # no stage free: its caller drains
    assert counted(monitor) == 100 * per_stage * staging.POOL_SIZE
    assert monitor._staging.nbytes == before  # nothing grew
    assert monitor.close_window().class_rows.sum() == 100 * (per_stage * staging.POOL_SIZE + 1)


def test_deferred_counts_of_a_superseded_window_stay_out_of_the_next(registry, clock):
    monitor = make_monitor(registry, clock)
    rng = np.random.default_rng(13)
    monitor.observe(batch(rng, 2000)[0])
    clock.advance(10)
    monitor.observe(batch(rng, 1500)[0])  # closes window 1 (not computed yet)
    clock.advance(10)
    monitor.observe(batch(rng, 1200)[0])  # closes window 2, superseding window 1
    clock.advance(10)
    monitor.tick()
    stats = monitor.last_window
    assert stats.rows == 1200 and stats.class_rows.sum() == 1200
    total = sum(registry.get_sample_value("mlwatcher_predictions_total",
                                          {"model": "m", "class": str(c)}) for c in range(3))
    assert total == 4700


def test_concurrent_large_batches_conserve_every_row(registry, clock):
    monitor = make_monitor(registry, clock, reservoir_size=64, window_seconds=1e9)
    closed_rows, closed_classes = [], []
    done = threading.Event()

    def observer(seed):
        rng = np.random.default_rng(seed)
        for n in rng.integers(1, 3000, size=40):
            monitor.observe(rng.dirichlet(np.ones(3), size=int(n)))

    def closer():
        while not done.is_set():
            stats = monitor.close_window()
            closed_rows.append(stats.rows)
            closed_classes.append(int(stats.class_rows.sum()))

    workers = [threading.Thread(target=observer, args=(seed,)) for seed in range(3)]
    helper = threading.Thread(target=closer)
    for thread in workers + [helper]:
        thread.start()
    for thread in workers:
        thread.join()
    done.set()
    helper.join()
    stats = monitor.close_window()
    closed_rows.append(stats.rows)
    closed_classes.append(int(stats.class_rows.sum()))
    total = sum(int(n) for seed in range(3)
                for n in np.random.default_rng(seed).integers(1, 3000, size=40))
    assert sum(closed_rows) == total and closed_rows == closed_classes


def test_categorical_feature_missing_from_the_columns(registry, clock):
    monitor = make_monitor(registry, clock, categorical_features=["colour"])
    frame = pd.DataFrame({"height": [1.0, 2.0]})
    with pytest.raises(ValueError, match="must include categorical_features 'colour'"):
        monitor.observe(np.full((2, 3), 1 / 3), frame)
    assert monitor.rejected_rows()["n_features"] == 2
    assert monitor.feature_names is None  # a refused first batch teaches nothing
    # Quietly, the predictions are kept and only the features left out.
    assert monitor.observe_quietly(np.full((2, 3), 1 / 3), frame) is True
    assert monitor.dropped_rows()[("features", "n_features")] == 2
    good = pd.DataFrame({"height": [1.0, 2.0], "colour": ["red", "blue"]})
    monitor.observe(np.full((2, 3), 1 / 3), good)  # a later correct batch is accepted
    assert monitor.feature_names == ["height", "colour"]
    stats = monitor.close_window()
    assert stats.rows == 4 and stats.sampled_rows == 4
    assert monitor.rejected_rows()["internal"] == 0


def test_bad_labels_of_a_large_batch_leave_the_callers_array_alone(registry, clock, monkeypatch):
    monkeypatch.setattr(staging, "STAGE_BYTES", 1)  # stages of MIN_STAGE_ROWS rows
    monitor = make_monitor(registry, clock)
    n_rows = staging.MIN_STAGE_ROWS + 1
    labels = np.full(n_rows, 7, dtype=np.int64)  # not a class index: dropped in bulk
    monitor.observe_quietly(batch(np.random.default_rng(3), n_rows)[0], labels=labels)
    assert (labels == 7).all()
    assert monitor.dropped_rows()[("labels", "unknown_label")] == n_rows


def test_nothing_is_counted_after_close(registry, clock):
    monitor = make_monitor(registry, clock)
    rng = np.random.default_rng(4)
    monitor.observe_quietly(batch(rng, 5)[0])
    monitor.close()
    monitor.observe_quietly(batch(rng, 6)[0])
    monitor.observe(batch(rng, 7)[0])
    assert monitor.close_window() is None  # a closed monitor closes no more windows
    assert int(monitor._pipeline.counts.predictions.sum()) == 5


def test_start_http_server_passes_the_server_options_through(registry):
    import urllib.request

    from mlwatcher_exporter.httpserver import ServerLimits

    monitor = ModelMonitor(model="srv", n_classes=2, registry=registry, background=False)
    server = monitor.start_http_server(port=0, limits=ServerLimits(max_connections=4))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics",
                                    timeout=5) as response:
            assert b'mlwatcher_model_info{' in response.read()
    finally:
        server.shutdown()
        monitor.close()


@pytest.mark.parametrize("kwargs, words", [
    # The type of the first problem: what check_monitor_arguments and the file check say.
    (dict(feature_names="amount"), "feature_names == 'amount', must be a list"),
    (dict(class_names="ab"), "class_names == 'ab', must be a list"),
])
def test_a_string_is_not_a_list_of_names(kwargs, words):
    with pytest.raises(TypeError, match=words):
        ModelMonitor(registry=None, background=False, **kwargs)


def test_categorical_features_none_means_none():
    monitor = ModelMonitor(registry=None, background=False, categorical_features=None)
    assert monitor.categorical_features == ()


@pytest.mark.parametrize("kwargs", [
    dict(reservoir_size=10**12),
    dict(feature_names=["a", "a"]),
    dict(window_seconds=-1.0),
    dict(categorical_features="colour"),
    dict(class_names=np.array(["cat", "cat"])),
])
def test_the_constructor_says_what_the_configuration_check_says(kwargs):
    with pytest.raises((TypeError, ValueError)) as direct:
        ModelMonitor(registry=None, background=False, **kwargs)
    with pytest.raises(type(direct.value)) as checked:
        check_monitor_arguments(**kwargs)
    assert str(direct.value) == str(checked.value)


def test_the_constructor_keeps_the_tidied_values():
    monitor = ModelMonitor(registry=None, background=False, window_seconds=5,
                           class_names=np.array(["cat", "dog"]), categorical_features=["a"],
                           feature_names=("a", "b"))
    assert monitor.window_seconds == 5.0 and isinstance(monitor.window_seconds, float)
    assert monitor.class_names == ["cat", "dog"] and monitor.categorical_features == ("a",)
    assert monitor.feature_names == ["a", "b"]
