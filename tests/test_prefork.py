"""Fork safety with a real os.fork, and a taken port that never raises."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlwatcher_exporter import ModelMonitor, prefork
from mlwatcher_exporter.history import WindowHistory
from mlwatcher_exporter.historyfile import HistoryFile
from mlwatcher_exporter.prefork import NotServing, server_parent


@pytest.fixture(autouse=True)
def no_multiprocess(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)


def in_child(work):
    """Run `work()` in a forked child; return what it returned (JSON), or fail."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        signal.alarm(20)  # a deadlock must fail the test, not hang it
        try:
            os.close(read)
            os.write(write, json.dumps(work()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), f"child died: status {status}"
    assert data, "the child reported nothing"
    return json.loads(data)


def test_child_does_not_count_rows_observed_before_the_fork(registry):
    monitor = ModelMonitor(model="f", n_classes=2, registry=registry, random_state=0)
    monitor.observe(np.tile([0.9, 0.1], (7, 1)), labels=[0] * 7)  # a warm-up at import
    parent_worker = monitor._worker

    def child():
        before = monitor.snapshot().counts.predictions.tolist()
        monitor.observe(np.tile([0.2, 0.8], (3, 1)), labels=[1] * 3)
        after = monitor.snapshot().counts.predictions.tolist()
        window = monitor.close_window()
        return {"before": before, "after": after, "window": window.rows,
                "new_worker": monitor._worker is not parent_worker,
                "alive": monitor._worker.alive, "warned": prefork._warned["workers"]}

    result = in_child(child)
    assert result == {"before": [0, 0], "after": [0, 3], "window": 3, "new_worker": True,
                      "alive": True, "warned": True}
    # The parent is unaffected.
    assert monitor.snapshot().counts.predictions.tolist() == [7, 0]
    assert monitor._worker is parent_worker and monitor.close_window().rows == 7
    monitor.close()


def test_a_function_watched_before_the_fork_counts_every_row_in_the_child(registry):
    # gunicorn --preload: the model and its watched predict_proba are made in the parent.
    monitor = ModelMonitor(model="w", n_classes=2, registry=registry, background=False)

    @monitor.watch
    def predict_proba(X):
        return np.tile([0.2, 0.8], (len(X), 1))

    predict_proba(np.zeros((4, 3)))  # the warm-up, counted in the parent only

    def child():
        for rows in (1, 2, 3, 4, 5):
            predict_proba(np.zeros((rows, 3)))
        return [monitor.snapshot().counts.predictions.tolist(), monitor.close_window().rows]

    assert in_child(child) == [[0, 15], 15]
    assert monitor.snapshot().counts.predictions.tolist() == [0, 4]
    monitor.close()


def test_locks_held_at_the_fork_are_fresh_in_the_child(registry):
    monitor = ModelMonitor(model="l", n_classes=2, registry=registry, background=False)
    monitor.observe([[0.5, 0.5]])
    # Another thread of the parent is processing (or staging) right at the fork.
    with monitor._pipeline.lock, monitor._staging.lock, monitor._schema._lock:
        result = in_child(lambda: [monitor.observe([[0.1, 0.9]]) is None,
                                   monitor.snapshot().counts.predictions.tolist()])
    assert result == [True, [0, 1]]
    assert monitor.snapshot().counts.predictions.tolist() == [1, 0]


def test_a_child_starts_its_window_history_empty_and_writes_its_own_lines(registry, tmp_path):
    monitor = ModelMonitor(model="h", n_classes=2, registry=registry, background=False)
    path = str(tmp_path / "h.jsonl")
    monitor.history = WindowHistory("h", file=HistoryFile(path, "h", 1 << 20, 2))
    monitor.observe([[0.5, 0.5]])
    monitor.close_window()
    monitor.history.file.flush()
    # The parent's writer holds its lock at the fork: the child must not wait for it.
    with monitor.history._lock, monitor.history.file._lock:
        result = in_child(lambda: [len(monitor.history), monitor.observe([[0.1, 0.9]]),
                                   monitor.close_window().rows, len(monitor.history),
                                   monitor.history.close()])
    assert result == [0, None, 1, 1, None]
    with open(path) as lines:
        rows = [json.loads(line)["rows"] for line in lines]
    assert rows == [1, 1]  # the parent's window, then the child's
    assert len(monitor.history) == 1
    monitor.close()


def test_seeded_children_sample_differently(registry):
    monitor = ModelMonitor(model="s", n_classes=2, registry=registry, background=False,
                           random_state=3, reservoir_size=5)

    def child():
        monitor.observe(np.column_stack([np.linspace(0, 1, 100), np.linspace(1, 0, 100)]))
        monitor.flush()
        return monitor._pipeline.ledger.active.positions[:5].tolist()

    assert in_child(child) != in_child(child)


def test_taken_port_returns_a_handle_that_does_not_serve(registry, caplog):
    monitor = ModelMonitor(model="p", n_classes=2, registry=registry, background=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, "mlwatcher_exporter"):
            prefork._warned["port"] = False
            first = monitor.start_http_server(port)
            second = monitor.start_http_server(port)
    assert isinstance(first, NotServing) and not first.serving and not second.serving
    assert first.port == port and "in use" in first.reason.lower()
    first.shutdown()
    warnings = [r for r in caplog.records if "is taken" in r.getMessage()]
    assert len(warnings) == 1 and "PROMETHEUS_MULTIPROC_DIR" in warnings[0].getMessage()
    monitor.observe([[0.3, 0.7]])  # the monitor keeps working
    assert monitor.snapshot().counts.predictions.tolist() == [0, 1]


def test_a_free_port_serves(registry):
    monitor = ModelMonitor(model="q", n_classes=2, registry=registry, background=False)
    server = monitor.start_http_server(0)
    try:
        assert server.serving and server.port > 0
    finally:
        server.shutdown()


def test_bad_arguments_still_raise(registry):
    monitor = ModelMonitor(model="r", n_classes=2, registry=registry, background=False)
    with pytest.raises(ValueError, match="port"):
        monitor.start_http_server(70000)


def test_server_parent_reads_the_parents_command_line():
    sleep = "import time; time.sleep(60)"
    plain = subprocess.Popen([sys.executable, "-c", sleep])
    server = subprocess.Popen([sys.executable, "-c", sleep, "gunicorn", "app:app"])
    try:
        for process in (plain, server):  # until each has exec'd (no timed assertion)
            while b"time.sleep" not in Path(f"/proc/{process.pid}/cmdline").read_bytes():
                time.sleep(0.01)
        assert server_parent(plain.pid) is None
        assert server_parent(server.pid) == "gunicorn"
    finally:
        for process in (plain, server):
            process.kill()
            process.wait()
    assert server_parent(2 ** 22 + 12345) is None  # no such process
