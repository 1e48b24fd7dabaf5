"""Window history: the record of each closed window, the bounded memory, the settings."""

import json
import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from mlwatcher_exporter import ModelMonitor
from mlwatcher_exporter.config import ConfigError, HistorySettings, parse_config
from mlwatcher_exporter.history import MAX_KEEP, WindowHistory, window_record
from mlwatcher_exporter.judge import WindowJudgement
from mlwatcher_exporter.serveconfig import parse_serve_config
from mlwatcher_exporter.window import WindowStats

from conftest import ManualClock

PROBA = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.6, 0.1], [0.5, 0.4, 0.1]])


def monitor(**kwargs):
    kwargs.setdefault("class_names", ["cat", "dog", "<bird>"])
    return ModelMonitor(model="pets", registry=CollectorRegistry(), background=False,
                        feature_names=["weight", "legs"], categorical_features=["legs"],
                        **kwargs)


def test_the_record_holds_the_published_window():
    m = monitor()
    features = np.array([[1.0, 4], [2.0, 4], [np.nan, 2], [4.0, 4]])
    m.observe(PROBA, features, labels=["cat", "<bird>", "cat", "cat"])
    window = m.close_window()
    record = window_record("pets", m.class_labels, window)
    json.dumps(record, allow_nan=False)  # strict JSON: NaN written as null
    assert record["model"] == "pets" and record["rows"] == 4 == record["sampled_rows"]
    assert record["window_end"] == window.end_time
    assert record["timestamp"].endswith("Z") and record["timestamp"][:4].isdigit()
    assert record["pred1"]["median"] == pytest.approx(np.median(PROBA.max(axis=1)))
    top2 = np.sort(PROBA, axis=1)[:, -2]
    assert record["spread12"]["mean"] == pytest.approx(np.mean(PROBA.max(axis=1) - top2))
    assert record["class_rows"] == {"cat": 2, "dog": 1, "<bird>": 1}
    assert record["class_ratio"] == {"cat": 0.5, "dog": 0.25, "<bird>": 0.25}
    # predicted: cat, <bird>, dog, cat; labels: cat, <bird>, cat, cat
    assert record["labeled_rows"] == 4 and record["accuracy"] == 0.75
    assert record["precision"]["<bird>"] == 1.0
    assert record["features"]["weight"]["mean"] == pytest.approx(7 / 3)
    assert record["missing_ratio"]["weight"] == 0.25
    assert record["value_ratios"]["legs"] == {"4": 0.75, "2": 0.25}
    assert "drift" not in record


def test_non_finite_numbers_become_null_and_a_drift_score_is_kept():
    judgement = WindowJudgement(rows=3, drifted_features=1, feature_drift={
        "x": {"psi": 0.4, "ks": 0.2}, "y": {"psi": math.inf}})
    window = WindowStats(end_time=10.5, duration=1.0, rows=0, sampled_rows=0,
                         class_rows=np.zeros(2, int), class_ratio=None, pred1=None,
                         spread12=None, features={"x": {"mean": math.nan}},
                         judgement=judgement)
    record = window_record("m", ["a", "b"], window)
    assert record["features"] == {"x": {"mean": None}}
    assert record["drift"] == {"x": 0.4, "y": None}
    assert record["drifted_features"] == 1 and "estimated_accuracy" not in record
    assert record["accuracy"] is None and record["labeled_rows"] == 0
    assert record["timestamp"] == "1970-01-01T00:00:10.500Z"


def test_a_monitor_with_a_reference_records_each_windows_drift_and_estimate():
    rng = np.random.default_rng(3)
    reference = rng.normal(0.0, 1.0, size=(500, 2))
    labels = (reference[:, 0] > 0).astype(int)
    proba_of = lambda x: np.column_stack([1 / (1 + np.exp(3 * x[:, 0])),  # noqa: E731
                                          1 / (1 + np.exp(-3 * x[:, 0]))])
    m = ModelMonitor(model="d", n_classes=2, feature_names=["x", "y"],
                     registry=CollectorRegistry(), background=False)
    m.history = WindowHistory("d")
    m.fit_reference(reference, proba_of(reference), labels)
    current = rng.normal(0.0, 1.0, size=(400, 2))
    current[:, 1] += 3.0  # y drifts, x does not
    m.observe(proba_of(current), features=current)
    m.close_window()
    record = m.history.records()[-1]
    assert set(record["drift"]) == {"x", "y"} and record["drift"]["y"] > 1 > record["drift"]["x"]
    assert record["drifted_features"] >= 1
    assert 0.5 < record["estimated_accuracy"] <= 1 and record["estimated_accuracy_stderr"] > 0
    json.dumps(record, allow_nan=False)
    m.close()


def test_each_window_is_recorded_once_and_memory_is_bounded():
    m = monitor()
    m.history = WindowHistory("pets", keep=3)
    for rows in range(1, 6):
        m.observe(PROBA[:rows % 4 + 1])
        m.close_window()
        m.tick()  # a scrape after the close records nothing new
        m.snapshot()
    records = m.history.records()
    assert len(records) == 3 == len(m.history)
    assert [r["rows"] for r in records] == [4, 1, 2]  # the last three, oldest first
    assert [r["rows"] for r in m.history.records(2)] == [1, 2]
    assert m.history.records(100) == records


def test_a_window_closed_by_its_clock_is_recorded_by_the_next_tick():
    clock = ManualClock()
    m = ModelMonitor(model="timed", n_classes=2, window_seconds=10, registry=None,
                     background=False, _clock=clock)
    m.observe([[0.2, 0.8]])
    m.tick()
    assert m.history.records() == []
    clock.advance(10.5)
    m.tick()
    assert [r["rows"] for r in m.history.records()] == [1]
    assert m.history.records()[0]["class_rows"] == {"0": 0, "1": 1}


def test_the_keep_bound_is_checked():
    with pytest.raises(ValueError, match="keep == 0"):
        WindowHistory("m", keep=0)
    with pytest.raises(TypeError, match="keep == '5'"):
        WindowHistory("m", keep="5")
    WindowHistory("m", keep=MAX_KEEP)


def test_the_history_section_of_a_monitor_file(tmp_path):
    settings = parse_config({"n_classes": 2, "history": {
        "directory": str(tmp_path), "max_bytes": 4096, "max_files": 2, "keep": 7}})
    assert settings.history == HistorySettings(str(tmp_path), 4096, 2, 7)
    assert parse_config({}).history == HistorySettings()
    m = ModelMonitor.from_config(settings, registry=None, background=False)
    try:
        assert m.history.keep == 7 and m.history.file.max_bytes == 4096
        assert m.history.file.path == str(tmp_path / "default.jsonl")
    finally:
        m.close()
    with pytest.raises(ConfigError) as error:
        parse_config({"history": {"max_bytes": 10, "max_files": 0, "keep": "x",
                                  "directory": "", "rotate": True}})
    text = str(error.value)
    for problem in ("history.max_bytes == 10", "history.max_files == 0",
                    "history.keep == 'x'", "history.directory == ''", "rotate"):
        assert problem in text
    with pytest.raises(ConfigError, match="history: must be a mapping"):
        parse_config({"history": [1]})


def test_the_history_section_of_a_service_file(tmp_path):
    settings = parse_serve_config({"n_classes": 2, "history": {"directory": str(tmp_path)},
                                   "models": [{"model": "a"}, {"model": "b"}]})
    assert [m.history.directory for m in settings.models] == [str(tmp_path)] * 2
    with pytest.raises(ConfigError, match="history.max_files == 1001"):
        parse_serve_config({"n_classes": 2, "history": {"max_files": 1001}})


def test_many_features_hold_fewer_windows_in_memory():
    names = [f"x{i}" for i in range(50)]
    m = ModelMonitor(model="wide", n_classes=2, feature_names=names, registry=None,
                     background=False)
    m.history = WindowHistory("wide", keep=10, max_values=1500)
    rng = np.random.default_rng(0)
    for rows in range(1, 8):
        m.observe(np.tile([0.4, 0.6], (rows, 1)), rng.normal(size=(rows, 50)))
        m.close_window()
    records = m.history.records()
    per_record = 50 * 9 + 50  # feature statistics and missing ratios, and a few more
    assert len(records) == 1500 // (per_record + 40) == 2  # the newest ones
    assert [r["rows"] for r in records] == [6, 7]
    m.history = WindowHistory("wide", keep=10, max_values=10)
    m.observe(np.tile([0.4, 0.6], (3, 1)), rng.normal(size=(3, 50)))
    m.close_window()
    assert [r["rows"] for r in m.history.records()] == [3]  # the newest is always kept
