"""drift.py: every statistic against scipy (a test dependency only) or an independent
numpy computation, near 0 for samples of the reference, growing with a shift, and
finite on empty bins."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mlwatcher_exporter import drift


def _shares(seed: int, k: int) -> np.ndarray:
    values = np.random.default_rng(seed).random(k)
    return values / values.sum()


@pytest.mark.parametrize("seed", range(5))
def test_ks_equals_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    points = np.sort(rng.normal(size=300 + seed * 50))
    values = rng.normal(0.3, 1.2, size=1000)
    expected = stats.ks_2samp(points, values).statistic
    assert drift.ks_statistic(points, values) == pytest.approx(expected, abs=1e-12)


def test_ks_with_ties_equals_scipy() -> None:
    rng = np.random.default_rng(7)
    points = np.sort(rng.integers(0, 5, size=400).astype(float))
    values = rng.integers(0, 6, size=700).astype(float)
    expected = stats.ks_2samp(points, values).statistic
    assert drift.ks_statistic(points, values) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_wasserstein_equals_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    points = np.sort(rng.exponential(size=500))
    values = rng.exponential(1.5, size=800)
    expected = stats.wasserstein_distance(points, values)
    assert drift.wasserstein(points, values, 2.0) == pytest.approx(expected / 2.0, rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_js_equals_scipy_base2(seed: int) -> None:
    p, q = _shares(seed, 10), _shares(seed + 100, 10)
    assert drift.js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)


def test_js_with_empty_bins_equals_scipy() -> None:
    p = np.array([0.5, 0.5, 0.0, 0.0])
    q = np.array([0.0, 0.25, 0.25, 0.5])
    assert drift.js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
    assert drift.js_distance(p, np.array([0.0, 0.0, 0.5, 0.5])) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_chi2_pvalue_equals_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = rng.integers(10, 500, size=6).astype(float)
    current = rng.integers(10, 500, size=6).astype(float)
    expected = stats.chi2_contingency(np.vstack([reference, current]), correction=False)[1]
    value = drift.chi2_pvalue(reference, current)
    assert value == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_chi2_pvalue_leaves_out_categories_empty_on_both_sides() -> None:
    reference = np.array([100.0, 50.0, 0.0, 30.0])
    current = np.array([80.0, 70.0, 0.0, 10.0])
    keep = [0, 1, 3]
    expected = stats.chi2_contingency(np.vstack([reference[keep], current[keep]]),
                                      correction=False)[1]
    assert drift.chi2_pvalue(reference, current) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("dof", [1, 2, 5, 30, 200])
@pytest.mark.parametrize("x", [0.01, 0.5, 3.0, 20.0, 150.0, 400.0])
def test_chi2_sf_equals_scipy(dof: int, x: float) -> None:
    assert drift.chi2_sf(x, dof) == pytest.approx(stats.chi2.sf(x, dof), rel=1e-8, abs=1e-300)


def test_psi_equals_independent_formula_with_epsilon() -> None:
    p = np.array([0.2, 0.3, 0.5, 0.0])
    q = np.array([0.1, 0.0, 0.6, 0.3])
    pe = np.array([0.2, 0.3, 0.5, 1e-4])
    qe = np.array([0.1, 1e-4, 0.6, 0.3])
    expected = sum((b - a) * np.log(b / a) for a, b in zip(pe, qe))
    assert drift.psi(p, q) == pytest.approx(expected, rel=1e-12)


def test_bin_shares_uses_right_closed_bins() -> None:
    edges = np.array([1.0, 2.0])
    values = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    # (-inf, 1], (1, 2], (2, inf)
    assert drift.bin_shares(values, edges).tolist() == pytest.approx([2 / 6, 2 / 6, 2 / 6])


def test_near_zero_for_samples_of_the_reference() -> None:
    rng = np.random.default_rng(1)
    reference = np.sort(rng.normal(size=1000))
    edges = np.quantile(reference, np.arange(1, 10) / 10)
    ref_shares = drift.bin_shares(reference, edges)
    values = rng.normal(size=10_000)
    shares = drift.bin_shares(values, edges)
    assert drift.psi(ref_shares, shares) < 0.02
    assert drift.js_distance(ref_shares, shares) < 0.05
    assert drift.ks_statistic(reference, values) < 0.05
    assert drift.wasserstein(reference, values, 1.35) < 0.05


def test_every_statistic_grows_monotonically_with_the_shift() -> None:
    rng = np.random.default_rng(2)
    reference = np.sort(rng.normal(size=1000))
    edges = np.quantile(reference, np.arange(1, 10) / 10)
    ref_shares = drift.bin_shares(reference, edges)
    base = rng.normal(size=5000)
    rows = []
    for shift in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0):
        values = base + shift
        shares = drift.bin_shares(values, edges)
        rows.append((drift.psi(ref_shares, shares), drift.js_distance(ref_shares, shares),
                     drift.ks_statistic(reference, values),
                     drift.wasserstein(reference, values, 1.0)))
    for column in zip(*rows):
        assert all(b > a for a, b in zip(column, column[1:])), column


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=12),
       st.lists(st.integers(0, 50), min_size=1, max_size=12))
def test_empty_bins_never_give_nan_or_infinity(ref: list, cur: list) -> None:
    k = max(len(ref), len(cur))
    r = np.array(ref + [0] * (k - len(ref)), dtype=float)
    c = np.array(cur + [0] * (k - len(cur)), dtype=float)
    rs = r / r.sum() if r.sum() else r
    cs = c / c.sum() if c.sum() else c
    for value in (drift.psi(rs, cs), drift.js_distance(rs, cs), drift.chi2_pvalue(r, c)):
        assert value is None or np.isfinite(value)
    value = drift.js_distance(rs, cs)
    if value is not None:
        assert 0.0 <= value <= 1.0
        assert value == pytest.approx(jensenshannon(rs, cs, base=2), abs=1e-9)
    p = drift.chi2_pvalue(r, c)
    if p is not None:
        assert 0.0 <= p <= 1.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40),
       st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40))
def test_ks_and_wasserstein_match_scipy_on_any_values(ref: list, cur: list) -> None:
    points = np.sort(np.array(ref))
    values = np.array(cur)
    assert drift.ks_statistic(points, values) == pytest.approx(
        stats.ks_2samp(points, values).statistic, abs=1e-12)
    assert drift.wasserstein(points, values, 1.0) == pytest.approx(
        stats.wasserstein_distance(points, values), rel=1e-9, abs=1e-6)


def test_nothing_to_compare_is_none() -> None:
    empty = np.array([])
    assert drift.ks_statistic(empty, np.ones(3)) is None
    assert drift.wasserstein(np.ones(3), empty, 1.0) is None
    assert drift.js_distance(empty, empty) is None
    assert drift.chi2_pvalue(np.array([5.0, 0.0]), np.array([0.0, 0.0])) is None


def test_scale_falls_back_from_iqr_to_std_to_one() -> None:
    assert drift.scale_of(2.0, 5.0) == 2.0
    assert drift.scale_of(0.0, 5.0) == 5.0
    assert drift.scale_of(0.0, 0.0) == 1.0
