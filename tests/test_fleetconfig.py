"""The fleet option: checked in keyword arguments and files, every problem named."""

import pytest

from mlwatcher_exporter import ModelMonitor
from mlwatcher_exporter.config import ConfigError, MonitorSettings, parse_config
from mlwatcher_exporter.fleetcounts import FleetLayout


def test_defaults_and_a_valid_file():
    assert MonitorSettings().fleet == FleetLayout()
    settings = parse_config({"feature_names": ["amount", "age"], "fleet": {
        "pred1_buckets": [0.5, 0.9, 0.99], "confusion_matrix": True,
        "confusion_max_classes": 5,
        "feature_buckets": {"amount": [0, 10, 100], "age": "reference"},
        "max_series": 1000}})
    assert settings.fleet == FleetLayout(
        pred1_buckets=(0.5, 0.9, 0.99), confusion_matrix=True, confusion_max_classes=5,
        feature_buckets={"amount": (0.0, 10.0, 100.0), "age": "reference"},
        max_series=1000)


@pytest.mark.parametrize("fleet, message", [
    ({"pred1_buckets": [0.5, 0.5]}, "fleet.pred1_buckets[1] == 0.5, must be greater than"),
    ({"pred1_buckets": [0.9, 0.5]}, "(increasing)"),
    ({"spread12_buckets": [0.5, 1.5]}, "fleet.spread12_buckets[1] == 1.5, must be in [0, 1]"),
    ({"pred1_buckets": [-0.1]}, "must be in [0, 1]"),
    ({"pred1_buckets": []}, "fleet.pred1_buckets has 0 edges"),
    ({"pred1_buckets": "0.5"}, "must be a list of 1 to 50 increasing"),
    ({"pred1_buckets": [0.5, float("nan")]}, "must be a finite number"),
    ({"confusion_matrix": "yes"}, "fleet.confusion_matrix == 'yes', must be true or false"),
    ({"confusion_max_classes": 101}, "fleet.confusion_max_classes == 101, must be an int in"),
    ({"max_series": 10}, "fleet.max_series == 10, must be an int in [100, 1000000]"),
    ({"feature_buckets": {"amount": [3, 2]}}, "fleet.feature_buckets.amount[1] == 2"),
    ({"feature_buckets": {"price": [1]}}, "'price' must be one of feature_names"),
    ({"feature_buckets": {"amount": "quantiles"}}, "increasing finite numbers or 'reference'"),
    ({"colour": 1}, "fleet.colour: unknown option"),
    ({"feature_statistics": ["mean", "p99"]}, "fleet.feature_statistics[1] == 'p99', must be"),
    ({"feature_statistics": "mean"}, "fleet.feature_statistics == 'mean', must be a list"),
    ({"feature_statistics": ["mean", "mean"]}, "repeats an item"),
    ({"features": ["amount"]}, "fleet.features == ['amount'], must be a mapping"),
    ({"features": {"only": ["a"]}}, "fleet.features.only: unknown option"),
    ({"features": {"deny": [3]}}, "fleet.features.deny[0] == 3, must be a list of at most"),
    ([1], "fleet == [1], must be a mapping"),
])
def test_bad_values_are_named(fleet, message):
    with pytest.raises(ConfigError) as error:
        parse_config({"feature_names": ["amount"], "fleet": fleet})
    assert message in str(error.value)
    with pytest.raises((ValueError, TypeError)) as raised:
        ModelMonitor(feature_names=["amount"], fleet=fleet, registry=None, background=False)
    assert message in str(raised.value)


def test_monitor_takes_a_layout():
    layout = FleetLayout(pred1_buckets=(0.5, 1.0))
    monitor = ModelMonitor(n_classes=2, fleet=layout, registry=None, background=False)
    monitor.observe([[0.3, 0.7]])
    assert monitor.snapshot().counts.pred1_buckets.tolist() == [0, 1, 0]
    monitor.close()


def test_statistics_and_feature_patterns_in_a_file():
    settings = parse_config({"feature_names": ["amount"], "fleet": {
        "feature_statistics": ["mean", "median"],
        "features": {"allow": ["a*"], "deny": ["*_id"]}}})
    layout = settings.fleet
    assert layout.feature_statistics == ("mean", "median") and layout.selects
    assert layout.publishes("amount") and not layout.publishes("account_id")
    assert not layout.publishes("Amount")  # case-sensitive
    assert not FleetLayout().selects and FleetLayout().publishes("anything")
