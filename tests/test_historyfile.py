"""History files: rotation by size, failures counted and logged at a bounded rate,
pandas reading what a monitor wrote."""

import json
import logging
import os

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry

from mlwatcher_exporter import ModelMonitor
from mlwatcher_exporter.historyfile import HistoryFile, history_path
from mlwatcher_exporter.ratelog import RateLimitedLogger

from conftest import ManualClock


def record(index, padding=0):
    return {"model": "m", "index": index, "pad": "x" * padding}


def test_files_rotate_by_size_and_keep_the_newest(tmp_path):
    path = str(tmp_path / "sub" / "m.jsonl")  # the directory is created
    file = HistoryFile(path, "m", max_bytes=200, max_files=3)
    lines = [json.dumps(record(i, 30), separators=(",", ":")) + "\n" for i in range(20)]
    for i in range(20):
        assert file.write(record(i, 30))
    names = file.files()
    assert names == [path + ".2", path + ".1", path]
    assert all(os.path.getsize(name) <= 200 for name in names)
    kept = "".join(open(name).read() for name in names)
    assert lines[-1] in kept and kept == "".join(lines[-kept.count("\n"):])
    assert not os.path.exists(path + ".3")


def test_one_file_starts_over_and_a_long_line_is_written_alone(tmp_path):
    path = str(tmp_path / "m.jsonl")
    file = HistoryFile(path, "m", max_bytes=100, max_files=1)
    file.write(record(0))
    file.write(record(1, 300))
    assert [json.loads(line)["index"] for line in open(path)] == [1]
    file.write(record(2))
    assert [json.loads(line)["index"] for line in open(path)] == [2]


def test_failures_are_counted_logged_at_a_bounded_rate_and_never_raised(tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    registry = CollectorRegistry()
    clock = ManualClock()
    log = RateLimitedLogger(logging.getLogger("mlwatcher_exporter"), 60.0, _clock=clock)
    file = HistoryFile(str(blocker / "m.jsonl"), "m", 1024, 2, registry=registry, _log=log)
    with caplog.at_level(logging.WARNING, "mlwatcher_exporter"):
        for i in range(5):
            file.put(record(i))
        file.flush()
        assert not file.write({"value": float("nan")})  # not JSON
    labels = {"model": "m", "reason": "io"}
    assert registry.get_sample_value("mlwatcher_history_write_failures_total", labels) == 5
    assert registry.get_sample_value("mlwatcher_history_write_failures_total",
                                     {"model": "m", "reason": "encode"}) == 1
    assert len([r for r in caplog.records if "could not write" in r.getMessage()]) == 1
    file.close()
    assert registry.get_sample_value("mlwatcher_history_write_failures_total", labels) is None
    file.put(record(9))  # after close: ignored, no thread, no error


def test_a_configured_monitor_writes_every_window_that_pandas_reads(tmp_path):
    registry = CollectorRegistry()
    m = ModelMonitor.from_config(
        {"model": "fraud/eu", "class_names": ["no", "yes"], "feature_names": ["amount"],
         "history": {"directory": str(tmp_path), "max_bytes": 4096, "max_files": 10}},
        registry=registry, background=False)
    rng = np.random.default_rng(1)
    for rows in range(1, 31):
        yes = rng.random(rows)
        m.observe(np.column_stack([1 - yes, yes]), rng.normal(size=(rows, 1)),
                  labels=rng.integers(0, 2, rows))
        m.close_window()
    m.close()  # writes what is queued
    path = history_path(str(tmp_path), "fraud/eu")
    assert path == str(tmp_path / "fraud%2Feu.jsonl")
    names = m.history.file.files()
    assert len(names) > 1  # rotated
    frame = pd.concat([pd.read_json(name, lines=True) for name in names], ignore_index=True)
    assert frame["rows"].tolist() == list(range(31 - len(frame), 31))
    assert (frame["model"] == "fraud/eu").all()
    assert frame["timestamp"].is_monotonic_increasing
    assert frame["window_end"].is_monotonic_increasing
    assert set(frame["class_rows"].iloc[-1]) == {"no", "yes"}
    assert registry.get_sample_value("mlwatcher_history_write_failures_total",
                                     {"model": "fraud/eu", "reason": "io"}) is None  # closed
    assert m.history.file.failures == {"io": 0, "queue_full": 0, "encode": 0}


def test_a_blocked_writer_never_blocks_the_caller_and_counts_what_it_refuses(tmp_path):
    from _prometheus import wait_for
    from mlwatcher_exporter.historyfile import QUEUE_SIZE

    path = tmp_path / "m.jsonl"
    os.mkfifo(path)  # opening it for writing blocks until someone reads
    file = HistoryFile(str(path), "m", 1 << 20, 2)
    file.put(record(0))
    wait_for(lambda: file._queue.qsize() == 0, 30, lambda: "the writer took nothing")
    for i in range(QUEUE_SIZE + 5):
        file.put(record(i + 1))  # returns at once: the writer is stuck in open()
    assert file.failures["queue_full"] == 5
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    received = b""
    try:
        def drain():
            nonlocal received
            try:
                received += os.read(reader, 1 << 20)
            except BlockingIOError:
                pass
            return received.count(b"\n") == QUEUE_SIZE + 1
        wait_for(drain, 60, lambda: f"{len(received.splitlines())} lines read")
    finally:
        file.close()
        os.close(reader)
    assert [json.loads(line)["index"] for line in received.splitlines()] == \
        list(range(QUEUE_SIZE + 1))


def test_serve_writes_one_history_file_per_model(tmp_path):
    from mlwatcher_exporter.service import Service
    from mlwatcher_exporter.serveconfig import parse_serve_config

    settings = parse_serve_config({
        "n_classes": 2, "history": {"directory": str(tmp_path / "h"), "keep": 3},
        "models": [{"model": "a"}, {"model": "b b"}]})
    service = Service(settings, "127.0.0.1", 0, registry=CollectorRegistry())
    for name, monitor in service.monitors.items():
        for rows in range(1, 5):
            monitor.observe([[0.3, 0.7]] * rows)
            monitor.close_window()
        assert len(monitor.history) == 3
    service.shutdown()  # closes the monitors, which write what is queued
    a = pd.read_json(tmp_path / "h" / "a.jsonl", lines=True)
    b = pd.read_json(tmp_path / "h" / "b%20b.jsonl", lines=True)
    assert a["rows"].tolist() == b["rows"].tolist() == [1, 2, 3, 4]
    assert b["model"].unique().tolist() == ["b b"]
