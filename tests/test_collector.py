"""The collector: every published name, its labels and values, and promtool's lint."""

import subprocess

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import mlwatcher_exporter
from mlwatcher_exporter import driftmetrics
from mlwatcher_exporter import ModelMonitor
from mlwatcher_exporter.collector import FAMILIES
from mlwatcher_exporter.naming import PRED1_BUCKETS, REJECT_REASONS, STATS


def make_monitor(registry, clock, model="m", **kwargs):
    options = dict(model=model, class_names=["cat", "dog", "emu"], window_seconds=10.0,
                   reservoir_size=500, registry=registry, background=False, random_state=0,
                   _clock=clock, categorical_features=["colour"], feature_names=["size", "colour"])
    options.update(kwargs)
    return ModelMonitor(**options)


def feed(monitor, rng, n=200):
    proba = rng.dirichlet(np.ones(3), size=n)
    features = np.column_stack([rng.normal(size=n), rng.integers(0, 3, n)])
    labels = np.array(["cat", "dog", "emu"])[rng.integers(0, 3, n)]
    monitor.observe(proba, features, labels)
    return proba, labels


def value(registry, name, **labels):
    return registry.get_sample_value(name, {"model": "m", **labels})


def test_every_family_is_published_with_its_labels(registry, clock):
    # The optional families too: the confusion matrix and a feature histogram.
    monitor = make_monitor(registry, clock, fleet={"confusion_matrix": True,
                                                   "feature_buckets": {"size": [-1, 0, 1]}})
    proba, labels = feed(monitor, np.random.default_rng(0))
    clock.advance(10)
    names = {f.name: f for f in registry.collect()}
    expected = {name if FAMILIES[name][0] != "info" else name for name in FAMILIES}
    expected -= set(driftmetrics.FAMILIES)  # only with a reference (tests/test_judge.py)
    assert set(names) == expected
    assert value(registry, "mlwatcher_window_rows") == 200
    assert value(registry, "mlwatcher_window_sampled_rows") == 200
    for stat in STATS:
        assert value(registry, "mlwatcher_pred1", stat=stat) is not None
        assert value(registry, "mlwatcher_spread12", stat=stat) is not None
        assert value(registry, "mlwatcher_feature", feature="size", stat=stat) is not None
    assert value(registry, "mlwatcher_feature", feature="colour", stat="mean") is None
    predicted = proba.argmax(axis=1)
    for index, name in enumerate(["cat", "dog", "emu"]):
        rows = int((predicted == index).sum())
        assert value(registry, "mlwatcher_predicted_class_rows", **{"class": name}) == rows
        assert value(registry, "mlwatcher_predicted_class_ratio", **{"class": name}) == rows / 200
        assert value(registry, "mlwatcher_predictions_total", **{"class": name}) == rows
        truth = labels == name
        assert value(registry, "mlwatcher_labeled_predictions_total",
                     **{"class": name}) == truth.sum()
        assert value(registry, "mlwatcher_correct_predictions_total", **{"class": name}) == \
            (truth & (predicted == index)).sum()
        for family in ("precision", "recall", "f1", "class_accuracy"):
            assert value(registry, f"mlwatcher_{family}", **{"class": name}) is not None
    assert value(registry, "mlwatcher_accuracy") == pytest.approx(
        (np.array(["cat", "dog", "emu"])[predicted] == labels).mean())
    assert value(registry, "mlwatcher_labeled_rows") == 200
    assert value(registry, "mlwatcher_f1_macro") is not None
    assert value(registry, "mlwatcher_feature_missing_ratio", feature="size") == 0.0
    ratios = [value(registry, "mlwatcher_feature_value_ratio", feature="colour", value=str(v))
              for v in range(3)]
    assert sum(ratios) == pytest.approx(1.0)
    for reason in REJECT_REASONS:
        assert value(registry, "mlwatcher_rejected_rows_total", reason=reason) == 0
    info = value(registry, "mlwatcher_model_info", version=mlwatcher_exporter.__version__,
                 window_seconds="10", reservoir_size="500", n_classes="3")
    assert info == 1.0
    assert value(registry, "mlwatcher_window_duration_seconds") == 10.0


def test_pred1_histogram_counts_every_row(registry, clock):
    monitor = make_monitor(registry, clock, reservoir_size=10)
    rng = np.random.default_rng(1)
    proba, _ = feed(monitor, rng, 1000)
    pred1 = proba.max(axis=1)
    for edge in PRED1_BUCKETS:
        assert value(registry, "mlwatcher_prediction_pred1_bucket", le=f"{edge:g}") == \
            (pred1 <= edge).sum()
    assert value(registry, "mlwatcher_prediction_pred1_bucket", le="+Inf") == 1000
    assert value(registry, "mlwatcher_prediction_pred1_count") == 1000
    assert value(registry, "mlwatcher_prediction_pred1_sum") == pytest.approx(pred1.sum())


def test_no_window_yet_and_empty_window(registry, clock):
    make_monitor(registry, clock, n_classes=3)
    assert value(registry, "mlwatcher_window_rows") is None
    assert value(registry, "mlwatcher_predictions_total", **{"class": "cat"}) == 0
    clock.advance(10)
    assert value(registry, "mlwatcher_window_rows") == 0
    assert value(registry, "mlwatcher_predicted_class_rows", **{"class": "cat"}) == 0
    for absent in ("mlwatcher_pred1", "mlwatcher_spread12"):
        assert value(registry, absent, stat="mean") is None
    assert value(registry, "mlwatcher_predicted_class_ratio", **{"class": "cat"}) is None
    assert value(registry, "mlwatcher_accuracy") is None


def test_gauges_are_stable_between_scrapes_of_one_window(registry, clock):
    monitor = make_monitor(registry, clock)
    rng = np.random.default_rng(2)
    feed(monitor, rng)
    clock.advance(10)
    first = generate_latest(registry)
    feed(monitor, rng)  # goes into the next, still open window
    clock.advance(5)
    second = generate_latest(registry)

    def window(text):
        return [line for line in text.decode().splitlines()
                if line.startswith(("mlwatcher_pred1", "mlwatcher_feature{"))]

    assert window(first) == window(second)


def test_several_models_share_a_registry(registry, clock):
    make_monitor(registry, clock, model="a")
    second = make_monitor(registry, clock, model="b")
    second.observe(np.array([[0.2, 0.3, 0.5]]))
    assert registry.get_sample_value("mlwatcher_predictions_total",
                                     {"model": "b", "class": "emu"}) == 1
    assert registry.get_sample_value("mlwatcher_predictions_total",
                                     {"model": "a", "class": "emu"}) == 0
    with pytest.raises(ValueError, match="model == 'a' is already monitored"):
        make_monitor(registry, clock, model="a")
    second.close()
    assert registry.get_sample_value("mlwatcher_predictions_total",
                                     {"model": "b", "class": "emu"}) is None


def test_unregistered_monitor_publishes_nothing(clock):
    registry = CollectorRegistry()
    monitor = make_monitor(None, clock)
    feed(monitor, np.random.default_rng(3))
    assert list(registry.collect()) == []
    with pytest.raises(ValueError, match="registry == None"):
        monitor.start_http_server(port=0)


def test_exposition_parses_and_passes_promtool(registry, clock, promtool):
    monitor = make_monitor(registry, clock)
    feed(monitor, np.random.default_rng(4))
    monitor.observe_quietly(np.full((2, 3), 2.0))
    clock.advance(10)
    text = generate_latest(registry).decode()
    parsed = {f.name for f in text_string_to_metric_families(text)}
    assert {"mlwatcher_predictions", "mlwatcher_model_info", "mlwatcher_prediction_pred1"} <= parsed
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), \
        result.stdout + result.stderr


def test_a_failing_window_does_not_fail_the_scrape(registry, clock, monkeypatch, caplog):
    monitor = make_monitor(registry, clock)
    feed(monitor, np.random.default_rng(5))
    clock.advance(10)
    assert value(registry, "mlwatcher_window_rows") == 200

    def broken(*args, **kwargs):
        raise FloatingPointError("boom")

    monkeypatch.setattr("mlwatcher_exporter.rotation.compute_window_stats", broken)
    feed(monitor, np.random.default_rng(6), n=50)
    clock.advance(10)
    assert generate_latest(registry)  # the scrape still answers
    assert value(registry, "mlwatcher_window_rows") == 200  # the last good window stays
    assert any("window statistics failed" in r.getMessage() for r in caplog.records)
