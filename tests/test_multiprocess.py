"""Multiprocess mode in one machine: real forked workers write their state, the
collector publishes the merge through the usual families."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from mlwatcher_exporter import ModelMonitor, multiprocess
from mlwatcher_exporter.exposition import render_text
from mlwatcher_exporter.mpstate import read_states


@pytest.fixture
def multiproc(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setenv("MLWATCHER_FLUSH_SECONDS", "30")  # writes come from the test
    yield tmp_path
    writer = multiprocess._WRITER
    if writer is not None:
        writer.stop()
    multiprocess._WRITER = None
    multiprocess._REGISTRY = None


def values(registry, model):
    out = {}
    for line in render_text(registry).decode().splitlines():
        if line and not line.startswith("#") and f'model="{model}"' in line:
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def run_child(work):
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)  # no atexit: the test wrote what it wanted
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_windows_start_on_the_wall_clock_grid(multiproc, registry):
    monitor = ModelMonitor(model="g", n_classes=2, registry=registry, window_seconds=7.0)
    staging = monitor._staging
    start_wall = monitor._pipeline.wall_time(staging.window_start)
    assert start_wall / 7.0 == pytest.approx(round(start_wall / 7.0), abs=1e-6)
    assert start_wall <= monitor._pipeline._wall_clock() < start_wall + 7.0
    monitor.close()


def test_forked_workers_are_merged(multiproc, registry):
    monitor = ModelMonitor(model="w", n_classes=2, registry=registry, window_seconds=3600,
                           feature_names=["x"], background=False)
    monitor.observe([[0.8, 0.2]], features=[[100.0]])  # before the fork: the parent's

    def worker(seed, rows):
        def work():
            rng = np.random.default_rng(seed)
            p = rng.random(rows)
            monitor.observe(np.column_stack([p, 1 - p]), features=rng.normal(size=(rows, 1)),
                            labels=(p < 0.5).astype(int))
            monitor.close_window()  # a window closed: its sample goes to the file
            multiprocess._WRITER.write_all()
        return work

    run_child(worker(1, 30))
    run_child(worker(2, 50))
    multiprocess._WRITER.write_all()  # the parent's state too
    # (Other live monitors of this test process are in the files too: filtered out.)
    states = [s for s in read_states(str(p) for p in multiproc.iterdir()) if s.model == "w"]
    assert len(states) == 3 and len({s.token for s in states}) == 3
    scrape = CollectorRegistry()
    multiprocess.MultiProcessCollector(scrape, path=str(multiproc))
    published = values(scrape, "w")
    predictions = sum(v for k, v in published.items()
                      if k.startswith("mlwatcher_predictions_total{"))
    assert predictions == 81  # 1 + 30 + 50: the parent's row once
    assert published['mlwatcher_labeled_predictions_total{class="0",model="w"}'] + \
        published['mlwatcher_labeled_predictions_total{class="1",model="w"}'] == 80
    monitor.close()


def test_a_dead_workers_counts_stay_and_its_window_is_merged(multiproc, registry):
    clock = [1_000_000.0]
    monitor = ModelMonitor(model="d", n_classes=2, registry=registry, window_seconds=60,
                           background=False)

    def work():
        monitor.observe([[0.3, 0.7]] * 4)
        multiprocess._at_exit()  # what a worker's exit does: final, with its open window

    run_child(work)
    multiprocess._WRITER.write_all()
    scrape = CollectorRegistry()
    multiprocess.MultiProcessCollector(scrape, path=str(multiproc), _clock=lambda: clock[0])
    (dead,) = [s for s in read_states(str(p) for p in multiproc.iterdir())
               if s.final and s.model == "d"]
    assert [w.sample.rows for w in dead.windows] == [4]
    published = values(scrape, "d")
    assert published['mlwatcher_predictions_total{class="1",model="d"}'] == 4
    # The parent's heartbeat is stale at this clock: the dead worker's window is published.
    clock[0] = 2e10
    published = values(scrape, "d")
    assert published['mlwatcher_window_rows{model="d"}'] == 4
    assert published['mlwatcher_predictions_total{class="1",model="d"}'] == 4
    monitor.close()
    multiprocess._WRITER.write_all()  # a closed monitor writes a final state, then stops
    assert all(s.final for s in read_states(str(p) for p in multiproc.iterdir())
               if s.model == "d")


def test_the_merged_window_is_judged_against_the_local_reference(multiproc, registry):
    rng = np.random.default_rng(5)
    reference = rng.normal(size=(400, 1))
    batches = [rng.normal(1.0, 1.0, size=(rows, 1)) for rows in (40, 60)]

    def proba(x):
        p = 1 / (1 + np.exp(-x[:, 0]))
        return np.column_stack([1 - p, p])

    def make(model, registry):
        m = ModelMonitor(model=model, n_classes=2, registry=registry, window_seconds=60,
                         feature_names=["x"], background=False)
        m.fit_reference(reference, proba(reference))
        return m

    monitor = make("j", registry)
    for batch in batches:
        def work(batch=batch):
            monitor.observe(proba(batch), features=batch)
            multiprocess._at_exit()
        run_child(work)
    scrape = CollectorRegistry()
    multiprocess.MultiProcessCollector(scrape, path=str(multiproc), _clock=lambda: 2e10)
    published = values(scrape, "j")
    # One process that saw every row judges the same pooled window.
    alone = make("j-alone", CollectorRegistry())
    for batch in batches:
        alone.observe(proba(batch), features=batch)
    expected = alone.close_window().judgement.feature_drift["x"]
    assert published['mlwatcher_window_rows{model="j"}'] == 100
    for method, value in expected.items():
        key = f'mlwatcher_feature_drift{{feature="x",method="{method}",model="j"}}'
        assert published[key] == pytest.approx(value, rel=1e-9), method
    assert any(k.startswith("mlwatcher_reference_info{") for k in published)
    alone.close()
    monitor.close()


def test_collector_needs_a_directory(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    with pytest.raises(ValueError, match="PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(None)


def test_multiprocess_registry_serves_both_collectors(multiproc, registry):
    monitor = ModelMonitor(model="r", n_classes=2, registry=registry, background=False)
    monitor.observe([[0.1, 0.9]])
    text = render_text(multiprocess.multiprocess_registry()).decode()
    assert 'mlwatcher_predictions_total{class="1",model="r"} 1.0' in text
    monitor.close()
