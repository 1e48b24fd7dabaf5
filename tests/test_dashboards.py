"""Static checks of the Grafana dashboards and their provisioning files.

What a query returns is proven in test_prometheus_e2e.py; here: the JSON model is
well-formed for a current Grafana, every query goes through `${datasource}`, names only
metrics of the contract (mlwatcher_exporter/naming.py) or recorded series of
config/rules/mlwatcher-recording.yml, and the overview covers every metric family.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set

import pytest
import yaml

from mlwatcher_exporter import naming
from mlwatcher_exporter.families import FAMILIES

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = ROOT / "dashboards"
OVERVIEW = DASHBOARD_DIR / "mlwatcher-overview.json"
CANARY = DASHBOARD_DIR / "mlwatcher-canary.json"
DASHBOARDS = [OVERVIEW, CANARY]
RECORDING = ROOT / "config" / "rules" / "mlwatcher-recording.yml"
PROVISIONING = DASHBOARD_DIR / "provisioning"

MIN_SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# Panels that draw numbers must say in what unit.
UNIT_PANELS = {"timeseries", "stat", "bargauge"}


def contract_metrics() -> Set[str]:
    """Every series name the exporter exposes, from the families of the collector (the
    names of mlwatcher_exporter/naming.py, each with the suffixes of its type) and the
    history writer's counter."""
    exposed: Set[str] = set()
    for name, (kind, _, _) in FAMILIES.items():
        if kind == "counter":
            exposed.add(name + "_total")
        elif kind == "histogram":
            exposed |= {name + suffix for suffix in ("_bucket", "_sum", "_count")}
        elif kind == "info":
            exposed.add(name + "_info")
        else:
            exposed.add(name)
    # The window history's writer exports its counter from a collector of its own.
    exposed.add(naming.HISTORY_WRITE_FAILURES + "_total")
    return exposed


def recording_rules() -> Dict[str, str]:
    groups = yaml.safe_load(RECORDING.read_text())["groups"]
    return {r["record"]: r["expr"] for g in groups for r in g["rules"] if "record" in r}


def load(path: Path) -> Dict[str, Any]:
    return json.loads(path.read_text())


def panels(dashboard: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def exprs(dashboard: Dict[str, Any]) -> List[str]:
    """Every PromQL text of a dashboard: panel targets and variable queries."""
    found = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    found += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return found


def names_in(expr: str) -> Set[str]:
    """The mlwatcher series names (raw or recorded) a PromQL expression mentions."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values are not names
    return {n for n in NAME.findall(expr)
            if n.startswith("mlwatcher_") or "mlwatcher_" in n or n.startswith("mlwatcher:")}


@pytest.fixture(params=DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def dashboard(request: pytest.FixtureRequest) -> Dict[str, Any]:
    return load(request.param)


def test_generated_json_is_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(DASHBOARD_DIR / "generate.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_dashboard_model(dashboard: Dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= MIN_SCHEMA_VERSION
    assert dashboard["uid"] and dashboard["title"].startswith("MLWatcher / ")
    assert dashboard["id"] is None  # provisioned dashboards get their id from Grafana
    assert "mlwatcher" in dashboard["tags"]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_uids_differ() -> None:
    assert len({load(p)["uid"] for p in DASHBOARDS}) == len(DASHBOARDS)


def test_datasource_variable_and_queries(dashboard: Dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE
            assert var["definition"].startswith("label_values(")
            assert var["query"]["query"] == var["definition"]
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for tgt in panel["targets"]:
            assert tgt["datasource"] == DATASOURCE, panel["title"]
            assert tgt["expr"].strip(), panel["title"]


def test_overview_variables() -> None:
    variables = {v["name"]: v for v in load(OVERVIEW)["templating"]["list"]}
    assert {"datasource", "model", "class", "feature"} <= set(variables)
    assert "mlwatcher_model_info" in variables["model"]["definition"]
    assert variables["class"]["definition"].endswith(", class)")
    assert variables["feature"]["definition"].endswith(", feature)")


def test_canary_variables() -> None:
    variables = {v["name"]: v for v in load(CANARY)["templating"]["list"]}
    assert variables["production"]["multi"] is False
    assert '!="$production"' in variables["challenger"]["definition"]


def test_panels_have_units_thresholds_and_legends(dashboard: Dict[str, Any]) -> None:
    for panel in panels(dashboard):
        if panel["type"] not in UNIT_PANELS:
            continue
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults.get("unit"), f"{panel['title']}: no unit"
        assert defaults["thresholds"]["steps"], f"{panel['title']}: no thresholds"
        assert panel.get("description"), f"{panel['title']}: no description"
        for tgt in panel["targets"]:
            if tgt.get("format", "time_series") == "time_series":
                assert tgt["legendFormat"] not in ("", "__auto"), panel["title"]


def test_layout_fits_the_grid(dashboard: Dict[str, Any]) -> None:
    taken: Set[tuple] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                 for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_name_is_in_the_contract_or_recorded(dashboard: Dict[str, Any]) -> None:
    known = contract_metrics() | set(recording_rules())
    for expr in exprs(dashboard):
        unknown = names_in(expr) - known
        assert not unknown, f"unknown series {sorted(unknown)} in {expr!r}"


def test_rules_name_only_contract_metrics() -> None:
    known = contract_metrics() | set(recording_rules())
    for path in sorted((ROOT / "config" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                unknown = names_in(rule["expr"]) - known
                assert not unknown, f"{path.name}: unknown series {sorted(unknown)}"


def test_stat_label_values_are_contract_stats() -> None:
    for path in DASHBOARDS:
        for expr in exprs(load(path)):
            for values in re.findall(r'stat=~?"([^"]*)"', expr):
                assert set(values.split("|")) <= set(naming.STATS), expr


def test_overview_covers_every_metric_family() -> None:
    """Each exposed series is drawn by the overview, directly or through a recorded one."""
    recorded = recording_rules()
    used: Set[str] = set()
    todo = [name for expr in exprs(load(OVERVIEW)) for name in names_in(expr)]
    while todo:  # through recorded series, which may read recorded series in turn
        name = todo.pop()
        if name not in used:
            used.add(name)
            todo += sorted(names_in(recorded.get(name, "")))
    missing = contract_metrics() - used
    assert not missing, f"no panel for {sorted(missing)}"


def test_provisioning_files() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" /
                                  "mlwatcher-prometheus.yml").read_text())
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http")
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "mlwatcher.yml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
