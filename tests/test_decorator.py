"""watch and wrap: one line of monitoring that never touches the model's behaviour."""

import copy
import gc
import inspect
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from mlwatcher_exporter import ModelMonitor
from mlwatcher_exporter.decorator import find_features


@pytest.fixture
def monitor(registry, clock):
    return ModelMonitor(model="m", n_classes=3, registry=registry, background=False,
                        _clock=clock, random_state=0)


@pytest.fixture(scope="module")
def iris_model():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])
    return LogisticRegression(max_iter=500).fit(X, names[y]), X, names[y]


def test_plain_function_keeps_return_value_and_metadata(monitor):
    output = np.array([[0.1, 0.2, 0.7]])

    @monitor.watch
    def predict_proba(X):
        """Docs."""
        return output

    assert predict_proba(np.ones((1, 4))) is output
    assert predict_proba.__name__ == "predict_proba" and predict_proba.__doc__ == "Docs."
    assert predict_proba.__wrapped__ is not None
    stats = monitor.close_window()
    assert stats.rows == 1 and "f3" in stats.features


def test_method_and_bound_method(monitor):
    class Model:
        def __init__(self):
            self.calls = 0

        @monitor.watch
        def predict_proba(self, X):
            self.calls += 1
            return np.tile([0.2, 0.5, 0.3], (len(X), 1))

        def raw(self, X):
            return np.tile([0.6, 0.2, 0.2], (len(X), 1))

    model = Model()
    model.predict_proba(np.ones((4, 2)))
    bound = monitor.watch(model.raw)
    bound(np.zeros((3, 2)))
    stats = monitor.close_window()
    assert model.calls == 1 and stats.rows == 7
    assert stats.features["f0"]["mean"] == pytest.approx(4 / 7)


def test_exceptions_of_the_model_pass_through_untouched(monitor):
    error = RuntimeError("model failed")

    @monitor.watch
    def predict_proba(X):
        raise error

    with pytest.raises(RuntimeError) as caught:
        predict_proba(np.ones((1, 2)))
    assert caught.value is error


@pytest.mark.parametrize("bad_output", [
    np.array([[0.5, 0.5]]), np.array([[np.nan, 0.5, 0.5]]), "not an array", None,
    np.array([[2.0, 0.0, 0.0]]),
])
def test_bad_output_is_counted_never_raised(monitor, bad_output):
    @monitor.watch
    def predict_proba(X):
        return bad_output

    assert predict_proba(np.ones((1, 2))) is bad_output
    assert sum(monitor.rejected_rows().values()) >= 1
    assert monitor.close_window().rows == 0


def test_internal_errors_are_counted_as_internal(monitor, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(monitor._intake, "offer", broken)
    wrapped = monitor.watch(lambda X: np.array([[0.2, 0.3, 0.5]]))
    assert wrapped(np.ones((1, 2))).shape == (1, 3)
    assert monitor.rejected_rows()["internal"] == 1


def test_labels_come_from_the_context(monitor):
    predict_proba = monitor.watch(lambda X: np.tile([0.1, 0.8, 0.1], (len(X), 1)))
    with monitor.labels([1, 1, 0]):
        predict_proba(np.ones((3, 2)))
    predict_proba(np.ones((2, 2)))  # outside the block: no labels
    stats = monitor.close_window()
    assert stats.scores.labeled_rows == 3 and stats.scores.accuracy == pytest.approx(2 / 3)
    assert monitor.current_labels() is None


def test_wrap_uses_classes_and_delegates(registry, clock, iris_model):
    model, X, y = iris_model
    monitor = ModelMonitor(model="iris", n_classes=3, registry=registry, background=False,
                           _clock=clock)
    monitored = monitor.wrap(model)
    with monitor.labels(y[:50]):
        proba = monitored.predict_proba(X[:50])
    np.testing.assert_array_equal(proba, model.predict_proba(X[:50]))
    np.testing.assert_array_equal(monitored.predict(X[:5]), model.predict(X[:5]))
    assert monitored.classes_ is model.classes_
    assert monitor.class_labels == ["setosa", "versicolor", "virginica"]
    assert monitor.close_window().scores.accuracy == 1.0
    assert registry.get_sample_value("mlwatcher_predictions_total",
                                     {"model": "iris", "class": "setosa"}) == 50


def test_wrap_rejects_mismatched_classes(registry, clock, iris_model):
    monitor = ModelMonitor(model="x", n_classes=4, registry=registry, background=False)
    with pytest.raises(ValueError, match="classes_ has 3 classes, must match n_classes == 4"):
        monitor.wrap(iris_model[0])
    with pytest.raises(TypeError, match="must have a predict_proba"):
        monitor.wrap(object())


def test_find_features():
    table = np.ones((2, 3))
    frame = pd.DataFrame(table)
    assert find_features((table,), {}) is table
    assert find_features((object(), frame), {}) is frame
    assert find_features((), {"X": table}) is table
    assert find_features((np.ones(3),), {}) is None


def test_wrapping_after_data_keeps_the_counters(registry, clock, iris_model):
    model, X, y = iris_model
    monitor = ModelMonitor(model="late", n_classes=3, registry=registry, background=False,
                           _clock=clock)
    monitor.observe(np.array([[0.2, 0.3, 0.5]]))
    clock.advance(120)
    monitor.tick()  # the window closed: no active buffer any more
    monitor.wrap(model)
    assert monitor.class_labels == ["0", "1", "2"]  # the data already counted keeps them
    assert registry.get_sample_value("mlwatcher_predictions_total",
                                     {"model": "late", "class": "2"}) == 1


def test_async_def_is_awaited_and_observed(monitor):
    import asyncio

    output = np.array([[0.1, 0.2, 0.7]] * 2)
    error = RuntimeError("async model failed")

    @monitor.watch
    async def predict_proba(X):
        await asyncio.sleep(0)
        return output

    @monitor.watch
    async def broken(X):
        raise error

    async def main():
        with monitor.labels([2, 0]):
            assert await predict_proba(np.ones((2, 4))) is output
        with pytest.raises(RuntimeError) as caught:
            await broken(np.ones((2, 4)))
        assert caught.value is error

    assert inspect.iscoroutinefunction(predict_proba)
    asyncio.run(main())
    stats = monitor.close_window()
    assert stats.rows == 2 and stats.scores.accuracy == 0.5 and "f3" in stats.features


def test_a_wrapped_estimator_can_be_copied_and_pickled(registry, clock, iris_model):
    model, X, _ = iris_model
    monitor = ModelMonitor(model="copies", registry=registry, background=False, _clock=clock)
    wrapped = monitor.wrap(model)
    shallow, deep = copy.copy(wrapped), copy.deepcopy(wrapped)
    assert type(shallow) is type(deep) is type(wrapped)
    assert deep._estimator is not model and shallow._estimator is not model
    shallow.predict_proba(X[:3])
    deep.predict_proba(X[:4])  # a copy watches the same monitor
    np.testing.assert_array_equal(deep.predict_proba(X[:2]), model.predict_proba(X[:2]))
    restored = pickle.loads(pickle.dumps(wrapped))
    assert type(restored) is type(model)  # the bare estimator: wrap it again once loaded
    np.testing.assert_array_equal(restored.predict_proba(X[:5]), model.predict_proba(X[:5]))
    assert monitor.close_window().rows == 9


def test_a_call_watched_twice_by_one_monitor_is_counted_once(registry, clock):
    monitor = ModelMonitor(model="twice", n_classes=2, registry=registry, background=False,
                           _clock=clock)
    other = ModelMonitor(model="other", n_classes=2, registry=registry, background=False,
                         _clock=clock)

    class Model:
        classes_ = np.array([0, 1])

        @monitor.watch
        def predict_proba(self, X):
            return np.tile([0.3, 0.7], (len(X), 1))

    wrapped = monitor.wrap(Model())
    wrapped.predict_proba(np.ones((4, 2)))
    monitor.watch(monitor.watch(lambda X: np.tile([0.3, 0.7], (len(X), 1))))(np.ones((3, 2)))
    other.wrap(Model()).predict_proba(np.ones((5, 2)))  # another monitor counts its own
    assert monitor.close_window().rows == 4 + 3 + 5
    assert other.close_window().rows == 5


def test_the_reentrancy_guard_follows_the_live_watched_functions(registry, clock):
    monitor = ModelMonitor(model="live", n_classes=2, registry=registry, background=False,
                           _clock=clock)
    assert monitor.watchers.live == 0
    inner = monitor.watch(lambda X: np.tile([0.3, 0.7], (len(X), 1)))
    outer = monitor.watch(lambda X: inner(X))
    assert monitor.watchers.live == 2
    outer(np.ones((3, 2)))
    assert monitor.close_window().rows == 3  # the nested call is counted once
    del outer
    gc.collect()
    assert monitor.watchers.live == 1  # one function left: no nesting, no guard
    inner(np.ones((2, 2)))
    assert monitor.close_window().rows == 2


def test_a_monitor_that_knows_its_inputs_starts_its_worker_at_the_first_call(registry):
    # Its first call is already of the common form (ModelMonitor.observe_common).
    with ModelMonitor(model="declared", n_classes=2, feature_names=["a", "b"],
                      registry=registry, window_seconds=60) as monitor:
        watched = monitor.watch(lambda X: np.tile([0.3, 0.7], (len(X), 1)))
        watched(np.ones((2, 2)))
        assert monitor._worker.alive


def _stream(seed, n_calls, rows):
    rng = np.random.default_rng(seed)
    for _ in range(n_calls):
        n = int(rng.integers(1, rows + 1))
        proba = rng.dirichlet(np.full(3, 0.5), size=n)
        yield proba, rng.normal(size=(n, 4)), rng.integers(0, 4, size=n)  # 3: a bad label


def _observed_through(compiled, monkeypatch, clock):
    """The counters and window of a stream of decorated calls, and how many calls the
    Python path (decorator._observe) took; `compiled` False: the Python path only."""
    from mlwatcher_exporter import decorator, kernel

    if not compiled:
        monkeypatch.setattr(kernel, "COMPILED", False)
    m = ModelMonitor(model="m", n_classes=3, registry=None, background=False,
                     _clock=clock, random_state=0, reservoir_size=50)
    slow_calls = []
    real = decorator._observe

    def counting(*args):
        slow_calls.append(1)
        return real(*args)

    monkeypatch.setattr(decorator, "_observe", counting)
    for proba, X, y in _stream(1, 300, 40):
        watched = m.watch(lambda X, proba=proba: proba)
        with m.labels(y):
            watched(X)
        with m.labels(None):
            watched(X)
    snapshot = m.snapshot()
    window = m.close_window()
    monkeypatch.undo()
    return snapshot, window, len(slow_calls)


def test_the_compiled_request_path_records_what_the_python_path_does(monkeypatch, clock):
    from mlwatcher_exporter import kernel

    if not kernel.COMPILED:
        pytest.skip("the compiled kernel is not built")
    fast, fast_window, fast_slow = _observed_through(True, monkeypatch, clock)
    slow, slow_window, slow_slow = _observed_through(False, monkeypatch, clock)
    assert slow_slow == 600 and fast_slow < 100  # the compiled path took nearly all
    for name, value in vars(fast.counts).items():
        if isinstance(value, np.ndarray):
            np.testing.assert_allclose(value, getattr(slow.counts, name), rtol=1e-12,
                                       err_msg=name)
    assert fast.dropped == slow.dropped and fast.rejected == slow.rejected
    assert (fast_window.rows, fast_window.sampled_rows) == (
        slow_window.rows, slow_window.sampled_rows)
    np.testing.assert_array_equal(fast_window.class_rows, slow_window.class_rows)
    assert fast_window.features.keys() == slow_window.features.keys()
    for name, stats in fast_window.features.items():  # the same rows sampled
        assert stats == pytest.approx(slow_window.features[name], rel=1e-12), name
    assert fast_window.scores.accuracy == slow_window.scores.accuracy


def test_the_compiled_request_path_declines_what_it_does_not_handle(monitor):
    from mlwatcher_exporter import kernel

    if not kernel.COMPILED:
        pytest.skip("the compiled kernel is not built")
    m = monitor
    m.observe(np.full((1, 3), 1 / 3), features=np.zeros((1, 2)))  # schema, worker
    state = (m, m._staging, m._schema, m._labels_var)
    proba, X = np.full((2, 3), 1 / 3), np.zeros((2, 2))
    m._staging.put(proba, X, None, 0, 0.5)  # a current stage
    assert kernel.stage_call(state, proba, (X,), {})
    assert not kernel.stage_call(state, proba.astype(np.float32), (X,), {})
    assert not kernel.stage_call(state, proba, (X,), {"other": 1})
    assert not kernel.stage_call(state, proba, (X[:, :1],), {})  # another width
    assert not kernel.stage_call(state, proba[:, :2], (X,), {})
    assert not kernel.stage_call(state, proba, (np.asfortranarray(np.ones((2, 2))),), {})
    with m.labels(np.array([0, 1], dtype=np.int32)):  # not int64: Python converts
        assert not kernel.stage_call(state, proba, (X,), {})
    with m.labels([0, 1], ids=["a", "b"]):
        assert not kernel.stage_call(state, proba, (X,), {})
    with m.labels(np.array([0, 1])):
        assert kernel.stage_call(state, proba, (X,), {})
    with m._staging.lock:  # another thread inside staging: the Python path waits
        assert not kernel.stage_call(state, proba, (X,), {})
    m._staging.window_end = float("-inf")  # the window is due: the Python path rolls
    assert not kernel.stage_call(state, proba, (X,), {})
    stage = m._staging._current
    assert stage.batches == 4 and stage.n == 7  # observe, put, two stage_calls
    ends, thresholds, has_features, kinds = stage.columns()
    assert ends.tolist() == [1, 3, 5, 7] and kinds.tolist()[2:] == [0, 1]
    assert has_features.all() and thresholds.tolist()[2:] == [0.5, 0.5]
    assert stage.labels[5:7].tolist() == [0, 1] and stage.labels[:5].tolist() == [-1] * 5


def test_the_compiled_labels_block_is_a_context_decorator(monitor):
    seen = []
    block = monitor.labels([1])

    @block
    def inner():
        seen.append(monitor.current_labels())

    inner()
    inner()
    with block:
        with monitor.labels([2]):
            seen.append(monitor.current_labels())
        seen.append(monitor.current_labels())
    seen.append(monitor.current_labels())
    assert seen == [[1], [1], [2], [1], None]
    with pytest.raises(KeyError):
        with monitor.labels([3]):
            raise KeyError("the block never swallows")
    assert monitor.current_labels() is None
    with monitor.labels([0], ids=["x"]):
        assert monitor.current_block().ids == ["x"]
