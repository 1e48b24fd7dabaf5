"""`mlwatcher-exporter serve` as a user runs it: a real process, its command line, and
the ancestor's distant-server example publishing on the server's /metrics."""

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from mlwatcher_exporter.service import Service
from mlwatcher_exporter.serveconfig import load_serve_config

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "a-token-for-the-serve-tests-42"


def start_serve(*args, env=None):
    process = subprocess.Popen(
        [sys.executable, "-m", "mlwatcher_exporter", "serve", "--port", "0", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=ROOT, env={**os.environ, **(env or {})})
    first = process.stdout.readline()
    if not first.startswith("mlwatcher-exporter serve: models"):
        process.kill()
        raise AssertionError(first + process.stderr.read())
    return process, first.split(" on ", 1)[1].split()[0]


def stop(process):
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "serve: stopped" in out
    return out + err


def scrape(url, headers=None):
    request = urllib.request.Request(url + "/metrics", headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_serve_the_example_configuration_and_stop_on_sigterm():
    process, url = start_serve("--config", str(ROOT / "config" / "mlwatcher.yml"))
    try:
        assert url.startswith("http://127.0.0.1:")
        body = b'{"proba": [[0.2, 0.8], [0.9, 0.1]]}'
        request = urllib.request.Request(url + "/api/v1/models/default/observations", body,
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.read() == b'{"model":"default","accepted_rows":2}\n'
        samples = scrape(url)
        assert samples[("mlwatcher_predictions_total",
                        (("class", "1"), ("model", "default")))] == 1
        assert ("process_cpu_seconds_total", ()) in samples
    finally:
        stop(process)


@pytest.mark.parametrize("args, env, message", [
    (["--listen", "0.0.0.0"], {}, "beyond loopback requires a bearer token"),
    (["--listen", "0.0.0.0", "--token-file", "/nonexistent/token"], {},
     "token file '/nonexistent/token': cannot read it"),
    (["--listen", "0.0.0.0"], {"MLWATCHER_TOKEN": "short"}, "must have at least 16"),
])
def test_serve_refuses_to_listen_beyond_loopback_without_a_good_token(args, env, message):
    config = str(FIXTURES / "serve" / "two-models.yml")
    result = subprocess.run(
        [sys.executable, "-m", "mlwatcher_exporter", "serve", "--config", config, "--port",
         "0", *args], capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={**{k: v for k, v in os.environ.items() if k != "MLWATCHER_TOKEN"}, **env})
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "short" not in result.stderr  # the token is never printed


def test_serve_with_a_token_file(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    process, url = start_serve("--config", str(FIXTURES / "serve" / "two-models.yml"),
                               "--token-file", str(token_file))
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(url)
        assert refused.value.code == 401
        assert ("mlwatcher_ingest_rows_total", (("format", "npy"), ("model", "fraud"))) in \
            scrape(url, {"Authorization": f"Bearer {TOKEN}"})
    finally:
        output = stop(process)
    assert TOKEN not in output


def test_a_bad_configuration_is_reported_whole(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("models:\n  - model: a\n    n_classes: 1\n  - model: a\n  - {}\n"
                   "serve:\n  max_body_bytes: 0\n")
    result = subprocess.run([sys.executable, "-m", "mlwatcher_exporter", "serve", "--config",
                             str(bad)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert "models[0].n_classes == 1" in result.stderr
    assert "models[2].model: missing" in result.stderr
    assert "serve.max_body_bytes == 0" in result.stderr


def test_the_ancestors_distant_server_example_publishes_on_serve():
    """tests/fixtures/ancestor_remote_example.py, run as a user would against `serve`: its
    batches counted exactly on the server's /metrics."""
    n_batches, seed = 15, 3
    server, url = start_serve("--config", str(FIXTURES / "serve" / "ancestor.yml"))
    port = url.rsplit(":", 1)[1]
    example = subprocess.Popen(
        [sys.executable, str(FIXTURES / "ancestor_remote_example.py"), "--port", port,
         "--batches", str(n_batches), "--sleep", "0", "--seed", str(seed)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=ROOT)
    try:
        lines = []
        reader = threading.Thread(target=lambda: lines.append(example.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout=120)
        assert lines and lines[0].startswith("collected"), (lines, example.poll())
        sys.path.insert(0, str(FIXTURES))
        try:
            import ancestor_example
        finally:
            sys.path.pop(0)
        batches = list(ancestor_example.batches(n_batches, seed))
        proba = np.concatenate([b[0] for b in batches])
        labels = np.concatenate([b[2] for b in batches])
        model = "MNIST_Multiclass"
        key = ("mlwatcher_prediction_pred1_count", (("model", model),))
        started = time.monotonic()
        while scrape(url).get(key, 0) < len(proba) and time.monotonic() - started < 30:
            time.sleep(0.1)
        samples = scrape(url)
    finally:
        example.stdin.close()
        example.wait(timeout=30)
        stop(server)
    assert example.returncode == 0, example.stderr.read()
    predicted, truth = proba.argmax(axis=1), labels.argmax(axis=1)
    assert samples[key] == len(proba)
    for klass in range(10):
        label = (("class", str(klass)), ("model", model))
        assert samples[("mlwatcher_predictions_total", label)] == np.sum(predicted == klass)
        assert samples[("mlwatcher_labeled_predictions_total", label)] == np.sum(truth == klass)
        assert samples[("mlwatcher_correct_predictions_total", label)] == \
            np.sum((truth == klass) & (predicted == klass))
    assert samples[("mlwatcher_prediction_pred1_sum", (("model", model),))] == \
        pytest.approx(proba.max(axis=1).sum())
    assert set(v for (name, _), v in samples.items()
               if name == "mlwatcher_rejected_rows_total") == {0.0}


def test_service_in_process_closes_its_monitors():
    service = Service(load_serve_config(FIXTURES / "serve" / "two-models.yml"), "127.0.0.1", 0,
                      registry=CollectorRegistry())
    with service:
        assert service.url.startswith("http://127.0.0.1:")
    assert all(monitor._closed for monitor in service.monitors.values())
