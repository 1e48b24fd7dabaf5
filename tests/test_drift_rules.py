"""config/rules/mlwatcher-drift.yml: promtool checks it, every alert is guarded by
sample size, has a firing and a silent unit test (tests/rules/drift_test.yml) and a
runbook section."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DRIFT = ROOT / "config" / "rules" / "mlwatcher-drift.yml"
TEST = ROOT / "tests" / "rules" / "drift_test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
GUARD = "mlwatcher:guard_min_sampled_rows"

pytestmark = pytest.mark.prometheus


def _alerts() -> dict:
    groups = yaml.safe_load(DRIFT.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"]}


def test_promtool_checks_and_runs_the_drift_rules(promtool: str) -> None:
    for args in (("check", "rules", str(DRIFT)), ("test", "rules", str(TEST))):
        result = subprocess.run([promtool, *args], cwd=ROOT, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(_alerts()))
def test_alert_is_guarded_documented_and_tested(name: str) -> None:
    rule = _alerts()[name]
    assert GUARD in rule["expr"] and "mlwatcher_window_sampled_rows" in rule["expr"]
    assert rule["labels"]["severity"] in {"warning", "critical"} and rule.get("for")
    assert "look at" in rule["annotations"]["description"].lower()
    assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{name.lower()}"
    assert name in re.findall(r"^## (\w+)$", RUNBOOK.read_text(), flags=re.M)
    cases = [case for group in yaml.safe_load(TEST.read_text())["tests"]
             for case in group.get("alert_rule_test", []) if case["alertname"] == name]
    assert any(c.get("exp_alerts") for c in cases)
    assert any(not c.get("exp_alerts") for c in cases)
