"""Drift statistics of one window against a reference, vectorised numpy, no scipy.

Pure functions. Continuous distributions are compared on the reference's quantile bins
(PSI, Jensen-Shannon) and on its representative points (Kolmogorov-Smirnov,
Wasserstein); categorical ones on category frequencies (PSI, Jensen-Shannon, the chi2
test of homogeneity). Conventions, as in docs/drift.md:

- PSI replaces an empty bin's share by :data:`PSI_EPSILON` (1e-4) on either side, not
  renormalised (Evidently's convention), so that one empty bin gives a large, finite
  value rather than infinity.
- Jensen-Shannon is the *distance* (square root of the divergence) in base 2, in [0, 1];
  it needs no smoothing (``0 log 0 = 0``).
- KS is the two-sample statistic ``sup |F_ref - F_win|``, Wasserstein the 1-D earth
  mover's distance divided by the reference iqr (its std when the iqr is 0, 1 when both
  are), both between the reference points and the window's values, as
  ``scipy.stats.ks_2samp`` and ``scipy.stats.wasserstein_distance`` compute them.
- chi2 p-value: Pearson's test of homogeneity of the 2 x k table of reference and window
  counts, no Yates correction, categories empty on both sides left out.

Every function returns a finite float or None (nothing to compare), never NaN.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

__all__ = [
    "PSI_EPSILON",
    "bin_shares",
    "psi",
    "js_distance",
    "ks_statistic",
    "wasserstein",
    "chi2_pvalue",
    "chi2_sf",
    "scale_of",
]

#: Share given to an empty bin in PSI.
PSI_EPSILON = 1e-4


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of `values` in each bin ``(-inf, e0], (e0, e1], ..., (e_last, inf)``."""
    bins = np.searchsorted(edges, values, side="left")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    return counts / max(values.size, 1)


def psi(reference: np.ndarray, current: np.ndarray) -> Optional[float]:
    """Population stability index ``sum (c - r) ln(c / r)`` of two share vectors."""
    if reference.size < 2:
        return None if reference.size == 0 else 0.0
    r = np.where(reference > 0, reference, PSI_EPSILON)
    c = np.where(current > 0, current, PSI_EPSILON)
    return _finite(float(np.sum((c - r) * np.log(c / r))))


def js_distance(reference: np.ndarray, current: np.ndarray) -> Optional[float]:
    """Jensen-Shannon distance (base 2) of two share vectors, in [0, 1]."""
    if reference.size == 0 or reference.sum() <= 0 or current.sum() <= 0:
        return None
    p = reference / reference.sum()
    q = current / current.sum()
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    divergence = max(0.5 * (kl_p + kl_q), 0.0)
    return _finite(min(math.sqrt(divergence), 1.0))


def ks_statistic(points: np.ndarray, values: np.ndarray) -> Optional[float]:
    """Two-sample KS statistic of sorted reference `points` and window `values`."""
    if points.size == 0 or values.size == 0:
        return None
    window = np.sort(values)
    both = np.concatenate([points, window])
    cdf_ref = np.searchsorted(points, both, side="right") / points.size
    cdf_win = np.searchsorted(window, both, side="right") / window.size
    return _finite(float(np.max(np.abs(cdf_ref - cdf_win))))


def wasserstein(points: np.ndarray, values: np.ndarray, scale: float) -> Optional[float]:
    """Wasserstein-1 distance of sorted reference `points` and window `values`, / `scale`.

    The integral of ``|F_ref - F_win|`` over the merged sorted values, as scipy.
    """
    if points.size == 0 or values.size == 0:
        return None
    window = np.sort(values)
    both = np.sort(np.concatenate([points, window]))
    deltas = np.diff(both)
    cdf_ref = np.searchsorted(points, both[:-1], side="right") / points.size
    cdf_win = np.searchsorted(window, both[:-1], side="right") / window.size
    distance = float(np.sum(np.abs(cdf_ref - cdf_win) * deltas))
    return _finite(distance / scale)


def chi2_pvalue(reference_counts: np.ndarray, current_counts: np.ndarray) -> Optional[float]:
    """p-value of Pearson's chi2 test that both count vectors share one distribution."""
    keep = (reference_counts + current_counts) > 0
    table = np.vstack([reference_counts[keep], current_counts[keep]]).astype(np.float64)
    if table.shape[1] < 2 or table[0].sum() <= 0 or table[1].sum() <= 0:
        return None if table[1].sum() <= 0 or table[0].sum() <= 0 else 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return _finite(chi2_sf(statistic, table.shape[1] - 1))


def chi2_sf(x: float, dof: int) -> float:
    """Survival function of the chi2 distribution: the regularised upper incomplete
    gamma function Q(dof/2, x/2), by its series or its continued fraction."""
    if x <= 0:
        return 1.0
    a, z = 0.5 * dof, 0.5 * x
    if z < a + 1:
        return max(0.0, min(1.0, 1.0 - _gamma_series(a, z)))
    return max(0.0, min(1.0, _gamma_fraction(a, z)))


def _gamma_series(a: float, z: float) -> float:
    """Regularised lower incomplete gamma P(a, z) by its series (z < a + 1)."""
    term = total = 1.0 / a
    denominator = a
    for _ in range(1000):
        denominator += 1.0
        term *= z / denominator
        total += term
        if abs(term) < abs(total) * 1e-15:
            break
    return total * math.exp(-z + a * math.log(z) - math.lgamma(a))


def _gamma_fraction(a: float, z: float) -> float:
    """Regularised upper incomplete gamma Q(a, z) by Lentz's continued fraction."""
    tiny = 1e-300
    b = z + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return math.exp(-z + a * math.log(z) - math.lgamma(a)) * h


def scale_of(iqr: float, std: float) -> float:
    """Wasserstein's normaliser: the iqr, the std when the iqr is 0, else 1."""
    for value in (iqr, std):
        if value > 0 and math.isfinite(value):
            return float(value)
    return 1.0


def _finite(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None
