"""Alerts reach people: real Prometheus, real Alertmanager, a real webhook receiver.

One stack per module, on 127.0.0.1 only:

* a monitor served by mlwatcher-exporter's own HTTP server (job `mlwatcher`, target
  label `env="production"`), fed labeled rows from a thread: all predicted right, then,
  once Prometheus has a 1-day accuracy average to compare with, all wrong;
* a second target of the same job on a port where nothing listens;
* Debian's `prometheus-alertmanager` (or `alertmanager`) with config/alertmanager.yml,
  its receivers pointed at an HTTP server of this test, timings shortened, clustering off,
  its storage in a temporary folder;
* prometheus with the shipped rule files (the `for:` of the two alerts under test
  shortened to 1 s; nothing else changed) and every interval at 1 s, sending to it.

Then MLWatcherAccuracyDropping (critical, a fleet alert) and MLWatcherExporterDown
(critical, a replica alert) must each arrive at the webhook, routed by severity, with
the labels and annotations a runbook needs. config/alertmanager.yml itself is checked
with `amtool check-config`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry

from _prometheus import LOOPBACK, Prometheus, free_port, stop_process, tail_file, wait_for
from conftest import REQUIRE_PROMETHEUS, require_binary
from mlwatcher_exporter import ModelMonitor

ROOT = Path(__file__).resolve().parent.parent
ALERTMANAGER_CONFIG = ROOT / "config" / "alertmanager.yml"
PROMETHEUS_CONFIG = ROOT / "config" / "prometheus.yml"
RECORDING = ROOT / "config" / "rules" / "mlwatcher-recording.yml"
ALERTS = ROOT / "config" / "rules" / "mlwatcher-alerts.yml"
UNDER_TEST = ("MLWatcherAccuracyDropping", "MLWatcherExporterDown")
JOB = "mlwatcher"
ENV = "production"
MODEL = "fraud"
# The external label of config/prometheus.yml, which Prometheus adds to every alert.
PROMETHEUS_NAME = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["global"]["external_labels"][
    "prometheus"]
BATCH_ROWS = 50  # every 0.1 s: 500 labeled rows/s, far over the guard of 100 in 5 minutes

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


def alertmanager_binary() -> str:
    """Debian's `prometheus-alertmanager`, or an `alertmanager` on the PATH."""
    for name in ("prometheus-alertmanager", "alertmanager"):
        path = shutil.which(name)
        if path:
            return path
    message = "neither prometheus-alertmanager nor alertmanager is installed"
    if REQUIRE_PROMETHEUS:
        pytest.fail(message + " and MLWATCHER_REQUIRE_PROMETHEUS=1", pytrace=False)
    pytest.skip(message)
    raise AssertionError  # unreachable: skip raises


class Webhook:
    """An HTTP server on loopback that keeps every notification POSTed to it."""

    def __init__(self) -> None:
        self.received: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hook._lock:
                    hook.received.append({"path": self.path, "body": json.loads(body)})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def alerts(self) -> List[Dict[str, Any]]:
        """Every alert of every notification, with the path and receiver it came by."""
        with self._lock:
            return [dict(alert, path=n["path"], receiver=n["body"]["receiver"])
                    for n in self.received for alert in n["body"]["alerts"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Alertmanager:
    """A real Alertmanager on a loopback port, clustering off, its own storage folder."""

    def __init__(self, binary: str, config: Dict[str, Any], workdir: Path) -> None:
        self.config_path = workdir / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = workdir / "alertmanager.log"
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        with open(self.log_path, "ab") as log:
            self.process: Optional[subprocess.Popen] = subprocess.Popen(
                [binary, f"--config.file={self.config_path}",
                 f"--storage.path={workdir / 'data'}",
                 f"--web.listen-address={self.address}",
                 "--cluster.listen-address=",  # no gossip port on every interface
                 "--log.level=info"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/-/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        stop_process(self.process)


def alertmanager_config(webhook: Webhook) -> Dict[str, Any]:
    """The shipped file with its receivers pointed at `webhook` (same paths) and its
    waits shortened; routes, grouping and inhibition as shipped."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            path = hook["url"].split("/", 3)[3]
            hook["url"] = f"{webhook.url}/{path}"
    routes = [config["route"]] + config["route"].get("routes", [])
    for route in routes:
        for key, value in (("group_wait", "1s"), ("group_interval", "1s"),
                           ("repeat_interval", "1h")):
            if key in route or route is config["route"]:
                route[key] = value
    return config


def fast_rules(workdir: Path) -> List[Path]:
    """The shipped rule files; the alerts under test with `for: 1s` instead of minutes."""
    alerts = yaml.safe_load(ALERTS.read_text())
    changed = 0
    for group in alerts["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in UNDER_TEST:
                rule["for"] = "1s"
                changed += 1
    assert changed == len(UNDER_TEST)
    path = workdir / "mlwatcher-alerts.yml"
    path.write_text(yaml.safe_dump(alerts, sort_keys=False))
    return [RECORDING, path]


def prometheus_config(rule_files: List[Path], alertmanager: str, targets: List[str]
                      ) -> Dict[str, Any]:
    """config/prometheus.yml with 1 s intervals, the `mlwatcher` job on `targets`
    (labelled env="production") and the shipped `alerting:` block's shape filled in."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(p) for p in rule_files]
    (job,) = [dict(j) for j in config["scrape_configs"] if j["job_name"] == JOB]
    job.pop("file_sd_configs")
    job["static_configs"] = [{"targets": targets, "labels": {"env": ENV}}]
    config["scrape_configs"] = [job]
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


class Feeder:
    """Feeds the monitor labeled batches every 0.1 s: predicted right until `fail` is set."""

    def __init__(self, monitor: ModelMonitor) -> None:
        self.monitor = monitor
        self.fail = threading.Event()
        self.stop = threading.Event()
        self.proba = np.tile([0.9, 0.1], (BATCH_ROWS, 1))  # always predicts class 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            label = 1 if self.fail.is_set() else 0
            self.monitor.observe(self.proba, labels=np.full(BATCH_ROWS, label))
            self.stop.wait(0.1)

    def close(self) -> None:
        self.stop.set()
        self._thread.join(10)


class Stack:
    def __init__(self, prometheus: Prometheus, alertmanager: Alertmanager, webhook: Webhook,
                 feeder: Feeder, live: str, dead: str) -> None:
        self.prometheus = prometheus
        self.alertmanager = alertmanager
        self.webhook = webhook
        self.feeder = feeder
        self.live = live
        self.dead = dead

    def diagnostics(self) -> str:
        active = [(a["labels"]["alertname"], a["state"]) for a in self.prometheus.alerts()]
        return (f"prometheus alerts: {active}\nwebhook got: {self.webhook.alerts()}\n"
                f"alertmanager log:\n{tail_file(self.alertmanager.log_path)}\n"
                f"prometheus log:\n{tail_file(self.prometheus.log_path)}")

    def delivered(self, alertname: str) -> List[Dict[str, Any]]:
        return [a for a in self.webhook.alerts()
                if a["labels"].get("alertname") == alertname and a["status"] == "firing"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus_bin = require_binary("prometheus")
    alertmanager_bin = alertmanager_binary()
    workdir = tmp_path_factory.mktemp("alertmanager-e2e")
    (workdir / "am").mkdir()
    (workdir / "prom").mkdir()
    webhook = Webhook()
    registry = CollectorRegistry()
    monitor = ModelMonitor(model=MODEL, n_classes=2, window_seconds=1, registry=registry)
    server = monitor.start_http_server(port=0)
    live = server.url[len("http://"):-len("/metrics")]
    dead = f"{LOOPBACK}:{free_port()}"  # nothing listens there
    feeder = Feeder(monitor)
    alertmanager = prometheus = None
    try:
        alertmanager = Alertmanager(alertmanager_bin, alertmanager_config(webhook),
                                    workdir / "am")
        wait_for(alertmanager.ready, 60, lambda: (
            f"alertmanager not ready; log:\n{tail_file(alertmanager.log_path)}"))
        prometheus = Prometheus(
            prometheus_bin,
            prometheus_config(fast_rules(workdir), alertmanager.address, [live, dead]),
            workdir / "prom")
        prometheus.start()
        yield Stack(prometheus, alertmanager, webhook, feeder, live, dead)
    finally:
        feeder.close()
        if prometheus is not None:
            prometheus.stop()
        if alertmanager is not None:
            alertmanager.stop()
        server.shutdown()
        monitor.close()
        webhook.close()


def test_shipped_config_passes_amtool() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        if REQUIRE_PROMETHEUS:
            pytest.fail("amtool is not installed and MLWATCHER_REQUIRE_PROMETHEUS=1")
        pytest.skip("amtool is not installed")
    result = subprocess.run([amtool, "check-config", str(ALERTMANAGER_CONFIG)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _check_runbook_annotations(alert: Dict[str, Any]) -> None:
    name = alert["labels"]["alertname"]
    annotations = alert["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}, annotations
    assert annotations["runbook_url"] == f"docs/runbook.md#{name.lower()}"
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    assert f"\n## {name}\n" in runbook
    assert "look at" in annotations["description"].lower()
    assert "{{" not in annotations["summary"] + annotations["description"]  # rendered


def test_fleet_alert_reaches_the_webhook_with_runbook_labels(stack: Stack) -> None:
    # A day-average to compare with first: accuracy 1 on every labeled row so far.
    def baseline() -> bool:
        result = stack.prometheus.query(
            f'model:mlwatcher_accuracy:ratio_rate5m_avg1d{{model="{MODEL}"}} == 1')
        return bool(result)

    wait_for(baseline, 90, lambda: "no accuracy baseline\n" + stack.diagnostics(), 0.5)
    stack.feeder.fail.set()  # from now on every prediction is wrong
    delivered = wait_for(lambda: stack.delivered("MLWatcherAccuracyDropping"), 120,
                         lambda: "MLWatcherAccuracyDropping never delivered\n"
                         + stack.diagnostics(), 0.5)
    alert = delivered[0]
    labels = alert["labels"]
    # A fleet alert: the deployment, not a replica.
    assert labels == {"alertname": "MLWatcherAccuracyDropping", "severity": "critical",
                      "job": JOB, "model": MODEL, "env": ENV,
                      "prometheus": PROMETHEUS_NAME}, labels
    _check_runbook_annotations(alert)
    assert alert["annotations"]["summary"].startswith(f"Model {MODEL} accuracy fell to ")
    # Routed by severity to the paging receiver, grouped by the fleet.
    assert alert["receiver"] == "model-owners-page" and alert["path"] == "/mlwatcher/critical"
    notification = next(n["body"] for n in stack.webhook.received
                        if alert in [dict(a, path=n["path"], receiver=n["body"]["receiver"])
                                     for a in n["body"]["alerts"]])
    assert notification["groupLabels"] == {"alertname": "MLWatcherAccuracyDropping",
                                           "job": JOB, "model": MODEL, "env": ENV}
    assert notification["status"] == "firing" and notification["version"] == "4"
    # A link back to the expression in the Prometheus that fired it (its host name is
    # the machine's, Prometheus' default external URL; the port is ours).
    link = urllib.parse.urlsplit(alert["generatorURL"])
    assert link.port == urllib.parse.urlsplit(stack.prometheus.url).port
    assert link.path == "/graph" and "mlwatcher_accuracy" in urllib.parse.unquote(link.query)


def test_replica_alert_reaches_the_webhook_with_its_instance(stack: Stack) -> None:
    delivered = wait_for(lambda: stack.delivered("MLWatcherExporterDown"), 120,
                         lambda: "MLWatcherExporterDown never delivered\n"
                         + stack.diagnostics(), 0.5)
    assert len(delivered) >= 1
    instances = {a["labels"]["instance"] for a in delivered}
    assert instances == {stack.dead}, instances  # the live target is not down
    alert = delivered[0]
    assert alert["labels"] == {"alertname": "MLWatcherExporterDown", "severity": "critical",
                               "job": JOB, "instance": stack.dead, "env": ENV,
                               "prometheus": PROMETHEUS_NAME}
    _check_runbook_annotations(alert)
    assert stack.dead in alert["annotations"]["summary"]
    assert alert["receiver"] == "model-owners-page"
