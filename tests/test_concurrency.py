"""The monitor under concurrency: the background worker on, real threads, racing
scrapes and window closes; labels isolated per thread and per asyncio task; a uniform
sample when batch sizes mix; the worker driven without real time; dropped monitors.

No test here asserts a duration: waits are bounded only so that a broken build fails
instead of hanging.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from typing import Any, Dict, List

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from scipy import stats as scipy_stats

from mlwatcher_exporter import ModelMonitor
from mlwatcher_exporter import staging

from fake_waiter import SteppedWaiter

N_CLASSES = 3


def predictions_total(registry: CollectorRegistry, model: str, n_classes: int) -> List[float]:
    return [
        registry.get_sample_value("mlwatcher_predictions_total", {"model": model, "class": str(c)})
        or 0.0
        for c in range(n_classes)
    ]


def labeled_total(registry: CollectorRegistry, model: str, n_classes: int) -> List[float]:
    return [
        registry.get_sample_value("mlwatcher_labeled_predictions_total",
                                  {"model": model, "class": str(c)}) or 0.0
        for c in range(n_classes)
    ]


def correct_total(registry: CollectorRegistry, model: str, n_classes: int) -> List[float]:
    return [
        registry.get_sample_value("mlwatcher_correct_predictions_total",
                                  {"model": model, "class": str(c)}) or 0.0
        for c in range(n_classes)
    ]


class Expected:
    """What the observer threads offered, summed under a lock."""

    def __init__(self, n_classes: int) -> None:
        self.lock = threading.Lock()
        self.predicted = np.zeros(n_classes, dtype=np.int64)
        self.labeled = np.zeros(n_classes, dtype=np.int64)
        self.correct = np.zeros(n_classes, dtype=np.int64)

    def add(self, proba: np.ndarray, labels: np.ndarray) -> None:
        predicted = proba.argmax(axis=1)
        n = self.predicted.size
        with self.lock:
            self.predicted += np.bincount(predicted, minlength=n)
            self.labeled += np.bincount(labels, minlength=n)
            self.correct += np.bincount(labels[labels == predicted], minlength=n)

    @property
    def rows(self) -> int:
        return int(self.predicted.sum())


def mixed_sizes(rng: np.random.Generator, count: int, stage_rows: int) -> List[int]:
    """1-row, small and larger-than-a-stage batch sizes, shuffled."""
    sizes = rng.choice([1, 1, 1, 7, 40, stage_rows + 1 + int(rng.integers(0, 500))], size=count)
    return [int(n) for n in sizes]


def run_all(threads: List[threading.Thread], timeout: float = 120.0) -> None:
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), f"{thread.name} did not finish"


def test_background_worker_with_racing_scrapes_and_closes_conserves_every_row(monkeypatch):
    """Every row of four model threads (through watch and observe) is counted exactly
    once, in the lifetime counters and in exactly one window, while the worker drains
    on its own, a scraper reads /metrics in a loop and a closer closes windows."""
    monkeypatch.setattr(staging, "STAGE_BYTES", 1)  # stages of MIN_STAGE_ROWS rows
    registry = CollectorRegistry()
    monitor = ModelMonitor(model="race", n_classes=N_CLASSES, window_seconds=1e9,
                           reservoir_size=64, registry=registry, random_state=0)
    expected = Expected(N_CLASSES)
    closed_rows: List[int] = []
    closed_classes: List[int] = []
    done = threading.Event()
    errors: List[BaseException] = []

    @monitor.watch
    def predict_proba(X: np.ndarray, proba: np.ndarray) -> np.ndarray:
        return proba

    def observer(seed: int) -> None:
        try:
            rng = np.random.default_rng(seed)
            for i, n in enumerate(mixed_sizes(rng, 400, staging.MIN_STAGE_ROWS)):
                proba = rng.dirichlet(np.ones(N_CLASSES), n)
                features = rng.normal(size=(n, 2))
                labels = rng.integers(0, N_CLASSES, n)
                if i % 2:
                    with monitor.labels(labels):
                        assert predict_proba(features, proba) is proba
                else:
                    monitor.observe(proba, features, labels)
                expected.add(proba, labels)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    def closer() -> None:
        while not done.is_set():
            stats = monitor.close_window()
            closed_rows.append(stats.rows)
            closed_classes.append(int(stats.class_rows.sum()))

    def scraper() -> None:
        while not done.is_set():
            list(registry.collect())

    helpers = [threading.Thread(target=closer), threading.Thread(target=scraper),
               threading.Thread(target=scraper)]
    for thread in helpers:
        thread.start()
    try:
        run_all([threading.Thread(target=observer, args=(seed,)) for seed in range(4)])
        assert monitor._worker.alive  # the background worker really ran alongside
    finally:
        done.set()
        for thread in helpers:
            thread.join(60)
    assert not errors, errors
    stats = monitor.close_window()
    closed_rows.append(stats.rows)
    closed_classes.append(int(stats.class_rows.sum()))
    assert sum(closed_rows) == expected.rows
    assert closed_rows == closed_classes
    assert predictions_total(registry, "race", N_CLASSES) == expected.predicted.tolist()
    assert labeled_total(registry, "race", N_CLASSES) == expected.labeled.tolist()
    assert correct_total(registry, "race", N_CLASSES) == expected.correct.tolist()
    assert sum(monitor.rejected_rows().values()) == 0
    monitor.close()
    assert not monitor._worker.alive


def test_worker_closing_windows_on_time_loses_no_row(monkeypatch):
    """With short windows the worker closes them itself while threads observe and
    scrapes race; the lifetime counters stay exact and every window's class counts
    add up to its rows."""
    monkeypatch.setattr(staging, "STAGE_BYTES", 1)
    registry = CollectorRegistry()
    monitor = ModelMonitor(model="tumble", n_classes=N_CLASSES, window_seconds=0.02,
                           reservoir_size=32, registry=registry, random_state=1)
    expected = Expected(N_CLASSES)
    windows: List[Any] = []
    done = threading.Event()

    def observer(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for n in mixed_sizes(rng, 120, staging.MIN_STAGE_ROWS):
            proba = rng.dirichlet(np.ones(N_CLASSES), n)
            labels = rng.integers(0, N_CLASSES, n)
            monitor.observe_quietly(proba, None, labels)
            expected.add(proba, labels)

    def scraper() -> None:
        while not done.is_set():
            list(registry.collect())
            windows.append(monitor.last_window)

    helper = threading.Thread(target=scraper)
    helper.start()
    try:
        run_all([threading.Thread(target=observer, args=(seed,)) for seed in range(3)])
    finally:
        done.set()
        helper.join(60)
    monitor.flush()
    assert predictions_total(registry, "tumble", N_CLASSES) == expected.predicted.tolist()
    assert labeled_total(registry, "tumble", N_CLASSES) == expected.labeled.tolist()
    assert correct_total(registry, "tumble", N_CLASSES) == expected.correct.tolist()
    for window in windows:
        if window is not None:
            assert int(window.class_rows.sum()) == window.rows <= expected.rows
            assert window.sampled_rows <= min(window.rows, 32)
    monitor.close()


# ---------------------------------------------------------------------- labels isolation

def own_batches(owner: int, n_classes: int, seed: int, count: int) -> List[np.ndarray]:
    """Batches whose every row predicts class `owner`."""
    rng = np.random.default_rng(seed)
    batches = []
    for n in rng.integers(1, 30, size=count):
        proba = np.full((int(n), n_classes), 0.1 / (n_classes - 1))
        proba[:, owner] = 0.9
        batches.append(proba)
    return batches


def assert_each_prediction_met_its_own_labels(registry: CollectorRegistry, model: str,
                                              rows: Dict[int, int], n_classes: int) -> None:
    """Thread k predicted class k and labelled its rows k, except owner 0 (no labels):
    a label seen by another thread's call would make a wrong or a missing label."""
    expected_labeled = [rows[k] if k else 0 for k in range(n_classes)]
    assert predictions_total(registry, model, n_classes) == [rows[k] for k in range(n_classes)]
    assert labeled_total(registry, model, n_classes) == expected_labeled
    assert correct_total(registry, model, n_classes) == expected_labeled


def test_labels_are_isolated_per_thread(registry):
    n_classes = 5
    monitor = ModelMonitor(model="threads", n_classes=n_classes, registry=registry,
                           background=True, random_state=0)
    barrier = threading.Barrier(n_classes)

    @monitor.watch
    def predict_proba(X: np.ndarray, proba: np.ndarray) -> np.ndarray:
        # Every thread is inside its own labels block here, at the same time.
        barrier.wait(timeout=30)
        return proba

    rows: Dict[int, int] = {}

    def caller(owner: int) -> None:
        batches = own_batches(owner, n_classes, owner, 40)
        for proba in batches:
            X = np.zeros((len(proba), 2))
            if owner:
                with monitor.labels(np.full(len(proba), owner)):
                    predict_proba(X, proba)
            else:
                predict_proba(X, proba)  # no block: no labels, whatever the others set
        rows[owner] = sum(len(p) for p in batches)

    run_all([threading.Thread(target=caller, args=(k,)) for k in range(n_classes)])
    assert_each_prediction_met_its_own_labels(registry, "threads", rows, n_classes)
    assert monitor.current_labels() is None
    monitor.close()


def test_labels_are_isolated_per_asyncio_task(registry):
    n_classes = 4
    monitor = ModelMonitor(model="tasks", n_classes=n_classes, registry=registry,
                           background=True, random_state=0)

    @monitor.watch
    async def predict_proba(X: np.ndarray, proba: np.ndarray) -> np.ndarray:
        await asyncio.sleep(0)  # the other tasks run, inside their own blocks
        await asyncio.sleep(0)
        return proba

    rows: Dict[int, int] = {}

    async def caller(owner: int) -> None:
        batches = own_batches(owner, n_classes, 100 + owner, 40)
        for proba in batches:
            X = np.zeros((len(proba), 2))
            if owner:
                with monitor.labels(np.full(len(proba), owner)):
                    assert await predict_proba(X, proba) is proba
            else:
                assert await predict_proba(X, proba) is proba
        rows[owner] = sum(len(p) for p in batches)

    async def main() -> None:
        await asyncio.gather(*(caller(k) for k in range(n_classes)))

    asyncio.run(main())
    assert_each_prediction_met_its_own_labels(registry, "tasks", rows, n_classes)
    monitor.close()


# ---------------------------------------------------------------------- uniform sample

def test_sample_is_uniform_when_single_rows_small_and_large_batches_mix(monkeypatch):
    """Each row has the same chance to be sampled whether it came alone, in a small
    staged batch or in a batch larger than a stage, and wherever it came in the window.

    Per window a uniform sample of R rows out of N is hypergeometric; the counts of 60
    windows, chi-square tested with the finite-population correction (fixed seeds)."""
    monkeypatch.setattr(staging, "STAGE_BYTES", 1)  # stages of MIN_STAGE_ROWS rows
    large = staging.MIN_STAGE_ROWS + 244  # 500 rows: borrowed, not staged
    capacity, windows, per_origin = 200, 60, 1000
    monitor = ModelMonitor(model="uniform", n_classes=2, window_seconds=1e9,
                           reservoir_size=capacity, registry=None, background=False,
                           random_state=7, feature_names=["origin", "quarter"],
                           categorical_features=["origin", "quarter"])
    rng = np.random.default_rng(11)
    proba_row = np.array([[0.3, 0.7]])
    by_origin = np.zeros(3)
    by_quarter = np.zeros(4)
    total = 3 * per_origin
    for _ in range(windows):
        # 1000 single rows, 100 batches of 10 rows and 2 batches of 500, interleaved.
        batches = [0] * per_origin + [1] * (per_origin // 10) + [2] * (per_origin // large)
        order = rng.permutation(len(batches))
        seen = 0
        for index in order:
            origin = batches[index]
            n = (1, 10, large)[origin]
            features = np.empty((n, 2))
            features[:, 0] = origin
            features[:, 1] = (seen + np.arange(n)) * 4 // total
            monitor.observe_quietly(np.repeat(proba_row, n, axis=0), features)
            seen += n
        stats = monitor.close_window()
        assert stats.rows == total and stats.sampled_rows == capacity
        ratios = stats.value_ratios
        by_origin += [round(ratios["origin"].get(str(k), 0.0) * capacity) for k in range(3)]
        by_quarter += [round(ratios["quarter"].get(str(k), 0.0) * capacity) for k in range(4)]
    correction = (total - capacity) / (total - 1)
    for observed in (by_origin, by_quarter):
        assert observed.sum() == windows * capacity
        expected = np.full(observed.size, windows * capacity / observed.size)
        chi2 = float(((observed - expected) ** 2 / expected).sum()) / correction
        p_value = scipy_stats.chi2.sf(chi2, observed.size - 1)
        assert p_value > 1e-3, (observed, p_value)


def test_the_uniformity_check_sees_a_biased_sample():
    """The test above can fail: a sample that favours large batches by 10 % is refused
    by the same statistic."""
    windows, capacity, total = 60, 200, 3000
    observed = np.array([windows * capacity / 3 * f for f in (0.95, 0.95, 1.1)])
    expected = np.full(3, windows * capacity / 3)
    chi2 = float(((observed - expected) ** 2 / expected).sum()) / ((total - capacity) / (total - 1))
    assert scipy_stats.chi2.sf(chi2, 2) < 1e-3


# ---------------------------------------------------------------------- worker seam

def test_worker_is_driven_through_the_waiter_without_real_time(registry, clock):
    waiter = SteppedWaiter()
    monitor = ModelMonitor(model="stepped", n_classes=2, window_seconds=0.5,
                           reservoir_size=100, registry=registry, random_state=0,
                           background=True, _clock=clock, _waiter=waiter)
    try:
        assert not monitor._worker.alive  # started at the first batch
        monitor.observe_quietly(np.array([[0.4, 0.6]] * 3))
        waiter.wait_for_waits(1)  # first round done: nothing due yet
        assert waiter.timeouts == [0.5]  # it sleeps until the window's end
        # The current stage is not sealed for the worker: it fills, or the window ends.
        assert monitor._pipeline.counts.predictions.sum() == 0
        clock.advance(0.2)
        waiter.step()
        assert waiter.timeouts[-1] == pytest.approx(0.3)
        assert monitor.last_window is None
        clock.advance(0.3)  # the window is due
        waiter.step()
        assert monitor.last_window is not None and monitor.last_window.rows == 3
        assert monitor._pipeline.counts.predictions.sum() == 3  # counted by the worker
        assert waiter.timeouts[-1] == pytest.approx(0.5)  # the next window's end
        clock.advance(7.0)  # whole windows pass without a batch
        monitor.observe_quietly(np.array([[0.9, 0.1]]))  # closes them; a new window
        waiter.step()
        assert monitor.last_window.rows == 0 and monitor.last_window.duration == 0.5
        assert waiter.timeouts[-1] == pytest.approx(0.5)
        clock.advance(0.5)
        waiter.step()
        assert monitor.last_window.rows == 1
        assert waiter.notified >= 1  # the request path rang when the window closed
    finally:
        waiter.open()
        monitor.close()
    assert not monitor._worker.alive


# ---------------------------------------------------------------------- lifecycle

def mlwatcher_threads(prefix: str) -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def wait_until(condition: Any, attempts: int, collect: bool) -> bool:
    """Whether `condition` holds within `attempts` pauses (a bound, not a timing)."""
    pause = threading.Event()
    for _ in range(attempts):
        if collect:
            gc.collect()
        if condition():
            return True
        pause.wait(0.05)
    return condition()


@pytest.mark.parametrize("with_registry", [
    False,
    True,
])
def test_dropped_monitors_end_their_worker_and_are_freed(with_registry):
    """50 monitors with workers, dropped without close() (with their registry, when they
    have one): every worker thread ends and every monitor is collected."""
    prefix = f"mlwatcher-dropped{int(with_registry)}-"
    monitors = []
    for i in range(50):
        monitor = ModelMonitor(model=f"dropped{int(with_registry)}-{i}", n_classes=2,
                               registry=CollectorRegistry() if with_registry else None,
                               background=True)
        monitor.observe(np.array([[0.2, 0.8]] * 10))
        monitors.append(monitor)
    assert len(mlwatcher_threads(prefix)) == 50
    refs = [weakref.ref(monitor) for monitor in monitors]
    del monitor, monitors
    assert wait_until(lambda: all(ref() is None for ref in refs), 30, True), "kept alive"
    assert wait_until(lambda: not mlwatcher_threads(prefix), 400, False), "threads left"


def test_with_block_closes_the_monitor(registry):
    with ModelMonitor(model="ctx", n_classes=2, registry=registry, background=True) as monitor:
        monitor.observe(np.array([[0.2, 0.8]] * 4))
        assert monitor._worker.alive
        total = registry.get_sample_value("mlwatcher_predictions_total",
                                          {"model": "ctx", "class": "1"})
        assert total == 4
    assert not monitor._worker.alive
    assert registry.get_sample_value("mlwatcher_predictions_total",
                                     {"model": "ctx", "class": "1"}) is None  # unregistered
    monitor.observe(np.array([[0.2, 0.8]]))  # a closed monitor ignores what comes
    assert not monitor._worker.alive
    assert monitor.snapshot().counts.predictions.sum() == 4


def test_with_block_closes_the_monitor_when_the_body_raises(registry):
    with pytest.raises(KeyError):
        with ModelMonitor(model="boom", n_classes=2, registry=registry) as monitor:
            monitor.observe(np.array([[0.2, 0.8]]))
            raise KeyError("body")
    assert not monitor._worker.alive
    assert registry.get_sample_value("mlwatcher_predictions_total",
                                     {"model": "boom", "class": "1"}) is None
