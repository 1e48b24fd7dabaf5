"""The Prometheus config and rules: promtool checks, rule unit tests, and house rules.

The promtool unit tests live in tests/rules/*_test.yml. Each feeds a bad, a healthy and a
too-small-sample series to the shipped rule files and expects the alert to fire for the
bad one only, and, for the model alerts, a fleet of replicas each too small on its own
but large enough together, for which it fires. tests/rules/fleet_test.yml checks the
value of every recording rule, at one Prometheus and at a central one.
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
    "MLWatcherLateLabelsUnmatched",
}
# Alerts on the exporter's health or on single events: no sample to guard.
OTHER_ALERTS = {"MLWatcherInternalErrors", "MLWatcherWindowStalled", "MLWatcherExporterDown"}

GUARD_CONSTANT = "mlwatcher:guard_min_sampled_rows"
GUARDS = (
    "model:mlwatcher_window_sampled_rows:guarded",
    "model:mlwatcher_labeled_rows:guarded",
    "model:mlwatcher_predictions:guarded5m",
    "model:mlwatcher_labeled_predictions:guarded5m",
    GUARD_CONSTANT,
)
RUNBOOK = ROOT / "docs" / "runbook.md"
CENTRAL = ROOT / "config" / "prometheus-central.yml"
# The group whose series a central Prometheus federates.
SUMS_GROUP = "mlwatcher-fleet-sums"
AGGREGATION_BY = re.compile(r"\b(sum|avg|min|max|count|group|stddev|stdvar|topk|bottomk|"
                            r"quantile|count_values)\s+by\s*\(|\)\s*by\s*\(")
# level:metric:operations (https://prometheus.io/docs/practices/rules/)
RECORD_NAME = re.compile(r"^[a-z_]*:[a-z0-9_]+:[a-z0-9_]+$")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _rules(path: Path) -> List[Dict[str, Any]]:
    with open(path) as f:
        return [rule for group in yaml.safe_load(f)["groups"] for rule in group["rules"]]


def _groups(path: Path) -> Dict[str, List[Dict[str, Any]]]:
    with open(path) as f:
        return {group["name"]: group["rules"] for group in yaml.safe_load(f)["groups"]}


def _alerts() -> Dict[str, Dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules(ALERTS)}


def test_promtool_check_config(promtool: str) -> None:
    result = _run(promtool, "check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 rule files found" in result.stdout + result.stderr


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


def _unit_test_exprs() -> List[str]:
    return [case["expr"] for test_file in RULE_TESTS
            for group in yaml.safe_load(test_file.read_text())["tests"]
            for case in group.get("promql_expr_test", [])]


def test_every_recording_rule_has_a_unit_test() -> None:
    exprs = _unit_test_exprs()
    untested = [
        name for name in (r["record"] for r in _rules(RECORDING))
        if name != GUARD_CONSTANT  # read by every guard, so by every alert test
        and not any(re.search(r"(?<![\w:])" + re.escape(name) + r"(?![\w:])", e) for e in exprs)
    ]
    assert not untested, f"no promql_expr_test in tests/rules/ reads {untested}"


def test_rules_aggregate_without_instance_never_by() -> None:
    """`sum by (model)` would merge env="production" with env="staging": aggregations
    drop the replica (`without (instance)`) and keep every deployment label."""
    for path in (RECORDING, ALERTS):
        for rule in _rules(path):
            name = rule.get("record") or rule.get("alert")
            assert not AGGREGATION_BY.search(rule["expr"]), f"{path.name} {name}: uses by (...)"
            for match in re.finditer(r"\b(sum|avg)\s+without\s*\(([^)]*)\)", rule["expr"]):
                dropped = {label.strip() for label in match.group(2).split(",")}
                assert dropped <= {"instance", "prometheus", "class", "reason", "stat"}, (
                    name, dropped)


def test_fleet_sums_read_exporter_series_and_the_rest_reads_sums() -> None:
    """The two levels: only the sums group reads the exporters' own series, so that a
    central Prometheus that federates the sums can evaluate everything else."""
    groups = _groups(RECORDING)
    sums = {rule["record"] for rule in groups[SUMS_GROUP]}
    for rule in groups[SUMS_GROUP]:
        assert re.search(r":(rate5m|sum|weighted_sum)$", rule["record"]), rule["record"]
        assert "instance" in rule["expr"], rule["record"]
    raw = re.compile(r"(?<![\w:])mlwatcher_[a-z0-9_]+")
    per_replica = {"model:mlwatcher_window_end:age_seconds"}  # exporter health, per replica
    for name, rules in groups.items():
        if name == SUMS_GROUP:
            continue
        for rule in rules:
            if rule["record"] in per_replica:
                continue
            assert not raw.findall(rule["expr"]), f"{rule['record']} reads exporter series"
            assert not re.search(r":(rate5m|sum|weighted_sum)$", rule["record"]), (
                f"{rule['record']}: that suffix is federated (see {CENTRAL.name})")
    assert sums


def test_central_config_federates_exactly_the_sums() -> None:
    config = yaml.safe_load(CENTRAL.read_text())
    (job,) = [j for j in config["scrape_configs"] if j.get("metrics_path") == "/federate"]
    assert job["honor_labels"] is True
    (selector,) = job["params"]["match[]"]
    match = re.fullmatch(r'\{__name__=~"(.+)"\}', selector)
    assert match, selector
    pattern = re.compile(match.group(1))
    names = {r["record"] for r in _rules(RECORDING)}
    sums = {rule["record"] for rule in _groups(RECORDING)[SUMS_GROUP]}
    assert {n for n in names if pattern.fullmatch(n)} == sums
    loaded = {(CENTRAL.parent / name).resolve() for name in config["rule_files"]}
    assert loaded == {p.resolve() for p in RULES_DIR.glob("*.yml")}
    # The servers below name themselves in the external label the rules pool over.
    assert "external_labels" in yaml.safe_load(CONFIG.read_text())["global"]
    assert "prometheus" in yaml.safe_load(CONFIG.read_text())["global"]["external_labels"]


def test_promtool_check_central_config(promtool: str) -> None:
    result = _run(promtool, "check", "config", str(CENTRAL))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(STATISTICAL_ALERTS | OTHER_ALERTS))
def test_alert_has_a_runbook_section(name: str) -> None:
    url = _alerts()[name]["annotations"].get("runbook_url", "")
    assert url == f"docs/runbook.md#{name.lower()}", url
    headings = re.findall(r"^## (\w+)$", RUNBOOK.read_text(), flags=re.M)
    assert name in headings, f"docs/runbook.md has no section '## {name}'"
