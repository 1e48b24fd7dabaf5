"""judge.py, through a real ModelMonitor and registry: drift and estimates of each
window against its reference, published on /metrics; values checked against scipy on
the window's rows and the profile."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mlwatcher_exporter import ModelMonitor
from mlwatcher_exporter.drift import bin_shares
from mlwatcher_exporter.judge import DEFAULT_THRESHOLDS, judge_window
from mlwatcher_exporter.reference import ReferenceError, fit_reference
from mlwatcher_exporter.window import WindowSample

CLASSES = ["spam", "ham", "eggs"]


def _frame(rng: np.random.Generator, rows: int, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({
        "amount": rng.normal(10 + shift, 2, size=rows),
        "country": rng.choice(["fr", "de", "it"], size=rows,
                              p=[0.5, 0.3, 0.2] if not shift else [0.2, 0.3, 0.5]),
    })


def _proba(frame: pd.DataFrame) -> np.ndarray:
    z = (frame["amount"].to_numpy() - 10) / 2
    scores = np.column_stack([z, -z, np.zeros_like(z)])
    p = np.exp(scores)
    return p / p.sum(axis=1, keepdims=True)


def _monitor(registry: CollectorRegistry, **kwargs) -> ModelMonitor:
    return ModelMonitor(model="m", class_names=CLASSES, registry=registry, background=False,
                        reservoir_size=5000, **kwargs)


def _sample(registry: CollectorRegistry, name: str, **labels) -> float:
    value = registry.get_sample_value(name, {"model": "m", **labels})
    assert value is not None, (name, labels)
    return value


def test_published_drift_equals_scipy_on_the_window_rows() -> None:
    rng = np.random.default_rng(0)
    registry = CollectorRegistry()
    monitor = _monitor(registry)
    reference = _frame(rng, 3000)
    profile = monitor.fit_reference(reference, _proba(reference))
    window = _frame(rng, 2000, shift=1.0)
    monitor.observe(_proba(window), window)
    monitor.close_window()
    amount = profile.features["amount"]
    values = window["amount"].to_numpy()
    assert _sample(registry, "mlwatcher_feature_drift", feature="amount", method="ks") == \
        pytest.approx(stats.ks_2samp(amount.points, values).statistic, abs=1e-12)
    assert _sample(registry, "mlwatcher_feature_drift", feature="amount",
                   method="wasserstein") == pytest.approx(
        stats.wasserstein_distance(amount.points, values) / amount.iqr, rel=1e-9)
    assert _sample(registry, "mlwatcher_feature_drift", feature="amount", method="js") == \
        pytest.approx(jensenshannon(amount.shares, bin_shares(values, amount.edges), base=2))
    country = profile.features["country"]
    counts = window["country"].value_counts()
    current = np.array([counts.get(name, 0) for name in country.names], dtype=float)
    table = np.vstack([country.shares * country.rows, current])
    assert _sample(registry, "mlwatcher_feature_drift", feature="country",
                   method="chi2_pvalue") == pytest.approx(
        stats.chi2_contingency(table, correction=False)[1], rel=1e-6, abs=1e-300)
    assert _sample(registry, "mlwatcher_feature_drift", feature="country", method="js") == \
        pytest.approx(jensenshannon(country.shares, current / current.sum(), base=2))
    assert _sample(registry, "mlwatcher_drifted_features") == 2
    assert _sample(registry, "mlwatcher_prediction_drift", quantity="class",
                   method="psi") > 0.1
    for quantity in ("pred1", "spread12"):
        assert _sample(registry, "mlwatcher_prediction_drift", quantity=quantity,
                       method="ks") > 0.02
    info = registry.get_sample_value("mlwatcher_reference_info", {
        "model": "m", **profile.info()})
    assert info == 1.0


def test_a_window_like_the_reference_stays_below_every_threshold() -> None:
    rng = np.random.default_rng(1)
    registry = CollectorRegistry()
    monitor = _monitor(registry)
    reference = _frame(rng, 5000)
    monitor.fit_reference(reference, _proba(reference))
    window = _frame(rng, 3000)
    monitor.observe(_proba(window), window)
    judgement = monitor.close_window().judgement
    assert judgement.drifted_features == 0
    assert _sample(registry, "mlwatcher_drifted_features") == 0
    for methods in judgement.feature_drift.values():
        for method, value in methods.items():
            limit = DEFAULT_THRESHOLDS[method]
            assert value > limit if method == "chi2_pvalue" else value < limit / 2


def test_estimates_are_published_with_string_classes_and_an_absent_class() -> None:
    rng = np.random.default_rng(2)
    registry = CollectorRegistry()
    monitor = _monitor(registry)
    reference = _frame(rng, 4000)
    proba = _proba(reference)
    labels = np.array(CLASSES)[(proba.cumsum(axis=1) > rng.random((4000, 1))).argmax(axis=1)]
    monitor.fit_reference(reference, proba, labels)
    window = _frame(rng, 3000)
    window_proba = _proba(window)
    keep = window_proba.argmax(axis=1) != 2  # "eggs" is never predicted
    monitor.observe(window_proba[keep], window[keep])
    stats_ = monitor.close_window()
    text = generate_latest(registry).decode()
    assert not [line for line in text.splitlines()
                if not line.startswith("#") and line.endswith("NaN")]
    for label in CLASSES:
        value = _sample(registry, "mlwatcher_estimated_f1", **{"class": label})
        assert 0.0 <= value <= 1.0
    estimate = stats_.judgement.estimate
    assert _sample(registry, "mlwatcher_estimated_accuracy") == pytest.approx(estimate.accuracy)
    assert 0 < _sample(registry, "mlwatcher_estimated_accuracy_stderr") < 0.05
    assert _sample(registry, "mlwatcher_estimated_f1_macro") == pytest.approx(
        estimate.f1.mean())


def test_reference_from_configuration_and_thresholds(tmp_path) -> None:
    rng = np.random.default_rng(3)
    reference = _frame(rng, 2000)
    profile = fit_reference(_proba(reference), reference, classes=CLASSES, model="m")
    path = tmp_path / "profile.json"
    profile.save(path)
    registry = CollectorRegistry()
    monitor = ModelMonitor.from_config(
        {"model": "m", "class_names": CLASSES, "reference": str(path),
         "drift_thresholds": {"psi": 0.0, "js": None, "ks": None, "wasserstein": None,
                              "chi2_pvalue": None}},
        registry=registry, background=False)
    assert monitor.reference.to_dict() == profile.to_dict()
    window = _frame(rng, 1000)
    monitor.observe(_proba(window), window)
    assert monitor.close_window().judgement.drifted_features == 2  # any psi > 0


def test_bad_references_are_refused_at_start_up(tmp_path) -> None:
    profile = fit_reference(np.full((10, 2), 0.5), classes=["x", "y"])
    with pytest.raises(ValueError, match="reference classes == \\['x', 'y'\\], must be"):
        ModelMonitor(class_names=["y", "x"], reference=profile, registry=None,
                     background=False)
    with pytest.raises(ReferenceError, match="cannot read it"):
        ModelMonitor(reference=str(tmp_path / "none.json"), registry=None, background=False)
    with pytest.raises(ValueError, match="drift_thresholds.bogus: unknown drift method"):
        ModelMonitor(drift_thresholds={"bogus": 1}, registry=None, background=False)


def test_a_failing_judgement_keeps_the_window_statistics(caplog) -> None:
    registry = CollectorRegistry()
    monitor = _monitor(registry)
    rng = np.random.default_rng(4)
    reference = _frame(rng, 500)
    monitor.fit_reference(reference, _proba(reference))
    monitor._pipeline.judge._names = lambda: 1 / 0  # a bug of ours, simulated
    monitor.observe(_proba(reference), reference)
    stats_ = monitor.close_window()
    assert stats_.rows == 500 and stats_.judgement is None
    assert "drift against the reference failed" in caplog.text


def test_judge_window_skips_predictions_of_other_classes() -> None:
    profile = fit_reference(np.full((10, 2), 0.5), classes=["x", "y"])
    sample = WindowSample(proba=np.full((4, 2), 0.5), predicted=np.zeros(4, dtype=int),
                          features=None, has_features=None, labels=np.full(4, -1), rows=4,
                          class_rows=np.array([4, 0]))
    assert judge_window(sample, profile, feature_names=[], class_labels=["a", "b"]
                        ).prediction_drift == {}
    values = judge_window(sample, profile, feature_names=[], class_labels=["x", "y"])
    assert set(values.prediction_drift) == {"class", "pred1", "spread12"}
    assert all(math.isfinite(v) for m in values.prediction_drift.values() for v in m.values())
