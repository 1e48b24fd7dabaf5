"""The Prometheus config and rules: promtool checks, rule unit tests, and house rules.

The promtool unit tests live in tests/rules/*_test.yml. Each feeds a bad, a healthy and a
too-small-sample series to the shipped rule files and expects the alert to fire for the
bad one only.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "prometheus.yml"
RULES_DIR = ROOT / "config" / "rules"
RECORDING = RULES_DIR / "mlwatcher-recording.yml"
ALERTS = RULES_DIR / "mlwatcher-alerts.yml"
RULE_TESTS = sorted((ROOT / "tests" / "rules").glob("*_test.yml"))

pytestmark = pytest.mark.prometheus

# Alerts on window statistics or on a share of rows: each needs the sample-size guard.
STATISTICAL_ALERTS = {
    "MLWatcherConfidenceDropping",
    "MLWatcherSpread12Collapsing",
    "MLWatcherClassRatioShift",
    "MLWatcherAccuracyDropping",
    "MLWatcherMacroF1Dropping",
    "MLWatcherFeatureDrift",
    "MLWatcherRejectedRowsRising",
}
# Alerts on the exporter's health or on single events: no sample to guard.
OTHER_ALERTS = {"MLWatcherInternalErrors", "MLWatcherWindowStalled", "MLWatcherExporterDown"}

GUARD_CONSTANT = "mlwatcher:guard_min_sampled_rows"
GUARDS = (
    "model:mlwatcher_window_sampled_rows:guarded",
    "model:mlwatcher_labeled_rows:guarded",
    GUARD_CONSTANT,
)
# level:metric:operations (https://prometheus.io/docs/practices/rules/)
RECORD_NAME = re.compile(r"^[a-z_]*:[a-z0-9_]+:[a-z0-9_]+$")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _rules(path: Path) -> List[Dict[str, Any]]:
    with open(path) as f:
        return [rule for group in yaml.safe_load(f)["groups"] for rule in group["rules"]]


def _alerts() -> Dict[str, Dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules(ALERTS)}


def test_promtool_check_config(promtool: str) -> None:
    result = _run(promtool, "check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout + result.stderr


def test_config_loads_every_rule_file() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    loaded = {(CONFIG.parent / name).resolve() for name in config["rule_files"]}
    assert loaded == {p.resolve() for p in RULES_DIR.glob("*.yml")}


def test_promtool_check_rules(promtool: str) -> None:
    result = _run(promtool, "check", "rules", str(RECORDING), str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=[p.name for p in RULE_TESTS])
def test_promtool_test_rules(promtool: str, test_file: Path) -> None:
    result = _run(promtool, "test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_classified() -> None:
    assert set(_alerts()) == STATISTICAL_ALERTS | OTHER_ALERTS


@pytest.mark.parametrize("name", sorted(STATISTICAL_ALERTS | OTHER_ALERTS))
def test_alert_has_for_severity_summary_description(name: str) -> None:
    rule = _alerts()[name]
    assert rule.get("for"), f"{name} has no for:"
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"].strip()
    assert "look at" in rule["annotations"]["description"].lower(), f"{name}: say what to look at"


@pytest.mark.parametrize("name", sorted(STATISTICAL_ALERTS))
def test_statistical_alert_is_guarded_by_sample_size(name: str) -> None:
    expr = _alerts()[name]["expr"]
    assert any(guard in expr for guard in GUARDS), f"{name} has no sample-size guard"


def test_guard_value_is_set_in_one_place() -> None:
    constants = [r for r in _rules(RECORDING) if r.get("record") == GUARD_CONSTANT]
    assert len(constants) == 1
    assert re.fullmatch(r"vector\(\d+\)", constants[0]["expr"].strip())
    # No alert compares a row count with a literal number of its own.
    for name, rule in _alerts().items():
        assert not re.search(r"_rows\s*>=?\s*\d", rule["expr"]), name


def test_recording_rule_names_follow_convention() -> None:
    names = [r["record"] for r in _rules(RECORDING)]
    assert len(names) == len(set(names))
    for name in names:
        # The guard constant has no labels, hence no level.
        assert name == GUARD_CONSTANT or RECORD_NAME.match(name), name


@pytest.mark.parametrize("name", sorted(STATISTICAL_ALERTS | OTHER_ALERTS))
def test_every_alert_has_firing_and_silent_unit_tests(name: str) -> None:
    fires = silent = False
    for test_file in RULE_TESTS:
        for group in yaml.safe_load(test_file.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                if case["alertname"] == name:
                    fires |= bool(case.get("exp_alerts"))
                    silent |= not case.get("exp_alerts")
    assert fires and silent, f"{name}: needs a firing and a silent case in tests/rules/"
