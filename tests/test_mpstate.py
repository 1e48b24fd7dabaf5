"""Worker state files: generic counters, atomic files, round trips."""

from __future__ import annotations

import os

import numpy as np

from mlwatcher_exporter.counts import LifetimeCounts
from mlwatcher_exporter.latelabels import LateLabelCounts
from mlwatcher_exporter.mpstate import (
    WindowRecord, WorkerState, decode_attributes, encode_attributes, merge_attributes,
    read_states, state_paths, write_state,
)
from mlwatcher_exporter.window import WindowSample


def test_a_counter_added_to_lifetime_counts_flows_through():
    parts = []
    for scale in (1, 2):
        counts = LifetimeCounts(3)
        counts.predictions += scale
        counts.pred1_sum = 0.5 * scale
        # What another branch may add: a matrix, a number, a mapping, edges, a time.
        counts.confusion = np.full((3, 3), scale, dtype=np.int64)
        counts.feature_sum = {"f0": 1.5 * scale}
        counts.spread12_edges = np.array([0.5, 0.9])
        counts.last_prediction = 10.0 * scale
        parts.append(decode_attributes(encode_attributes(counts)))
    merged = merge_attributes(parts, LifetimeCounts)
    assert merged.predictions.tolist() == [3, 3, 3]
    assert merged.pred1_sum == 1.5
    assert merged.confusion.tolist() == [[3] * 3] * 3 and merged.confusion.dtype == np.int64
    assert merged.feature_sum == {"f0": 4.5}
    assert merged.spread12_edges.tolist() == [0.5, 0.9]  # configuration: not summed
    assert merged.last_prediction == 20.0
    assert isinstance(merged.copy(), LifetimeCounts)


def test_fleet_counters_and_their_layout_merge():
    """Workers' fleet counters (fleetcounts.py) sum; the layout and feature columns,
    the same configuration in every worker, come through whole, so the collector can
    publish the merged counts."""
    from prometheus_client import CollectorRegistry, generate_latest

    from mlwatcher_exporter import ModelMonitor
    from mlwatcher_exporter.collector import MonitorCollector

    rng = np.random.default_rng(3)
    parts, monitors = [], []
    for seed in (1, 2):
        monitor = ModelMonitor(model="m", registry=None, background=False,
                               feature_names=["a", "b"], random_state=seed)
        proba = rng.dirichlet(np.ones(3), size=50)
        monitor.observe(proba, rng.normal(size=(50, 2)), labels=rng.integers(0, 3, 50))
        monitor.flush()
        counts = monitor.snapshot().counts
        parts.append(decode_attributes(encode_attributes(counts)))
        monitors.append(counts)
    merged = merge_attributes(parts, LifetimeCounts)
    assert merged.layout == monitors[0].layout
    assert merged.feature_columns.names == ("a", "b")
    for name, value in vars(monitors[0]).items():
        if isinstance(value, np.ndarray) and not name.endswith("_edges"):
            np.testing.assert_array_equal(getattr(merged, name), value + getattr(monitors[1], name),
                                          err_msg=name)

    class Merged:
        """The last monitor, publishing the merged counts (as multiprocess.py does)."""

        def __getattr__(self, name):
            return getattr(monitor, name)

        def snapshot(self):
            return monitor.snapshot()._replace(counts=merged)

    registry = CollectorRegistry()
    collector = MonitorCollector()
    collector.add(Merged())
    registry.register(collector)
    page = generate_latest(registry).decode()
    assert 'mlwatcher_predictions_total{class="0",model="m"}' in page
    total = sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines()
                if line.startswith("mlwatcher_predictions_total{"))
    assert total == 100


def test_late_label_counts_merge():
    first, second = LateLabelCounts(matched=2), LateLabelCounts(matched=3)
    first.unmatched["unknown"] = 4
    merged = merge_attributes([decode_attributes(encode_attributes(c))
                               for c in (first, second)], LateLabelCounts)
    assert merged.matched == 5 and merged.unmatched["unknown"] == 4


def test_write_and_read_back(tmp_path):
    counts = LifetimeCounts(2)
    counts.predictions[:] = (4, 1)
    sample = WindowSample(np.full((3, 2), 0.5), np.zeros(3, dtype=np.intp), np.ones((3, 1)),
                          np.ones(3, dtype=bool), np.array([0, -1, 1]), 5, np.array([5, 0]))
    state = WorkerState("model/ä", "123_ab", 99.0, False, 7, 60.0, 3, 10, ["x", "y"],
                        encode_attributes(counts), None, {"proba": 2},
                        {("labels", "unknown_class"): 1},
                        [WindowRecord(7, 360.0, sample, ["f"], [False], {})])
    write_state(str(tmp_path), state, windows_changed=True)
    assert sorted(os.listdir(tmp_path)) == sorted(
        os.path.basename(p) for p in state_paths(str(tmp_path), "123_ab", "model/ä"))
    (back,) = read_states(str(p) for p in tmp_path.iterdir())
    assert back.model == "model/ä" and back.closed_through == 7
    assert back.dropped == {("labels", "unknown_class"): 1}
    assert decode_attributes(back.counts)["predictions"].tolist() == [4, 1]
    window = back.windows[0]
    assert window.sample.rows == 5 and window.sample.labels.tolist() == [0, -1, 1]
    assert window.feature_names == ["f"]
    # Counters only: the windows file is kept as it was.
    state.windows = []
    write_state(str(tmp_path), state, windows_changed=False)
    (back,) = read_states(str(p) for p in tmp_path.iterdir())
    assert len(back.windows) == 1


def test_unreadable_files_are_skipped(tmp_path):
    (tmp_path / "mlwatcher_1_x_y.json").write_text("{not json")
    (tmp_path / "counter_1.db").write_bytes(b"\0")
    assert read_states(str(p) for p in tmp_path.iterdir()) == []
