"""Metric names follow Prometheus conventions, and the README lists every one."""

import re
from pathlib import Path

from mlwatcher_exporter import naming
from mlwatcher_exporter.families import FAMILIES

README = (Path(__file__).parent.parent / "README.md").read_text()


def exposed_name(name):
    kind = FAMILIES[name][0]
    return {"counter": name + "_total", "info": name + "_info"}.get(kind, name)


def test_every_family_is_in_the_readme_reference():
    reference = set(re.findall(r"^\| `(mlwatcher_[a-z0-9_]+)` \|", README, flags=re.M))
    missing = {exposed_name(name) for name in FAMILIES} - reference
    assert not missing, f"not in README's metric reference: {sorted(missing)}"


def test_conventions():
    for name, (kind, documentation, labels) in FAMILIES.items():
        assert name.startswith(naming.PREFIX) and re.fullmatch(r"[a-z][a-z0-9_]*", name)
        assert not name.endswith("_total"), "prometheus_client appends _total to counters"
        assert documentation.endswith(".") and len(documentation) < 200
        assert not {"le", "quantile", "env", "cluster", "instance", "job"} & set(labels)
        if name.endswith(("_seconds", "_timestamp_seconds")):
            assert kind in ("gauge", "histogram")
        for unit in ("_ms", "_milliseconds", "_percent", "_minutes", "_bytes_total"):
            assert unit not in name


def test_reasons_and_stats_are_small_fixed_sets():
    assert len(naming.REJECT_REASONS) == len(set(naming.REJECT_REASONS)) <= 10
    assert naming.STATS == ("mean", "std", "min", "max", "range", "q25", "median", "q75", "iqr")
    assert list(naming.PRED1_BUCKETS) == sorted(naming.PRED1_BUCKETS)
    assert naming.PRED1_BUCKETS[-1] == 1.0


def test_bridge_metrics_are_in_the_readme_reference():
    from prometheus_client import CollectorRegistry

    from mlwatcher_exporter.bridge.metrics import BridgeMetrics

    registry = CollectorRegistry()
    BridgeMetrics(registry)
    names = {f.name + ("_total" if f.type == "counter" else "") for f in registry.collect()}
    reference = set(re.findall(r"^\| `(mlwatcher_[a-z0-9_]+)` \|", README, flags=re.M))
    assert names and not names - reference, sorted(names - reference)
