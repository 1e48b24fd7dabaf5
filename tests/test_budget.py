"""The series budget: a model stays under fleet.max_series, says what it cut, and
check-config predicts the series a configuration produces."""

import logging

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from mlwatcher_exporter import ModelMonitor
from mlwatcher_exporter.budget import PARTS, estimate_series, plan_cut
from mlwatcher_exporter.cli import main
from mlwatcher_exporter.config import parse_config
from mlwatcher_exporter.seriesreport import series_report


def scrape(registry):
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def value(registry, name, **labels):
    return registry.get_sample_value(name, {"model": "m", **labels})


def fed(n_classes, n_features, categorical=(), rows=300, **fleet):
    registry = CollectorRegistry()
    names = [f"f{i}" for i in range(n_features)]
    monitor = ModelMonitor(model="m", n_classes=n_classes, registry=registry,
                           background=False, reservoir_size=rows, feature_names=names,
                           categorical_features=list(categorical), fleet=fleet or None)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(rows, n_features))
    for column in categorical:
        features[:, column] = np.arange(rows) % 40  # more values than max_categories
    monitor.observe(rng.dirichlet(np.ones(n_classes), size=rows), features=features,
                    labels=rng.integers(0, n_classes, rows))
    monitor.close_window()
    return monitor, registry


def test_a_ten_class_200_feature_model_stays_under_2500_series_by_default():
    monitor, registry = fed(10, 200, categorical=(0, 1))
    lines = scrape(registry)
    assert len(lines) == value(registry, "mlwatcher_published_series") <= 2500
    assert value(registry, "mlwatcher_series_limit") == 2500
    # The counters of every feature are kept; the window statistics of the last go.
    assert value(registry, "mlwatcher_feature_values_total", feature="f199") is not None
    assert value(registry, "mlwatcher_series_dropped_total", family="feature_statistics") > 0
    monitor.close()


def test_a_cut_window_renders_as_prometheus_client_does_scrape_after_scrape():
    from mlwatcher_exporter.textformat import render_text

    monitor, registry = fed(10, 200, categorical=(0, 1))
    # The cut window families are rendered once and their text reused (collector.py).
    first, second = render_text(registry), render_text(registry)
    assert first == second == generate_latest(registry)
    assert b'feature="f2",model="m",stat="mean"' in first
    assert b'feature="f199",model="m",stat="mean"' not in first  # cut: not published
    monitor.observe(np.tile(np.full(10, 0.1), (300, 1)), features=np.ones((300, 200)))
    monitor.close_window()  # a new window: rendered afresh
    third = render_text(registry)
    assert third != first and third == generate_latest(registry)
    monitor.close()


FIVE = ["mean", "std", "q25", "median", "q75"]


def test_five_statistics_keep_the_200_feature_model_whole():
    monitor, registry = fed(10, 200, categorical=(0, 1), feature_statistics=FIVE)
    lines = scrape(registry)
    assert len(lines) == value(registry, "mlwatcher_published_series") <= 2500
    for part in PARTS:
        assert value(registry, "mlwatcher_series_dropped_total", family=part) == 0
    assert {line.split('stat="')[1].split('"')[0] for line in lines
            if line.startswith("mlwatcher_feature{")} == set(FIVE)
    # check-config's estimate is the scrape's count (categorical values saturated).
    settings = parse_config({"model": "m", "n_classes": 10, "categorical_features": [0, 1],
                             "feature_names": [f"f{i}" for i in range(200)],
                             "fleet": {"feature_statistics": FIVE}})
    assert f"up to {len(lines)} series" in series_report(settings)
    assert "nothing cut" in series_report(settings)
    monitor.close()


def test_allow_and_deny_patterns_choose_the_features_published():
    monitor, registry = fed(2, 30, categorical=(0,), features={
        "allow": ["f1*", "f0"], "deny": ["f12", "f1[89]"]})
    published = {line.split('feature="')[1].split('"')[0] for line in scrape(registry)
                 if 'feature="' in line}
    assert published == {"f0", "f1", "f10", "f11", "f13", "f14", "f15", "f16", "f17"}
    settings = parse_config({"model": "m", "n_classes": 2, "categorical_features": [0],
                             "feature_names": [f"f{i}" for i in range(30)],
                             "fleet": {"features": {"allow": ["f1*", "f0"],
                                                    "deny": ["f12", "f1[89]"]}}})
    lines = scrape(registry)
    assert f"up to {len(lines)} series" in series_report(settings)
    monitor.close()


def test_a_huge_model_stays_under_its_cap_and_says_what_was_cut(caplog):
    caplog.set_level(logging.WARNING, logger="mlwatcher_exporter")
    monitor, registry = fed(500, 2000, rows=50)
    for _ in range(3):
        lines = scrape(registry)
        assert len(lines) <= 2500
    assert len(lines) == value(registry, "mlwatcher_published_series")
    # Every per-class counter is kept; the window's per-class gauges of the first
    # classes; then the budget is spent, and every feature series is left out.
    assert value(registry, "mlwatcher_labeled_predictions_by_predicted_class_total",
                 **{"class": "499"}) is not None
    assert value(registry, "mlwatcher_precision", **{"class": "0"}) is not None
    assert value(registry, "mlwatcher_precision", **{"class": "499"}) is None
    kept = sum(1 for line in lines if line.startswith("mlwatcher_precision{"))
    assert value(registry, "mlwatcher_feature_values_total", feature="f0") is None
    # Each series left out is counted once, however often it is scraped.
    assert value(registry, "mlwatcher_series_dropped_total",
                 family="class_statistics") == 6 * (500 - kept)
    assert value(registry, "mlwatcher_series_dropped_total",
                 family="feature_counters") == 5 * 2000
    assert value(registry, "mlwatcher_series_dropped_total",
                 family="feature_statistics") == 10 * 2000
    warnings = [r.getMessage() for r in caplog.records if "series budget" in r.getMessage()]
    assert len(warnings) == len({w.split(" leaves out ")[1].split(" of ")[0]
                                 for w in warnings}) == 3  # once per part cut
    assert any("class_statistics of" in w and "'499'" in w for w in warnings)
    monitor.close()


def test_the_cut_stays_put_when_a_window_has_fewer_series():
    registry = CollectorRegistry()
    names = [f"f{i}" for i in range(800)]
    monitor = ModelMonitor(model="m", n_classes=10, registry=registry, background=False,
                           reservoir_size=50, feature_names=names)
    rng = np.random.default_rng(1)

    def window(labeled):
        monitor.observe(rng.dirichlet(np.ones(10), size=50),
                        features=rng.normal(size=(50, 800)),
                        labels=rng.integers(0, 10, 50) if labeled else None)
        monitor.close_window()
        return {line.split('feature="')[1].split('"')[0] for line in scrape(registry)
                if line.startswith("mlwatcher_feature_values_total{")}

    first = window(labeled=True)
    assert 0 < len(first) < 800  # the counters are cut
    # An unlabeled window has 4 class gauges fewer per class: the same features stay.
    assert window(labeled=False) == first
    assert window(labeled=True) == first
    monitor.close()


def test_the_estimate_counts_what_a_reference_adds():
    registry = CollectorRegistry()
    monitor = ModelMonitor(model="m", n_classes=3, registry=registry, background=False,
                           feature_names=["a", "b", "colour"], categorical_features=[2])
    rng = np.random.default_rng(2)

    def batch(rows):
        features = rng.normal(size=(rows, 3))
        features[:, 2] = np.arange(rows) % 40  # more values than max_categories
        return rng.dirichlet(np.ones(3), size=rows), features, rng.integers(0, 3, rows)

    proba, features, labels = batch(400)
    monitor.fit_reference(features, proba, labels)
    proba, features, labels = batch(300)
    monitor.observe(proba, features=features, labels=labels)
    monitor.close_window()
    estimate = estimate_series(3, 2, 1, 10, monitor.snapshot().counts.layout, reference=True)
    assert len(scrape(registry)) == sum(estimate.values())
    monitor.close()


def test_confusion_matrix_beyond_its_cap_is_reported():
    monitor, registry = fed(30, 2, confusion_matrix=True, confusion_max_classes=20)
    assert value(registry, "mlwatcher_series_dropped_total",
                 family="confusion_matrix") == 900
    monitor.close()
    monitor, registry = fed(3, 2, confusion_matrix=True)
    assert value(registry, "mlwatcher_confusion_matrix_rows_total", true_class="0",
                 predicted_class="1") is not None
    monitor.close()


def test_plan_cut_keeps_order_and_stops_after_the_first_cut():
    units = {"class_statistics": [("a", 6)], "feature_counters": [("x", 5), ("y", 5)],
             "feature_statistics": [("x", 1)]}
    cut = plan_cut(100, units, 100 + 7 + 6 + 5 + 4)  # 7: the budget's own series
    assert cut.kept["class_statistics"] is None
    assert cut.kept["feature_counters"] == {"x"}
    assert cut.kept["feature_statistics"] == set()  # fits, but comes after a cut part
    assert cut.dropped["feature_counters"] == 5 and cut.dropped["feature_statistics"] == 1


def test_check_config_prints_the_series(tmp_path, capsys):
    path = tmp_path / "m.yml"
    path.write_text("model: big\nn_classes: 10\nfeature_names: [a, b, c]\n"
                    "fleet: {max_series: 200}\n")
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "model 'big': up to" in out and "max_series 200: the budget cuts" in out
    path.write_text("model: small\n")
    assert main(["check-config", str(path)]) == 0
    assert "series unknown until" in capsys.readouterr().out
