"""Independent reference computations that the tests compare the exporter with."""

import numpy as np
import pytest

from mlwatcher_exporter.naming import STATS


def reference_stats(values):
    """The ancestor's nine statistics, written out with plain numpy."""
    q25, q50, q75 = (np.percentile(values, q) for q in (25, 50, 75))
    return {
        "mean": np.mean(values), "std": np.std(values), "min": np.min(values),
        "max": np.max(values), "range": np.max(values) - np.min(values),
        "q25": q25, "median": q50, "q75": q75, "iqr": q75 - q25,
    }


def assert_stats_equal(actual, expected):
    """Every one of the nine statistics, to floating-point precision."""
    assert set(actual) == set(STATS)
    for stat in STATS:
        assert actual[stat] == pytest.approx(expected[stat], rel=1e-9, abs=1e-12), stat
