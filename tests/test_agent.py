"""MonitoringAgent: the ancestor's API, one import away, and where the ancestor differed."""

import importlib.util
import logging
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import precision_score, recall_score

from mlwatcher_exporter import MonitoringAgent
from mlwatcher_exporter.config import DEFAULT_PORT

from _prometheus import LOOPBACK, free_port
from reference import (ancestor_label_scores, ancestor_spread12, ancestor_treats_as_discrete,
                       ancestor_window_predictions, assert_stats_equal, reference_stats)

ROOT = Path(__file__).parent.parent
EXAMPLE = Path(__file__).parent / "fixtures" / "ancestor_example.py"


def scrape(port):
    """Every sample of ``http://127.0.0.1:port/metrics``, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def refused(port):
    try:
        scrape(port)
    except urllib.error.URLError:
        return True
    return False


def load_example():
    spec = importlib.util.spec_from_file_location("ancestor_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- the ancestor's arguments

def test_agent_maps_the_ancestor_arguments(registry):
    agent = MonitoringAgent(frequency=5, max_buffer_size=500, n_classes=10, agent_id="canary",
                            server_IP="127.0.0.1", server_port=8000, registry=registry,
                            background=False)
    assert agent.monitor.model == "canary"
    assert agent.monitor.window_seconds == 300.0 and agent.monitor.reservoir_size == 500
    assert agent.server_port == 8000


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


@pytest.mark.parametrize("port, error, message", [
    ("8000", TypeError, r"server_port == '8000', must be an int"),
    (True, TypeError, r"server_port == True, must be an int"),
    (70000, ValueError, r"server_port == 70000, must be in \[0, 65535\]"),
    (-1, ValueError, r"server_port == -1, must be in \[0, 65535\]"),
])
def test_bad_server_port(port, error, message):
    with pytest.raises(error, match=message):
        MonitoringAgent(frequency=1, max_buffer_size=10, n_classes=2, server_port=port,
                        registry=None)


# ---------------------------------------------------------------- run_local_server

def test_run_local_server_serves_metrics_on_server_port(registry, caplog):
    port = free_port()
    agent = MonitoringAgent(frequency=1, max_buffer_size=100, n_classes=3, agent_id="digits",
                            server_port=port, registry=registry, background=False)
    with caplog.at_level(logging.INFO, logger="mlwatcher_exporter"):
        server = agent.run_local_server(n_sockets=5)
    try:
        assert server.port == port
        assert f"serves /metrics on http://127.0.0.1:{port}/metrics" in caplog.text
        assert any(r.levelno == logging.INFO and str(port) in r.getMessage()
                   for r in caplog.records)
        agent.collect_data(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.2, 0.5, 0.3]]),
                           label_matrix=[0, 2, 2])
        samples = scrape(port)
        assert sample(samples, "mlwatcher_predictions_total", model="digits", **{"class": "0"}) == 1
        assert sample(samples, "mlwatcher_predictions_total", model="digits", **{"class": "1"}) == 1
        assert sample(samples, "mlwatcher_predictions_total", model="digits", **{"class": "2"}) == 1
        assert sample(samples, "mlwatcher_correct_predictions_total", model="digits",
                      **{"class": "2"}) == 1
        assert agent.run_local_server() is server  # a second call: the same server
    finally:
        agent.close()
    assert refused(port)


def test_run_local_server_defaults_to_the_exporter_port(registry):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if probe.connect_ex((LOOPBACK, DEFAULT_PORT)) == 0:
            pytest.skip(f"port {DEFAULT_PORT} is in use on this machine")
    agent = MonitoringAgent(frequency=1, max_buffer_size=10, n_classes=2, registry=registry,
                            background=False)
    try:
        assert agent.run_local_server().port == DEFAULT_PORT
        assert any(name == "mlwatcher_model_info" for name, _ in scrape(DEFAULT_PORT))
    finally:
        agent.close()


def test_agents_of_one_registry_share_the_port(registry):
    """The ancestor's canary pattern: two agents, one server_port, both served."""
    port = free_port()
    production = MonitoringAgent(frequency=1, max_buffer_size=10, n_classes=2,
                                 agent_id="production", server_port=port, registry=registry,
                                 background=False)
    canary = MonitoringAgent(frequency=1, max_buffer_size=10, n_classes=2, agent_id="canary",
                             server_port=port, registry=registry, background=False)
    try:
        assert canary.run_local_server() is production.run_local_server()
        production.collect_data([[0.9, 0.1]])
        canary.collect_data([[0.2, 0.8]])
        samples = scrape(port)
        assert sample(samples, "mlwatcher_predictions_total", model="production",
                      **{"class": "0"}) == 1
        assert sample(samples, "mlwatcher_predictions_total", model="canary",
                      **{"class": "1"}) == 1
        production.close()
        assert sample(scrape(port), "mlwatcher_predictions_total", model="canary",
                      **{"class": "1"}) == 1
    finally:
        production.close()
        canary.close()
    assert refused(port)


def test_port_of_another_registry_or_process_is_refused_clearly(registry):
    port = free_port()
    first = MonitoringAgent(frequency=1, max_buffer_size=10, n_classes=2, server_port=port,
                            registry=registry, background=False)
    other = MonitoringAgent(frequency=1, max_buffer_size=10, n_classes=2, server_port=port,
                            registry=CollectorRegistry(), background=False)
    try:
        first.run_local_server()
        with pytest.raises(ValueError, match=f"server_port == {port} already serves another"):
            other.run_local_server()
    finally:
        first.close()
        other.close()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((LOOPBACK, 0))
        squatter.listen(1)
        busy = squatter.getsockname()[1]
        agent = MonitoringAgent(frequency=1, max_buffer_size=10, n_classes=2, server_port=busy,
                                registry=CollectorRegistry(), background=False)
        with pytest.raises(OSError, match=f"server_port == {busy}: cannot listen"):
            agent.run_local_server()
        agent.close()


def test_run_local_server_needs_a_registry():
    agent = MonitoringAgent(frequency=1, max_buffer_size=10, n_classes=2, registry=None,
                            background=False)
    with pytest.raises(ValueError, match="registry == None, must have a registry"):
        agent.run_local_server()


# ---------------------------------------------------------------- the ancestor's own example

def test_the_ancestors_example_publishes_its_batches():
    """tests/fixtures/ancestor_example.py, run as a user would: a real process, a real
    scrape of its server_port, counts checked against its batches."""
    n_batches, seed, port = 15, 7, free_port()
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", str(port), "--batches", str(n_batches),
         "--sleep", "0", "--seed", str(seed)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=ROOT,
    )
    try:
        lines = []
        reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout=120)
        assert lines and lines[0].startswith("collected"), (
            f"no report from the example: {lines}, exit {process.poll()}")
        samples = scrape(port)
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
    assert process.returncode == 0, process.stderr.read()
    process.stdout.close()
    process.stderr.close()

    batches = list(load_example().batches(n_batches, seed))
    proba = np.concatenate([batch[0] for batch in batches])
    labels = np.concatenate([batch[2] for batch in batches])
    assert lines[0].strip() == f"collected {len(proba)} rows in {n_batches} batches"
    predicted, truth = proba.argmax(axis=1), labels.argmax(axis=1)
    model = "MNIST_Multiclass"
    for klass in range(10):
        label = {"model": model, "class": str(klass)}
        assert sample(samples, "mlwatcher_predictions_total", **label) == \
            np.sum(predicted == klass), klass
        assert sample(samples, "mlwatcher_labeled_predictions_total", **label) == \
            np.sum(truth == klass), klass
        assert sample(samples, "mlwatcher_correct_predictions_total", **label) == \
            np.sum((truth == klass) & (predicted == klass)), klass
    assert sample(samples, "mlwatcher_prediction_pred1_count", model=model) == len(proba)
    assert sample(samples, "mlwatcher_prediction_pred1_sum", model=model) == \
        pytest.approx(proba.max(axis=1).sum())
    rejected = {labels: value for (name, labels), value in samples.items()
                if name == "mlwatcher_rejected_rows_total"}
    assert rejected and set(rejected.values()) == {0.0}
    info = [dict(labels) for name, labels in samples if name == "mlwatcher_model_info"]
    assert info and info[0]["model"] == model and info[0]["reservoir_size"] == "100"
    assert info[0]["n_classes"] == "10" and float(info[0]["window_seconds"]) == 60.0


# ---------------------------------------------------------------- where the ancestor differed

def window_samples(registry, agent):
    agent.monitor.close_window()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() for s in family.samples}


def test_integer_columns_were_never_discrete_in_the_ancestor(registry):
    pixels = np.random.default_rng(1).integers(0, 17, size=(40, 3))
    for dtype in (np.int64, np.int32, np.uint8):
        assert not ancestor_treats_as_discrete(pixels.astype(dtype), 0)
    # only Python ints passed its check, which numpy arrays hold as dtype object only
    assert ancestor_treats_as_discrete(pixels.astype(object), 0)

    agent = MonitoringAgent(frequency=1, max_buffer_size=100, n_classes=2, registry=registry,
                            background=False)
    agent.collect_data(np.tile([[0.6, 0.4]], (40, 1)), input_matrix=pixels)
    samples = window_samples(registry, agent)
    for column in range(3):
        published = {dict(labels)["stat"]: value for (name, labels), value in samples.items()
                     if name == "mlwatcher_feature" and dict(labels)["feature"] == f"f{column}"}
        assert_stats_equal(published, reference_stats(pixels[:, column]))
    assert not any(name == "mlwatcher_feature_value_ratio" for name, _ in samples)


def test_tied_top_probabilities_ours_match_scikit_learn_the_ancestor_did_not(registry):
    proba = np.array([[0.4, 0.4, 0.2], [0.4, 0.4, 0.2], [0.1, 0.3, 0.6],
                      [0.3, 0.3, 0.4], [0.5, 0.25, 0.25], [0.2, 0.6, 0.2]])
    labels = np.array([0, 1, 2, 2, 0, 1])
    agent = MonitoringAgent(frequency=1, max_buffer_size=100, n_classes=3, registry=registry,
                            background=False)
    agent.collect_data(proba, label_matrix=labels)
    samples = window_samples(registry, agent)

    def ours(name):
        return np.array([sample(samples, name, model="1", **{"class": str(k)})
                         for k in range(3)])

    predicted = proba.argmax(axis=1)
    sklearn = {"precision": precision_score(labels, predicted, labels=[0, 1, 2], average=None,
                                            zero_division=0),
               "recall": recall_score(labels, predicted, labels=[0, 1, 2], average=None,
                                      zero_division=0)}
    ancestor = ancestor_label_scores(proba, np.eye(3)[labels])
    for name in ("precision", "recall"):
        np.testing.assert_allclose(ours(f"mlwatcher_{name}"), sklearn[name])
        assert not np.allclose(ancestor[name], sklearn[name]), name
    # the ancestor counted both tied classes of rows 0 and 1 as predicted
    np.testing.assert_allclose(ancestor["precision"], [2 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(ancestor["recall"], [1.0, 1.0, 1.0])


def test_the_ancestor_applied_the_last_threshold_to_the_whole_window(registry):
    calls = [(np.array([[0.7, 0.3], [0.6, 0.4]]), 0.2), (np.array([[0.9, 0.1]]), 0.5)]
    agent = MonitoringAgent(frequency=1, max_buffer_size=100, n_classes=2, registry=registry,
                            background=False)
    for proba, threshold in calls:
        agent.collect_data(proba, threshold=threshold)
    samples = window_samples(registry, agent)
    ours = [sample(samples, "mlwatcher_predicted_class_rows", model="1", **{"class": str(k)})
            for k in range(2)]
    assert ours == [1, 2]  # each call's own threshold
    ancestor = ancestor_window_predictions(calls)
    assert np.bincount(ancestor, minlength=2).tolist() == [3, 0]


def test_a_constant_row_crashed_the_ancestors_metrics(registry):
    proba = np.array([[1 / 3, 1 / 3, 1 / 3], [0.4, 0.4, 0.2], [0.7, 0.2, 0.1]])
    with pytest.raises(ValueError):
        ancestor_spread12(proba)
    np.testing.assert_allclose(ancestor_spread12(proba[1:]), [0.2, 0.5])  # a tie looked sure

    agent = MonitoringAgent(frequency=1, max_buffer_size=100, n_classes=3, registry=registry,
                            background=False)
    agent.collect_data(proba)
    samples = window_samples(registry, agent)
    spread = {dict(labels)["stat"]: value for (name, labels), value in samples.items()
              if name == "mlwatcher_spread12"}
    assert_stats_equal(spread, reference_stats(np.array([0.0, 0.0, 0.5])))
    assert sample(samples, "mlwatcher_window_rows", model="1") == 3
