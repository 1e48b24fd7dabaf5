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


# The ancestor's own behaviours, restated (MLWatcher v1.0, its metrics and sanity_check
# modules), where the exporter deliberately differs. Each takes what the ancestor's
# server received: the window's sampled rows as numpy arrays, labels one-hot.

def ancestor_treats_as_discrete(matrix, column):
    """The ancestor's test of a discrete feature: the column's first value is a Python
    ``int``. Values of numpy integer arrays are numpy scalars, which are not."""
    return isinstance(np.asarray(matrix)[0, column], int)


def ancestor_spread12(proba):
    """Per row, the largest probability minus the largest value different from it.

    Ties with the top value are skipped (a tie looks confident), and a constant row has
    no such value: the ancestor's ``max()`` of an empty sequence raised ValueError, and
    the whole window's metrics were lost with it.
    """
    spreads = []
    for row in np.asarray(proba, dtype=np.float64):
        top = row.max()
        below = row[row != top]
        if below.size == 0:
            raise ValueError("max() arg is an empty sequence")
        spreads.append(top - below.max())
    return np.array(spreads)


def ancestor_predicted_one_hot(proba, threshold=0.5):
    """The predictions behind the ancestor's label metrics, one-hot: with two classes
    class 1 iff ``p[1] > threshold``, else *every* class equal to the row's maximum."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape[1] == 2:
        positive = proba[:, 1] > threshold
        return np.column_stack([~positive, positive]).astype(int)
    return (proba == proba.max(axis=1, keepdims=True)).astype(int)


def ancestor_label_scores(proba, one_hot_labels, threshold=0.5):
    """The ancestor's per-class one-vs-rest accuracy, precision, recall and f1 (0 where
    undefined), from :func:`ancestor_predicted_one_hot`."""
    predicted = ancestor_predicted_one_hot(proba, threshold).astype(bool)
    truth = np.asarray(one_hot_labels).astype(bool)
    true_positive = (predicted & truth).sum(axis=0)
    true_negative = (~predicted & ~truth).sum(axis=0)
    predicted_rows = predicted.sum(axis=0)
    true_rows = truth.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted_rows > 0, true_positive / predicted_rows, 0.0)
        recall = np.where(true_rows > 0, true_positive / true_rows, 0.0)
        f1 = np.where(precision + recall > 0,
                      2 * precision * recall / (precision + recall), 0.0)
    return {"accuracy": (true_positive + true_negative) / len(truth),
            "precision": precision, "recall": recall, "f1": f1}


def ancestor_window_predictions(batches):
    """Predicted class of every row of a window of ``(proba, threshold)`` calls of a
    binary model: the ancestor kept only the last call's threshold and applied it to
    the whole window when it shipped it."""
    last_threshold = batches[-1][1]
    proba = np.concatenate([np.asarray(p, dtype=np.float64) for p, _ in batches])
    return (proba[:, 1] > last_threshold).astype(int)
