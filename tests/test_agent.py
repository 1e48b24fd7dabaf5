"""MonitoringAgent: the ancestor's API, one import away."""

import numpy as np
import pytest

from mlwatcher_exporter import MonitoringAgent


def test_agent_maps_the_ancestor_arguments(registry):
    agent = MonitoringAgent(frequency=5, max_buffer_size=500, n_classes=10, agent_id="canary",
                            server_IP="127.0.0.1", server_port=8000, registry=registry,
                            background=False)
    assert agent.monitor.model == "canary"
    assert agent.monitor.window_seconds == 300.0 and agent.monitor.reservoir_size == 500
    agent.run_local_server()  # accepted, nothing to do


def test_collect_data_accepts_one_hot_and_indices_and_never_raises(registry):
    agent = MonitoringAgent(frequency=1, max_buffer_size=100, n_classes=3, registry=registry,
                            background=False)
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    agent.collect_data(proba, input_matrix=np.ones((2, 4)), label_matrix=np.eye(3)[[0, 2]])
    agent.collect_data(proba, label_matrix=np.array([[0], [1]]))
    agent.collect_data(np.ones((2, 5)))  # wrong class count: dropped, counted
    agent.collect_data("garbage")
    stats = agent.monitor.close_window()
    assert stats.rows == 4 and stats.scores.accuracy == pytest.approx(3 / 4)
    assert agent.monitor.rejected_rows()["n_classes"] == 2
    assert agent.monitor.rejected_rows()["type"] == 1


def test_binary_threshold_per_call(registry):
    agent = MonitoringAgent(frequency=1, max_buffer_size=100, n_classes=2, registry=registry,
                            background=False)
    agent.collect_data(np.array([[0.7, 0.3]]), threshold=0.2)
    agent.collect_data(np.array([[0.7, 0.3]]))
    np.testing.assert_array_equal(agent.monitor.close_window().class_rows, [1, 1])


def test_bad_frequency():
    with pytest.raises(ValueError, match="frequency == 0"):
        MonitoringAgent(frequency=0, max_buffer_size=10, n_classes=2, registry=None)
