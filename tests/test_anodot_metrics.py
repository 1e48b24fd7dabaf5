"""Tests of mlwatcher_exporter.bridge.metrics: names, conventions, and the docs table."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from mlwatcher_exporter.bridge.metrics import BridgeMetrics

DOCS = Path(__file__).resolve().parent.parent / "docs" / "anodot.md"


def exposed(registry: CollectorRegistry) -> dict:
    out = {}
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        out[name] = family.type
    return out


def test_names_follow_prometheus_conventions() -> None:
    registry = CollectorRegistry()
    BridgeMetrics(registry)
    for name, kind in exposed(registry).items():
        assert name.startswith("mlwatcher_anodot_")
        assert name.endswith("_total") == (kind == "counter"), name
        assert not re.search(r"_(ms|milliseconds|percent|kb|mb)(_|$)", name)


def test_docs_table_lists_exactly_the_published_metrics() -> None:
    registry = CollectorRegistry()
    BridgeMetrics(registry)
    text = DOCS.read_text()
    metrics_section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in metrics_section.splitlines():
        match = re.match(r"\| `([a-z_]+)` \| (\w+) \|", line)
        if match:
            rows[match.group(1)] = match.group(2)
    assert rows == exposed(registry)


def test_spool_gauges_read_the_spool_at_scrape_time() -> None:
    class FakeSpool:
        bytes = 123
        pending_points = 4

        @staticmethod
        def oldest_timestamp() -> float:
            return 90.0

    registry = CollectorRegistry()
    metrics = BridgeMetrics(registry, _clock=lambda: 100.0)
    metrics.track_spool(FakeSpool())
    assert registry.get_sample_value("mlwatcher_anodot_spool_bytes") == 123
    assert registry.get_sample_value("mlwatcher_anodot_spool_points") == 4
    assert registry.get_sample_value("mlwatcher_anodot_spool_oldest_age_seconds") == 10


def test_unregistered_metrics_still_work() -> None:
    metrics = BridgeMetrics(registry=None)
    metrics.points_sent.inc(3)
    metrics.rejected("2004")
    [sent] = metrics.points_sent.collect()
    [rejected] = metrics.points_rejected.collect()
    assert [s.value for s in sent.samples if s.name.endswith("_total")] == [3.0]
    assert [(s.labels, s.value) for s in rejected.samples if s.name.endswith("_total")] == [
        ({"code": "2004"}, 1.0)]
