"""reference.py: fitting, the versioned file, and loading errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlwatcher_exporter.reference import (
    VERSION,
    CategoricalProfile,
    ContinuousProfile,
    ReferenceError,
    fit_reference,
    load_reference,
)


def _data(rows: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet([2, 1, 1], size=rows)
    frame = pd.DataFrame({
        "amount": rng.exponential(10, size=rows),
        "country": rng.choice(["fr", "de", "it"], size=rows, p=[0.5, 0.3, 0.2]),
        "level": rng.integers(0, 3, size=rows),
    })
    labels = np.array(["b", "a", "c"])[proba.argmax(axis=1)]
    return proba, frame, labels


def test_fit_holds_quantile_bins_points_and_category_shares() -> None:
    proba, frame, labels = _data()
    profile = fit_reference(proba, frame, labels, classes=["b", "a", "c"],
                            categorical_features=["level"], n_points=500)
    amount = profile.features["amount"]
    assert isinstance(amount, ContinuousProfile)
    assert amount.edges == pytest.approx(np.quantile(frame.amount, np.arange(1, 10) / 10))
    assert amount.shares == pytest.approx(np.full(10, 0.1), abs=1e-3)
    assert amount.points.size == 500 and np.all(np.diff(amount.points) >= 0)
    assert amount.iqr == pytest.approx(np.subtract(*np.quantile(frame.amount, [0.75, 0.25])))
    country = profile.features["country"]
    assert isinstance(country, CategoricalProfile)
    shares = dict(zip(country.names, country.shares))
    assert shares == pytest.approx(frame.country.value_counts(normalize=True).to_dict())
    assert set(profile.features["level"].names) == {"0", "1", "2"}
    assert profile.class_shares == pytest.approx(
        np.bincount(proba.argmax(axis=1), minlength=3) / len(proba))
    assert profile.calibration is not None and profile.labeled_rows == len(proba)
    assert profile.accuracy == 1.0


def test_small_references_keep_every_value_as_points() -> None:
    values = np.random.default_rng(1).normal(size=300)
    profile = fit_reference(np.full((300, 2), 0.5), values[:, None], classes=[0, 1])
    assert profile.features["f0"].points == pytest.approx(np.sort(values))
    assert profile.calibration is None and profile.labeled_rows == 0


def test_save_load_round_trip(tmp_path) -> None:
    proba, frame, labels = _data()
    profile = fit_reference(proba, frame, labels, classes=["b", "a", "c"], model="m")
    path = tmp_path / "profile.json"
    profile.save(path)
    again = load_reference(path)
    assert again.to_dict() == json.loads(path.read_text())
    assert again.calibration.apply(proba) == pytest.approx(profile.calibration.apply(proba))
    assert again.classes == ["b", "a", "c"]
    assert again.info()["version"] == str(VERSION)


def test_another_version_is_refused_with_a_clear_error(tmp_path) -> None:
    proba, frame, labels = _data(200)
    data = fit_reference(proba, frame, labels, classes=["b", "a", "c"]).to_dict()
    data["version"] = VERSION + 1
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ReferenceError, match=f"profile version == {VERSION + 1}, must be "
                       f"{VERSION}: rebuild it"):
        load_reference(path)


@pytest.mark.parametrize("text,message", [
    ("{", "not JSON"),
    ('{"format": "other"}', "not a reference profile"),
    ('{"format": "mlwatcher-reference", "version": 1}', "malformed profile"),
])
def test_unusable_files_are_named(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ReferenceError, match=message):
        load_reference(path)
    with pytest.raises(ReferenceError, match="cannot read it"):
        load_reference(tmp_path / "missing.json")


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="n_bins == 1"):
        fit_reference(np.full((3, 2), 0.5), classes=[0, 1], n_bins=1)
    with pytest.raises(ValueError, match="columns"):
        fit_reference(np.full((3, 3), 1 / 3), classes=[0, 1])
    with pytest.raises(ValueError, match="feature_names has 1 names"):
        fit_reference(np.full((3, 2), 0.5), np.ones((3, 2)), classes=[0, 1],
                      feature_names=["a"])
