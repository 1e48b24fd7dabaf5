"""Batch validation: every rejection reason, with messages that name what went wrong."""

import numpy as np
import pandas as pd
import pytest

from mlwatcher_exporter.naming import REJECT_REASONS
from mlwatcher_exporter.validation import (
    BatchTypeError,
    BatchValueError,
    ClassIndex,
    check_proba,
    check_proba_values,
    to_proba_table,
)

PROBA = np.array([[0.2, 0.8], [0.6, 0.4]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_arrays_pass_without_copy(dtype):
    proba = PROBA.astype(dtype)
    assert check_proba(proba, 2) is proba


def test_lists_and_dataframes_are_converted():
    np.testing.assert_array_equal(check_proba([[0.2, 0.8], [0.6, 0.4]], 2), PROBA)
    np.testing.assert_array_equal(check_proba(pd.DataFrame(PROBA), 2), PROBA)
    assert check_proba(np.array([[0, 1], [1, 0]]), 2).dtype == np.float64


@pytest.mark.parametrize(
    "proba, n_classes, error, reason, words",
    [
        ("abc", 2, BatchTypeError, "type", "proba =="),
        ([[0.5, "x"]], 2, BatchTypeError, "type", "numbers"),
        ([[0.1, 0.9], [0.5]], 2, BatchTypeError, "type", "proba"),
        (np.array([0.2, 0.8]), 2, BatchValueError, "shape", "must be 2-D"),
        (PROBA, 3, BatchValueError, "n_classes", "n_classes == 3"),
        (np.array([[1.0]]), None, BatchValueError, "n_classes", "at least 2"),
        (np.array([[np.nan, 1.0]]), 2, BatchValueError, "non_finite", "NaN"),
        (np.array([[np.inf, 0.0]]), 2, BatchValueError, "non_finite", "infinite"),
        (np.array([[1.5, -0.5]]), 2, BatchValueError, "out_of_range", "[0, 1]"),
    ],
)
def test_bad_proba(proba, n_classes, error, reason, words):
    with pytest.raises(error) as caught:
        check_proba(proba, n_classes)
    assert caught.value.reason == reason and reason in REJECT_REASONS
    assert words in str(caught.value)
    assert "proba" in str(caught.value)


def test_tolerance_for_rounding():
    check_proba(np.array([[1.0 + 1e-7, 0.0]], dtype=np.float32), 2)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_proba_table_shapes_before_values():
    """The request path's O(1) part: type and shape only, values checked later in bulk."""
    assert to_proba_table(PROBA) is PROBA
    np.testing.assert_array_equal(to_proba_table(np.matrix(PROBA)), PROBA)
    assert type(to_proba_table(np.matrix(PROBA))) is np.ndarray
    bad = np.array([[np.nan, 1.0]])
    assert to_proba_table(bad) is bad  # accepted here, refused by the value check
    with pytest.raises(BatchValueError) as caught:
        check_proba_values(bad, 1)
    assert caught.value.reason == "non_finite"
    with pytest.raises(BatchTypeError) as caught:
        to_proba_table(np.array([["a", "b"]]))
    assert caught.value.reason == "type"


def test_labels_as_indices_names_and_one_hot():
    index = ClassIndex([0, 1, 2])
    np.testing.assert_array_equal(index.indices([2, 0], 2), [2, 0])
    np.testing.assert_array_equal(index.indices(np.array([[1], [2]]), 2), [1, 2])
    np.testing.assert_array_equal(index.indices(np.array([2.0, 1.0]), 2), [2, 1])
    np.testing.assert_array_equal(index.indices(np.array([[0, 0, 1], [1, 0, 0]]), 2), [2, 0])
    named = ClassIndex(["setosa", "virginica", "versicolor"])
    np.testing.assert_array_equal(named.indices(["versicolor", "setosa"], 2), [2, 0])
    np.testing.assert_array_equal(named.indices(pd.Series(["virginica"]), 1), [1])
    shifted = ClassIndex([1, 2, 3])  # labels are values, not positions
    np.testing.assert_array_equal(shifted.indices([3, 1], 2), [2, 0])


def test_integer_labels_are_indices_when_classes_are_names():
    """With names that are not numbers, an integer label can only be a position."""
    named = ClassIndex(["cat", "dog"])
    np.testing.assert_array_equal(named.indices([1, 0], 2), [1, 0])
    np.testing.assert_array_equal(named.indices(np.array([1.0, 0.0]), 2), [1, 0])


@pytest.mark.parametrize(
    "classes, labels, expected",
    [
        ([0, 1, 2], [np.nan, 1.0], [-1, 1]),
        (["a", "b"], ["b", None], [1, -1]),
        (["a", "b"], np.array(["a", np.nan], dtype=object), [0, -1]),
        ([0, 1, 2], np.ma.masked_array([2, 0], mask=[False, True]), [2, -1]),
        ([1, 2, 3], [np.nan, 3.0], [-1, 2]),
    ],
)
def test_missing_labels_are_minus_one(classes, labels, expected):
    np.testing.assert_array_equal(ClassIndex(classes).indices(labels, 2), expected)


@pytest.mark.parametrize(
    "classes, labels, reason, words",
    [
        ([0, 1, 2], [0, 3], "unknown_label", "[0, 2]"),
        ([0, 1, 2], [0.5, 1.0], "unknown_label", "non-integer"),
        (["a", "b"], ["a", "c"], "unknown_label", "['c']"),
        (["a", "b"], [1, 2], "unknown_label", "[0, 1]"),
        ([0, 1, 2], [np.nan, 5], "unknown_label", "values in [5, 5]"),
        ([0, 1, 2], [0, 1, 2], "row_mismatch", "3 rows"),
        ([0, 1, 2], np.zeros((2, 2, 1)), "shape", "(2, 2, 1)"),
        ([0, 1, 2], np.array([[1, 1, 0], [1, 0, 0]]), "unknown_label", "one-hot"),
        ([0, 1, 2], np.ones((2, 4)), "shape", "one-hot"),
    ],
)
def test_bad_labels(classes, labels, reason, words):
    with pytest.raises(BatchValueError) as caught:
        ClassIndex(classes).indices(labels, 2)
    assert caught.value.reason == reason
    assert words in str(caught.value) and "labels" in str(caught.value)
