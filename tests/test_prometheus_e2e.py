"""End to end: a real Prometheus scrapes the real demo; every dashboard and rule query works.

One stack per module, on 127.0.0.1 only:

* the demo, `python -m mlwatcher_exporter demo --scenario cycle` with 1 s windows and
  40 windows per scenario: healthy for 40 s, then input drift (pixels inverted);
* prometheus, from config/prometheus.yml with every interval at 1 s, the shipped rule
  files, its storage in a temporary folder.

Then:

* every target of both dashboards, with the variables resolved as Grafana would on first
  load, returns data now;
* every recording rule's expression returns data, and so does every series each alert
  reads. An alert's own expression is only required to evaluate: empty is its healthy
  state, and the `offset 1d` side of the confidence alerts has no data a day back here.
* while the demo is healthy nothing fires and no model-level alert is pending (a few
  sparse pixels may flicker out of their young feature band, see HEALTHY_FLICKER_MAX);
  when it drifts, MLWatcherFeatureDrift becomes pending for most features of model
  "digits" (its band is the last hour, so it needs no day of history; with `for: 10m`,
  pending is as far as a short test goes); and the reference drift alert
  (MLWatcherReferenceFeatureDrift, drift scores against the demo's reference profile),
  with its ten minutes of windows scaled to 25 one-second windows, fires, while it is
  never even pending on healthy data.

Nothing may be empty: the demo has a categorical feature (the request channel), so
`mlwatcher_feature_value_ratio` has data too, and rejected rows need no exception:
their counters are exported at 0 for every reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set

import pytest
import yaml

from _prometheus import (
    LineReader,
    Prometheus,
    PromQLError,
    panel_targets,
    resolve_variables,
    selectors,
    stop_process,
    substitute,
    tail_file,
    fast_config,
    wait_for,
)
from conftest import require_binary

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "prometheus.yml"
RULE_FILES = sorted((ROOT / "config" / "rules").glob("*.yml"))
DASHBOARDS = [ROOT / "dashboards" / "mlwatcher-overview.json",
              ROOT / "dashboards" / "mlwatcher-canary.json"]
DEMO_JOB = "mlwatcher-demo"
MODELS = {"digits", "digits-canary"}

WINDOW_SECONDS = 1
WINDOWS_PER_SCENARIO = 40  # healthy for 40 s, then input drift for 40 s
DEMO_SAFETY_DURATION = 300  # the demo stops by itself even if nothing else stops it

# On healthy data at most this many features may be pending MLWatcherFeatureDrift at once
# (sampling noise of sparse pixels while the band is young); after the drift, at least
# DRIFT_MIN_FEATURES of the 64 must be (about 44 are).
HEALTHY_FLICKER_MAX = 4
DRIFT_MIN_FEATURES = 16
# MLWatcherReferenceFeatureDrift wants drifted features in every window of 10 minutes
# (and 10 minutes of data), then 5 more: here 25 and 2 seconds of 1 s windows (a healthy
# demo window has 0 to 2 of its 65 features beyond a threshold by sampling noise, about
# 1 window in 3 none; an inverted one 54 to 59).
FAST_REFERENCE_DRIFT = {
    "[10m]": "[25s]", "offset 10m": "offset 25s", "for: 5m": "for: 2s",
}


def _rule_files(workdir: Path) -> List[Path]:
    """The shipped rule files, the reference drift alert's durations scaled down."""
    files = []
    for path in RULE_FILES:
        if path.name == "mlwatcher-drift.yml":
            text = path.read_text()
            for old, new in FAST_REFERENCE_DRIFT.items():
                assert text.count(old) == 1, old
                text = text.replace(old, new)
            path = workdir / path.name
            path.write_text(text)
        files.append(path)
    return files


pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


@dataclass
class Stack:
    prometheus: Prometheus
    demo: subprocess.Popen
    demo_output: LineReader
    demo_log: Path
    # /api/v1/alerts snapshots taken during the healthy phase (see HealthyWatch).
    healthy: List[List[Dict[str, Any]]] = field(default_factory=list)
    watch: Optional[threading.Thread] = None

    def diagnostics(self) -> str:
        return (f"demo output:\n{self.demo_output.tail()}\ndemo stderr:\n"
                f"{tail_file(self.demo_log)}\nprometheus log:\n"
                f"{tail_file(self.prometheus.log_path)}")

    def drift_started(self) -> bool:
        return self.demo_output.first(lambda line: "scenario=input-drift" in line) is not None


def _demo_command(port: int, history_dir: Path) -> List[str]:
    # --history-dir: the history writer's counter is part of the contract too.
    return [sys.executable, "-m", "mlwatcher_exporter", "demo",
            "--history-dir", str(history_dir),
            "--addr", "127.0.0.1", "--port", str(port),
            "--window-seconds", str(WINDOW_SECONDS), "--scenario", "cycle",
            "--windows-per-scenario", str(WINDOWS_PER_SCENARIO),
            # 400 rows/s: 1 s windows stay well above the sample-size guard of 100 even
            # when a loaded machine delays the demo's ticks.
            "--rows-per-second", "400",
            "--duration", str(DEMO_SAFETY_DURATION), "--seed", "0"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = require_binary("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus-e2e")
    demo_log = workdir / "demo.stderr"
    demo = prometheus = output = None
    try:
        with open(demo_log, "wb") as stderr:
            # Port 0: the demo picks a free port and prints it on its first line.
            demo = subprocess.Popen(
                _demo_command(0, workdir / "history"), cwd=ROOT, stdout=subprocess.PIPE,
                stderr=stderr,
                stdin=subprocess.DEVNULL, text=True, start_new_session=True,
                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        output = LineReader(demo)
        first = wait_for(
            lambda: output.first(lambda line: line.startswith("Serving metrics at ")),
            60, lambda: f"demo did not start:\n{output.tail()}\n{tail_file(demo_log)}")
        url = first.split()[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics"), first
        target = url[len("http://"):-len("/metrics")]

        prometheus = Prometheus(
            binary, fast_config(CONFIG, _rule_files(workdir), DEMO_JOB, target), workdir)
        prometheus.start()
        yield Stack(prometheus, demo, output, demo_log)
    finally:
        if prometheus is not None:
            prometheus.stop()
        stop_process(demo)
        if output is not None:
            output.close()
        elif demo is not None and demo.stdout is not None:
            demo.stdout.close()


@pytest.fixture(scope="module")
def warm(stack: Stack) -> Stack:
    """The stack once every recording rule has stored a sample for both models.

    Waiting for every recorded series, not a few: Prometheus evaluates each rule group
    on its own schedule, and on a busy machine a group may first run seconds after the
    others. `model:mlwatcher_window_sampled_rows:guarded` being there also proves that
    the demo's windows (about 200 rows at its default 200 rows/s) pass the shipped
    sample-size guard.
    """
    records = [rule["record"] for rule in _rules() if "record" in rule]
    # One query for all of them: on a loaded machine 46 queries take longer than the
    # demo's healthy phase.
    selector = '{__name__=~"' + "|".join(re.escape(r) for r in records) + '"}'

    def missing() -> List[str]:
        found: Dict[str, Set[Any]] = {}
        for series in stack.prometheus.query(f"count by (__name__, model) ({selector})"):
            found.setdefault(series["metric"]["__name__"], set()).add(
                series["metric"].get("model"))
        absent = []
        for record in records:
            models = found.get(record, set())
            if not models or (None not in models and not MODELS <= models):
                absent.append(f"{record} (models: {sorted(m for m in models if m)})")
        return absent

    def groups() -> str:
        return "\n".join(
            f"  {g['name']}: last evaluation {g.get('lastEvaluation')}, "
            f"took {g.get('evaluationTime')} s" for g in stack.prometheus.rule_groups())

    wait_for(lambda: not missing(), 90, lambda: (
        "no recorded data for both models in:\n  " + "\n  ".join(missing())
        + f"\nrule groups:\n{groups()}\n" + stack.diagnostics()), interval=0.5)
    stack.watch = threading.Thread(target=_watch_healthy_phase, args=(stack,), daemon=True)
    stack.watch.start()
    return stack


# Drifted rows have reached Prometheus: in a completed window (pixel_0_0 is 0 in every
# digits image, 16 once inverted), or in the counters, which also count the rows of the
# window under way (the drifted rows fool the model: about 10 % right instead of 96 %).
DRIFT_SEEN = ('max_over_time(mlwatcher_feature{model="digits",feature="pixel_0_0",'
              'stat="max"}[1m]) > 0 or sum(rate(mlwatcher_correct_predictions_total'
              '{model="digits"}[3s])) / sum(rate(mlwatcher_labeled_predictions_total'
              '{model="digits"}[3s])) < 0.7')


def _watch_healthy_phase(stack: Stack) -> None:
    """Snapshot the active alerts every second until the demo drifts, in the background:
    the other tests of the module, which take long on a loaded machine, then never eat
    the healthy phase.

    A snapshot counts as healthy if, right after it, Prometheus still holds no drifted
    window (DRIFT_SEEN is empty): the alerts of the snapshot were then computed from
    healthy data only. Neither the demo's lines nor the clock can tell that on a busy
    machine, where the demo may print late and skip lines and this process reads late."""
    deadline = time.monotonic() + WINDOW_SECONDS * WINDOWS_PER_SCENARIO + 60
    while not stack.drift_started() and time.monotonic() < deadline:
        try:
            snapshot = _active(stack)
            if stack.prometheus.query(DRIFT_SEEN):
                return
        except (PromQLError, OSError):
            pass
        else:
            stack.healthy.append(snapshot)
        time.sleep(1)


def _query_all(prometheus: Prometheus, queries: List[tuple]) -> List[str]:
    """Run (label, expr) queries; return a description of each that fails or is empty."""
    problems = []
    for label, expr in queries:
        try:
            result = prometheus.query(expr)
        except PromQLError as error:
            problems.append(f"{label}: {expr}\n    error: {error}")
            continue
        if not result:
            problems.append(f"{label}: {expr}\n    empty result")
    return problems


def test_demo_exposes_every_contract_series(warm: Stack) -> None:
    from test_dashboards import contract_metrics

    result = warm.prometheus.query(f'count by (__name__) ({{job="{DEMO_JOB}"}})')
    scraped = {s["metric"]["__name__"] for s in result}
    expected = contract_metrics()
    assert not expected - scraped, f"the demo does not expose {sorted(expected - scraped)}"
    models = warm.prometheus.label_values("model", "mlwatcher_model_info")
    assert set(models) == MODELS


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_every_dashboard_target_returns_data(warm: Stack, path: Path) -> None:
    dashboard = json.loads(path.read_text())
    values = resolve_variables(dashboard, warm.prometheus)
    queries = []
    for title, ref, expr in panel_targets(dashboard):
        sent = substitute(expr, values)
        assert "$" not in sent, f"{title}/{ref}: unresolved variable in {sent}"
        queries.append((f"{title} [{ref}]", sent))
    assert len(queries) >= 15
    problems = _query_all(warm.prometheus, queries)
    assert not problems, (f"{len(problems)} of {len(queries)} targets of {path.name} "
                          f"(variables {values}):\n" + "\n".join(problems))


def _rules(group: str = "") -> List[Dict[str, Any]]:
    """The shipped rules, all or those of one group."""
    return [rule for path in RULE_FILES
            for g in yaml.safe_load(path.read_text())["groups"] if group in ("", g["name"])
            for rule in g["rules"]]


def test_every_rule_expression_returns_data(warm: Stack) -> None:
    queries = []
    for rule in _rules():
        if "record" in rule:
            queries.append((f"record {rule['record']} (expr)", rule["expr"]))
            queries.append((f"record {rule['record']} (stored)", rule["record"]))
        else:
            queries += [(f"alert {rule['alert']} reads", s) for s in selectors(rule["expr"])]
    problems = _query_all(warm.prometheus, queries)
    for rule in _rules():  # alert expressions must evaluate; empty is fine
        if "alert" in rule:
            try:
                warm.prometheus.query(rule["expr"])
            except PromQLError as error:
                problems.append(f"alert {rule['alert']}: {error}")
    assert not problems, "\n".join(problems)


def test_prometheus_evaluates_every_rule_without_error(warm: Stack) -> None:
    loaded = warm.prometheus.rules()
    names = {r["name"] for r in loaded}
    expected = {r.get("record") or r.get("alert") for r in _rules()}
    assert expected <= names, f"not loaded: {sorted(expected - names)}"
    broken = [f"{r['name']}: {r.get('lastError')}" for r in loaded if r["health"] != "ok"]
    assert not broken, "\n".join(broken)


def _active(stack: Stack, alertname: str = "MLWatcher") -> List[Dict[str, Any]]:
    return [a for a in stack.prometheus.alerts()
            if a["labels"]["alertname"].startswith(alertname)
            and a["state"] in ("pending", "firing")]


def _describe(alerts: List[Dict[str, Any]]) -> str:
    return "\n".join(f"  {a['state']} {a['labels']}" for a in alerts) or "  (none)"


def _wait_for_drift(stack: Stack) -> None:
    """Until the demo prints its first drifted window: the healthy watch also ends as soon
    as Prometheus holds drifted data (or on its deadline), which on a loaded machine may
    come before this process has read the demo's line."""
    wait_for(stack.drift_started, WINDOW_SECONDS * WINDOWS_PER_SCENARIO + 30,
             lambda: "the demo never reached input-drift\n" + stack.diagnostics())


def _drifted_features(alerts: List[Dict[str, Any]], model: str) -> Set[str]:
    return {a["labels"]["feature"] for a in alerts
            if a["labels"]["alertname"] == "MLWatcherFeatureDrift"
            and a["labels"].get("model") == model}


def test_input_drift_makes_the_feature_drift_alert_pending(warm: Stack) -> None:
    # Healthy phase: the snapshots of _watch_healthy_phase, once the demo drifted.
    assert warm.watch is not None
    warm.watch.join(WINDOW_SECONDS * WINDOWS_PER_SCENARIO + 90)
    _wait_for_drift(warm)
    healthy = warm.healthy
    assert healthy, "the stack took the whole healthy phase to warm up\n" + warm.diagnostics()
    model_alerts = {rule["alert"] for rule in _rules(group="mlwatcher-model")}
    for snapshot in healthy:
        # Nothing fires, and no model-level alert is even pending (the exporter-health
        # alerts may be: 1 s windows and scrapes make their limits tight on a busy
        # machine, and their `for:` keeps them from firing)...
        assert not [a for a in snapshot if a["state"] == "firing"], _describe(snapshot)
        others = [a for a in snapshot if a["labels"]["alertname"] in model_alerts
                  and a["labels"]["alertname"] != "MLWatcherFeatureDrift"]
        assert not others, "alerts on healthy data:\n" + _describe(others)
        # ...but while the band is built from the first few windows, a sparse pixel
        # (almost always 0) may leave it for a window: pending, which `for: 10m`
        # absorbs. Never more than a handful of the 64 features.
        for model in MODELS:
            flickering = _drifted_features(snapshot, model)
            assert len(flickering) <= HEALTHY_FLICKER_MAX, (
                f"{model}: {len(flickering)} features out of band on healthy data:\n"
                + _describe(snapshot))

    # Drift: inverted pixels move most features' means out of their band at once.
    started = time.monotonic()

    def drifted() -> Set[str]:
        features = _drifted_features(_active(warm, "MLWatcherFeatureDrift"), "digits")
        return features if len(features) >= DRIFT_MIN_FEATURES else set()

    features = wait_for(drifted, 30, lambda: (
        f"MLWatcherFeatureDrift did not become pending for {DRIFT_MIN_FEATURES}+ features "
        f"of model digits; active alerts:\n{_describe(_active(warm))}\n" + warm.diagnostics()),
        interval=0.5)
    found = [a for a in _active(warm, "MLWatcherFeatureDrift")
             if a["labels"]["model"] == "digits"]
    assert all(a["labels"]["severity"] == "warning" for a in found)
    assert all(a["annotations"]["summary"].startswith("Feature ") for a in found)
    print(f"\n{len(healthy)} healthy snapshots, at most "
          f"{max((len(_drifted_features(h, 'digits')) for h in healthy), default=0)} "
          f"features flickering; MLWatcherFeatureDrift pending "
          f"{time.monotonic() - started:.1f} s after the first drifted window for "
          f"{len(features)} features of digits, e.g. {sorted(features)[:4]}")


def test_input_drift_fires_the_reference_drift_alert(warm: Stack) -> None:
    assert warm.watch is not None
    warm.watch.join(WINDOW_SECONDS * WINDOWS_PER_SCENARIO + 90)
    _wait_for_drift(warm)
    for snapshot in warm.healthy:
        noisy = [a for a in snapshot
                 if a["labels"]["alertname"] == "MLWatcherReferenceFeatureDrift"]
        assert not noisy, "reference drift on healthy data:\n" + _describe(noisy)

    def firing() -> List[Dict[str, Any]]:
        return [a for a in _active(warm, "MLWatcherReferenceFeatureDrift")
                if a["state"] == "firing" and a["labels"]["model"] == "digits"]

    (alert,) = wait_for(firing, 50, lambda: (
        "MLWatcherReferenceFeatureDrift did not fire for model digits; active alerts:\n"
        f"{_describe(_active(warm))}\n" + warm.diagnostics()), interval=0.5)
    assert alert["labels"]["severity"] == "warning"
    drifted = float(alert["value"])
    assert drifted >= DRIFT_MIN_FEATURES, alert
    assert "features drifted from the reference" in alert["annotations"]["summary"]
    print(f"\nMLWatcherReferenceFeatureDrift firing for digits: {drifted:.0f} features "
          "drifted in every window of the last 25 s")
