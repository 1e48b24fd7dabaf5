"""End to end under real gunicorn with 3 sync workers: multiprocess mode publishes every
worker's rows from whichever worker is scraped, recycled workers lose nothing, and
without multiprocess mode a taken port takes nothing down."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

from _prometheus import LOOPBACK, free_port, stop_process, wait_for

pytest.importorskip("gunicorn")  # in the test extra: CI has it

FIXTURES = Path(__file__).parent / "fixtures"
pytestmark = pytest.mark.slow
WINDOW = 12.0


def start_gunicorn(tmp_path, env, *extra):
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "3", "-k", "sync", "-b", f"{LOOPBACK}:{port}",
         "--chdir", str(FIXTURES), "--log-level", "info", "--graceful-timeout", "10",
         *extra, "gunicorn_app:app"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://{LOOPBACK}:{port}"

    def up():
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {(tmp_path / 'gunicorn.log').read_text()}")
        try:
            urllib.request.urlopen(base + "/metrics", timeout=5).read()
            return True
        except OSError:
            return False

    # Three workers import scikit-learn and fit at once: slow on a loaded machine.
    wait_for(up, 240, lambda: (tmp_path / "gunicorn.log").read_text())
    return process, base


def gunicorn_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")}
    root = str(Path(__file__).parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def post(base, x, y):
    body = json.dumps({"x": x.tolist(), "y": y.tolist()}).encode()
    request = urllib.request.Request(base + "/predict", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def scrape(base):
    with urllib.request.urlopen(base + "/metrics", timeout=30) as response:
        text = response.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model", "gc") == "gc":
                key = (sample.name, tuple(sorted(sample.labels.items())))
                values[key] = sample.value
    return values


def total(values, name):
    return sum(v for (n, _), v in values.items() if n == name)


def pick(values, name, **labels):
    matches = [v for (n, ls), v in values.items()
               if n == name and all(dict(ls).get(k) == w for k, w in labels.items())]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def same_model():
    x, y = make_classification(n_samples=300, n_features=4, n_informative=3, n_redundant=0,
                               n_classes=3, random_state=0)
    return LogisticRegression(max_iter=500).fit(x, y)


@pytest.mark.parametrize("max_requests,preload", [(0, False), (5, True)],
                         ids=["3-workers", "recycled-preload"])
def test_multiprocess_mode_publishes_every_worker(tmp_path, max_requests, preload):
    directory = tmp_path / "multiproc"
    directory.mkdir()
    env = gunicorn_env(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(directory),
                       MLWATCHER_FLUSH_SECONDS="0.2", WINDOW=str(WINDOW),
                       WARMUP="1" if preload else "")
    extra = ["--max-requests", str(max_requests), "--max-requests-jitter", "0"]
    if preload:
        extra.append("--preload")
    process, base = start_gunicorn(tmp_path, env, *extra)
    try:
        rng = np.random.default_rng(5)
        n_rows, batch = 600, 20
        x = rng.normal(size=(n_rows, 4))
        y = rng.integers(0, 3, size=n_rows)
        # Every row in one window: start just after a boundary of the wall-clock grid.
        boundary = (math.floor(time.time() / WINDOW) + 1) * WINDOW
        time.sleep(boundary - time.time() + 0.2)
        pids = set()
        lock = threading.Lock()

        def sender(part):
            for start in range(part * batch, n_rows, 3 * batch):
                answer = post(base, x[start:start + batch], y[start:start + batch])
                with lock:
                    pids.add(answer["pid"])

        threads = [threading.Thread(target=sender, args=(part,)) for part in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert time.time() < boundary + WINDOW, "the rows took longer than a window"
        expected = n_rows + (1 if preload else 0)  # the warm-up, once (by the master)

        wait_for(lambda: total(scrape(base), "mlwatcher_predictions_total") == expected, 60,
                 lambda: f"totals {total(scrape(base), 'mlwatcher_predictions_total')}")
        scrapes = [scrape(base) for _ in range(20)]
        for values in scrapes:
            counters = {k: v for k, v in values.items() if k[0].endswith("_total")}
            first = {k: v for k, v in scrapes[0].items() if k[0].endswith("_total")}
            assert counters == first
            assert total(values, "mlwatcher_predictions_total") == expected
            assert total(values, "mlwatcher_labeled_predictions_total") == expected
        assert pick(scrapes[0], "mlwatcher_prediction_pred1_count") == expected

        end = boundary + WINDOW
        wait_for(lambda: scrape(base).get(("mlwatcher_window_end_timestamp_seconds",
                                          (("model", "gc"),))) == end, WINDOW + 60,
                 lambda: "the window of the rows was not published")
        pages = [scrape(base) for _ in range(10)]
        window = [{k: v for k, v in page.items()
                   if not k[0].endswith(("_total", "_bucket", "_count", "_sum", "_created"))
                   and "compute" not in k[0] and "last_prediction" not in k[0]}
                  for page in pages]
        same_window = [w for w in window
                       if w[("mlwatcher_window_end_timestamp_seconds", (("model", "gc"),))]
                       == end]
        assert len(same_window) >= 2 and all(w == same_window[0] for w in same_window)
        values = pages[0]
        assert pick(values, "mlwatcher_window_rows") == n_rows
        assert pick(values, "mlwatcher_window_sampled_rows") == n_rows
        proba = same_model().predict_proba(x)
        pred1 = proba.max(axis=1)
        assert pick(values, "mlwatcher_pred1", stat="mean") == pytest.approx(pred1.mean())
        assert pick(values, "mlwatcher_pred1", stat="median") == pytest.approx(
            np.median(pred1))
        assert pick(values, "mlwatcher_feature", feature="a", stat="mean") == pytest.approx(
            x[:, 0].mean())
        assert pick(values, "mlwatcher_feature", feature="d", stat="std") == pytest.approx(
            x[:, 3].std())
        assert pick(values, "mlwatcher_accuracy") == pytest.approx(
            accuracy_score(y, proba.argmax(axis=1)))
        log = (tmp_path / "gunicorn.log").read_text()
        if max_requests:
            assert "Autorestarting worker" in log
            assert len(pids) > 3  # workers were replaced while rows came in
        assert "Traceback" not in log
    finally:
        stop_process(process)


def test_without_multiprocess_mode_a_taken_port_takes_nothing_down(tmp_path):
    metrics_port = free_port()
    log_path = tmp_path / "serving.jsonl"
    env = gunicorn_env(tmp_path, MLWATCHER_TEST_PORT=str(metrics_port),
                       MLWATCHER_TEST_LOG=str(log_path))
    process, base = start_gunicorn(tmp_path, env)
    try:
        def three_workers():
            lines = log_path.read_text().splitlines() if log_path.exists() else []
            return [json.loads(line) for line in lines] if len(lines) >= 3 else None

        workers = wait_for(three_workers, 60, lambda: "fewer than 3 workers started")
        assert sorted(w["serving"] for w in workers) == [False, False, True]
        rng = np.random.default_rng(0)
        for _ in range(12):
            post(base, rng.normal(size=(5, 4)), rng.integers(0, 3, size=5))
        assert process.poll() is None
        with urllib.request.urlopen(f"http://{LOOPBACK}:{metrics_port}/metrics",
                                    timeout=30) as response:
            assert b"mlwatcher_model_info" in response.read()
        log = (tmp_path / "gunicorn.log").read_text()
        assert "without PROMETHEUS_MULTIPROC_DIR" in log
        assert "Shutting down" not in log and "Traceback" not in log
    finally:
        stop_process(process)
