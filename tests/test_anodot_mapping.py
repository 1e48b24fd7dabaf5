"""Tests of mlwatcher_exporter.bridge.mapping: Prometheus samples to Anodot points."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, Summary
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mlwatcher_exporter.bridge.config import MappingOptions
from mlwatcher_exporter.bridge.mapping import PointMapper, sanitize


def by_what(points: List[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    out: Dict[str, List[Dict[str, Any]]] = {}
    for p in points:
        out.setdefault(p["properties"]["what"], []).append(p)
    return out


def test_gauge_maps_as_documented(registry: CollectorRegistry) -> None:
    Gauge("mlwatcher_pred1", "h", ["model", "stat"], registry=registry).labels(
        "digits", "median").set(0.93)
    result = PointMapper().map(registry.collect(), 1700000000)
    assert result.points == [{
        "properties": {"what": "mlwatcher_pred1", "model": "digits", "stat": "median",
                       "ver": "1", "target_type": "gauge"},
        "tags": {}, "timestamp": 1700000000, "value": 0.93}]


def test_counter_delta_baseline_increase_and_reset(registry: CollectorRegistry) -> None:
    counter = Counter("mlwatcher_predictions", "h", ["model", "class"], registry=registry)
    child = counter.labels("digits", "3")
    mapper = PointMapper()
    child.inc(10)
    assert mapper.map(registry.collect(), 100).points == [], "first snapshot: baseline only"
    child.inc(5)
    [point] = mapper.map(registry.collect(), 160).points
    assert point["properties"]["what"] == "mlwatcher_predictions_total"
    assert point["properties"]["target_type"] == "counter"
    assert point["value"] == 5.0
    # The exporter restarted: its counter went back to a smaller value.
    fresh = CollectorRegistry()
    Counter("mlwatcher_predictions", "h", ["model", "class"], registry=fresh).labels(
        "digits", "3").inc(2)
    [point] = mapper.map(fresh.collect(), 220).points
    assert point["value"] == 2.0


def test_counter_state_survives_through_state_roundtrip(registry: CollectorRegistry) -> None:
    counter = Counter("mlwatcher_predictions", "h", ["model"], registry=registry).labels("m")
    first = PointMapper()
    counter.inc(3)
    first.map(registry.collect(), 100)
    counter.inc(4)
    second = PointMapper(state=first.state())
    assert [p["value"] for p in second.map(registry.collect(), 200).points] == [4.0]


def test_counter_as_gauge_sends_cumulative_value(registry: CollectorRegistry) -> None:
    Counter("mlwatcher_predictions", "h", ["model"], registry=registry).labels("m").inc(7)
    mapper = PointMapper(MappingOptions(counters="gauge"))
    [point] = mapper.map(registry.collect(), 100).points
    assert point["value"] == 7.0 and point["properties"]["target_type"] == "gauge"
    assert not mapper.tracks_counters


def test_histogram_sends_count_and_sum_and_optionally_buckets(registry: CollectorRegistry) -> None:
    hist = Histogram("mlwatcher_prediction_pred1", "h", ["model"], buckets=(0.5, 0.9),
                     registry=registry).labels("m")
    plain, with_buckets = PointMapper(), PointMapper(MappingOptions(histogram_buckets=True))
    for mapper in (plain, with_buckets):
        mapper.map(registry.collect(), 100)
    hist.observe(0.7)
    hist.observe(0.95)
    got = by_what(plain.map(registry.collect(), 160).points)
    assert sorted(got) == ["mlwatcher_prediction_pred1_count", "mlwatcher_prediction_pred1_sum"]
    assert got["mlwatcher_prediction_pred1_count"][0]["value"] == 2.0
    assert got["mlwatcher_prediction_pred1_sum"][0]["value"] == pytest.approx(1.65)
    buckets = by_what(with_buckets.map(registry.collect(), 160).points)[
        "mlwatcher_prediction_pred1_bucket"]
    assert {p["properties"]["le"]: p["value"] for p in buckets} == {
        "0_5": 0.0, "0_9": 1.0, "+Inf": 2.0}
    assert all(p["properties"]["target_type"] == "counter" for p in buckets)


def test_info_is_a_gauge_with_its_labels(registry: CollectorRegistry) -> None:
    Info("mlwatcher_model", "h", ["model"], registry=registry).labels("digits").info(
        {"version": "1.2.0"})
    [point] = PointMapper().map(registry.collect(), 100).points
    assert point["properties"] == {"what": "mlwatcher_model_info", "model": "digits",
                                   "version": "1_2_0", "ver": "1", "target_type": "gauge"}
    assert point["value"] == 1.0


def test_summary_count_sum_as_counters(registry: CollectorRegistry) -> None:
    summary = Summary("mlwatcher_latency_seconds", "h", registry=registry)
    mapper = PointMapper()
    mapper.map(registry.collect(), 100)
    summary.observe(2.0)
    got = by_what(mapper.map(registry.collect(), 160).points)
    assert sorted(got) == ["mlwatcher_latency_seconds_count", "mlwatcher_latency_seconds_sum"]


def test_text_format_gives_the_same_points_without_created(registry: CollectorRegistry) -> None:
    Counter("mlwatcher_predictions", "h", ["model"], registry=registry).labels("m").inc(1)
    Histogram("mlwatcher_prediction_pred1", "h", ["model"], registry=registry).labels("m")
    Gauge("mlwatcher_pred1", "h", ["model"], registry=registry).labels("m").set(0.5)
    direct, scraped = PointMapper(MappingOptions(counters="gauge")), PointMapper(
        MappingOptions(counters="gauge"))
    text = generate_latest(registry).decode()
    assert "_created" in text
    from_text = scraped.map(text_string_to_metric_families(text), 100).points
    from_registry = direct.map(registry.collect(), 100).points
    key = lambda p: sorted(p["properties"].items())  # noqa: E731
    assert sorted(map(key, from_text)) == sorted(map(key, from_registry))
    assert not any("created" in p["properties"]["what"] for p in from_text)


def test_non_finite_values_are_skipped_and_counted(registry: CollectorRegistry) -> None:
    g = Gauge("mlwatcher_pred1", "h", ["stat"], registry=registry)
    g.labels("mean").set(float("nan"))
    g.labels("max").set(float("inf"))
    g.labels("min").set(0.1)
    result = PointMapper().map(registry.collect(), 100)
    assert [p["properties"]["stat"] for p in result.points] == ["min"]
    assert result.skipped == {"non_finite": 2}


def test_sanitizing_truncating_and_empty_labels(registry: CollectorRegistry) -> None:
    Gauge("mlwatcher_feature", "h", ["model", "feature", "empty"], registry=registry).labels(
        "a model", "x.y=z" + "w" * 200, "").set(1)
    [point] = PointMapper().map(registry.collect(), 100).points
    props = point["properties"]
    assert props["model"] == "a_model"
    assert props["feature"].startswith("x_y_z") and len(props["feature"]) == 150
    assert "empty" not in props
    assert sanitize("a b\tc.d=e") == "a_b_c_d_e"


def test_constant_properties_ver_tags_and_reserved_labels(registry: CollectorRegistry) -> None:
    Gauge("mlwatcher_pred1", "h", ["model", "env", "team_owner", "what"], registry=registry).labels(
        "m", "from-label", "ml-team", "oops").set(1)
    options = MappingOptions(ver="7", properties={"env": "prod", "dc": "eu.west"},
                             tag_label_prefixes=["team_"])
    [point] = PointMapper(options).map(registry.collect(), 100).points
    assert point["properties"] == {
        "what": "mlwatcher_pred1", "model": "m", "env": "from-label", "label_what": "oops",
        "dc": "eu_west", "ver": "7", "target_type": "gauge"}
    assert point["tags"] == {"team_owner": ["ml-team"]}


def test_too_many_properties_is_skipped(registry: CollectorRegistry) -> None:
    labels = [f"l{i}" for i in range(18)]
    Gauge("mlwatcher_wide", "h", labels, registry=registry).labels(*labels).set(1)
    result = PointMapper().map(registry.collect(), 100)
    assert result.points == [] and result.skipped == {"too_many_properties": 1}


def test_include_and_exclude_prefixes(registry: CollectorRegistry) -> None:
    Gauge("mlwatcher_pred1", "h", registry=registry).set(1)
    Gauge("mlwatcher_anodot_spool_bytes", "h", registry=registry).set(1)
    Gauge("python_other", "h", registry=registry).set(1)
    whats = [p["properties"]["what"] for p in PointMapper().map(registry.collect(), 1).points]
    assert whats == ["mlwatcher_pred1"]
    everything = PointMapper(MappingOptions(include_prefixes=[], exclude_prefixes=[]))
    assert len(everything.map(registry.collect(), 1).points) == 3


def test_stale_counter_baselines_expire(registry: CollectorRegistry) -> None:
    Counter("mlwatcher_c", "h", registry=registry).inc()
    mapper = PointMapper()
    mapper.map(registry.collect(), 100)
    assert mapper.state()["counters"]
    mapper.map(CollectorRegistry().collect(), 100 + 86400 + 1)
    assert mapper.state()["counters"] == {}


def test_bad_arguments_are_named() -> None:
    with pytest.raises(TypeError, match="timestamp == 1.5"):
        PointMapper().map([], 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="options =="):
        PointMapper(options={"ver": "1"})  # type: ignore[arg-type]


# ---------------------------------------------------------------------- naming: mlwatcher-v1
def v1_registry(registry: CollectorRegistry, window_end: float) -> CollectorRegistry:
    """The window series of one model, as the exporter publishes them."""
    Gauge("mlwatcher_window_end_timestamp_seconds", "h", ["model"], registry=registry).labels(
        "digits").set(window_end)
    Gauge("mlwatcher_pred1", "h", ["model", "stat"], registry=registry).labels(
        "digits", "median").set(0.9)
    Gauge("mlwatcher_predicted_class_rows", "h", ["model", "class"], registry=registry).labels(
        "digits", "3").set(12)
    Gauge("mlwatcher_feature", "h", ["model", "feature", "stat"], registry=registry).labels(
        "digits", "f7", "mean").set(0.5)
    Gauge("mlwatcher_class_accuracy", "h", ["model", "class"], registry=registry).labels(
        "digits", "3").set(0.75)
    Counter("mlwatcher_predictions", "h", ["model", "class"], registry=registry).labels(
        "digits", "3").inc(4)
    return registry


def test_v1_naming_sends_the_ancestors_names_and_properties(registry: CollectorRegistry) -> None:
    mapper = PointMapper(MappingOptions(naming="mlwatcher-v1"))
    got = by_what(mapper.map(v1_registry(registry, 1_700_000_050).collect(), 1_700_000_060).points)
    assert sorted(p["properties"]["stat"] for p in got["max_prediction_proba"]) == ["median", "q50"]
    assert got["max_prediction_proba"][0] == {
        "properties": {"what": "max_prediction_proba", "agent_id": "digits", "stat": "median",
                       "ver": "1", "target_type": "gauge"},
        "tags": {}, "timestamp": 1_700_000_050, "value": 0.9}
    assert got["prediction_count"][0]["properties"] == {
        "what": "prediction_count", "agent_id": "digits", "class_name": "class_3", "ver": "1",
        "target_type": "counter"}
    assert got["prediction_count"][0]["value"] == 12
    assert got["feature_value"][0]["properties"]["feat_name"] == "feat_7"
    assert got["accuracy"][0]["properties"]["class_name"] == "class_3"
    # Series the ancestor did not have keep their names, at the snapshot time.
    end = got["mlwatcher_window_end_timestamp_seconds"][0]
    assert end["properties"]["agent_id"] == "digits" and end["timestamp"] == 1_700_000_060
    assert "mlwatcher_predictions_total" not in got, "counters still start with a baseline"


def test_v1_naming_sends_each_window_once_even_after_a_restart(
    registry: CollectorRegistry
) -> None:
    v1 = MappingOptions(naming="mlwatcher-v1")
    mapper = PointMapper(v1)
    v1_registry(registry, 1_700_000_050)
    assert "max_prediction_proba" in by_what(mapper.map(registry.collect(), 1_700_000_060).points)
    again = by_what(mapper.map(registry.collect(), 1_700_000_120).points)
    assert "max_prediction_proba" not in again and "mlwatcher_window_end_timestamp_seconds" in again
    restarted = PointMapper(v1, state=mapper.state())
    assert mapper.tracks_counters and "max_prediction_proba" not in by_what(
        restarted.map(registry.collect(), 1_700_000_180).points)
    registry._names_to_collectors["mlwatcher_window_end_timestamp_seconds"].labels(
        "digits").set(1_700_000_110)
    [point, _] = by_what(restarted.map(registry.collect(), 1_700_000_240).points)[
        "max_prediction_proba"]
    assert point["timestamp"] == 1_700_000_110


def test_v1_feature_names_that_are_not_indices_are_kept(registry: CollectorRegistry) -> None:
    Gauge("mlwatcher_feature", "h", ["model", "feature", "stat"], registry=registry).labels(
        "m", "amount", "mean").set(3)
    [point] = PointMapper(MappingOptions(naming="mlwatcher-v1")).map(registry.collect(), 5).points
    assert point["properties"]["feat_name"] == "amount" and point["timestamp"] == 5


def test_v1_windows_of_replicas_of_one_model_are_told_apart(registry: CollectorRegistry) -> None:
    end = Gauge("mlwatcher_window_end_timestamp_seconds", "h", ["model", "instance"],
                registry=registry)
    pred1 = Gauge("mlwatcher_pred1", "h", ["model", "instance", "stat"], registry=registry)
    end.labels("digits", "a").set(1_700_000_050)
    end.labels("digits", "b").set(1_700_000_040)  # b's window ended earlier
    for instance in ("a", "b"):
        pred1.labels("digits", instance, "mean").set(0.5)
    mapper = PointMapper(MappingOptions(naming="mlwatcher-v1"))
    points = mapper.map(registry.collect(), 1_700_000_060).points
    sent = sorted((p["properties"]["instance"], p["timestamp"]) for p in points
                  if p["properties"]["what"] == "max_prediction_proba")
    assert sent == [("a", 1_700_000_050), ("b", 1_700_000_040)]
