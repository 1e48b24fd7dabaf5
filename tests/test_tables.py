"""What inputs become: arrays, DataFrames, np.matrix, masked, sparse, datetime, complex."""

import datetime

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from mlwatcher_exporter.errors import BatchTypeError, BatchValueError
from mlwatcher_exporter.tables import (
    is_dataframe,
    is_missing,
    is_sparse,
    is_table,
    is_text_dtype,
    to_array,
    to_features,
    to_numbers,
)


def test_plain_arrays_are_not_copied():
    features = np.ones((2, 3))
    table = to_features(features, 2, None)
    assert table.numeric is features and table.text == {} and table.names is None


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_matrix_becomes_an_ndarray():
    table = to_features(np.matrix([[1.0, 2.0], [3.0, 4.0]]), 2, None)
    assert type(table.numeric) is np.ndarray
    np.testing.assert_array_equal(table.numeric[1], [3.0, 4.0])


def test_masked_values_are_missing():
    floats = np.ma.masked_array([[1.0, 2.0]], mask=[[False, True]])
    np.testing.assert_array_equal(to_array(floats, "features", 1), [[1.0, np.nan]])
    ints = np.ma.masked_array([[1, 2]], mask=[[True, False]])
    np.testing.assert_array_equal(to_array(ints, "features", 1), [[np.nan, 2.0]])
    words = np.ma.masked_array(np.array([["a", "b"]], dtype=object), mask=[[False, True]])
    assert to_array(words, "features", 1).tolist() == [["a", None]]
    unmasked = np.ma.masked_array([[1.0]], mask=[[False]])
    np.testing.assert_array_equal(to_array(unmasked, "features", 1), [[1.0]])


def test_sparse_is_refused_with_its_own_reason():
    matrix = scipy.sparse.csr_matrix(np.eye(2))
    assert is_sparse(matrix) and is_table(matrix)
    with pytest.raises(BatchTypeError) as caught:
        to_features(matrix, 2, None)
    assert caught.value.reason == "sparse" and "features" in str(caught.value)


@pytest.mark.parametrize("name", ["proba", "labels"])
def test_sparse_probabilities_and_labels_are_a_type_error(name):
    """"sparse" is a reason for features only: a sparse proba or labels is a type error
    (it raised KeyError inside the counters, counted as an internal error)."""
    with pytest.raises(BatchTypeError) as caught:
        to_array(scipy.sparse.csr_matrix(np.eye(2)), name, 2)
    assert caught.value.reason == "type" and str(caught.value).startswith(f"{name} == ")
    assert "must be a dense array" in str(caught.value)


def test_datetimes_are_unix_seconds_and_timedeltas_seconds():
    stamps = np.array(["1970-01-01T00:00:10", "NaT"], dtype="M8[s]")
    np.testing.assert_array_equal(to_numbers(stamps, "features", 2), [10.0, np.nan])
    spans = np.array([1500, 250], dtype="m8[ms]")
    np.testing.assert_allclose(to_numbers(spans, "features", 2), [1.5, 0.25])
    frame = pd.DataFrame({
        "at": pd.to_datetime(["1970-01-01 00:01:00", None]).tz_localize("Europe/Paris"),
        "wait": pd.to_timedelta([2, 3], unit="s"),
    })
    table = to_features(frame, 2, None)
    np.testing.assert_array_equal(table.numeric[:, 0], [60.0 - 3600.0, np.nan])
    np.testing.assert_array_equal(table.numeric[:, 1], [2.0, 3.0])


@pytest.mark.parametrize(
    "values, seconds",
    [
        # numpy's own arithmetic converts to a common unit first and overflows silently
        (np.array(["292277026596-12-05"], dtype="M8[D]"), 106751991167301 * 86400.0),
        (np.array(["2500-01-01"], dtype="M8[D]"), 16725225600.0),
        (np.array(["2020"], dtype="M8[Y]"), 1577836800.0),
        (np.array(["2020-03"], dtype="M8[M]"), 1583020800.0),
        (np.array([3], dtype="M8[10s]"), 30.0),
        (np.array([1], dtype="m8[Y]"), 365.2425 * 86400),
        (np.array([-1], dtype="M8[ns]"), -1e-9),
        # beyond what numpy's calendar places in days: missing, not a wrong number
        (np.array([2**62], dtype="M8[Y]"), np.nan),
    ],
)
def test_datetimes_in_every_unit_never_overflow(values, seconds):
    np.testing.assert_array_equal(to_numbers(values, "features", 1), [seconds])


@pytest.mark.parametrize(
    "values, words",
    [
        (np.array([[1 + 2j, 3j]]), "real numbers"),
        (np.array([["a", "b"]]), "named columns"),
        (np.array([[object(), 1]], dtype=object), "numbers"),
    ],
)
def test_values_that_are_not_numbers(values, words):
    with pytest.raises(BatchTypeError) as caught:
        to_features(values, 1, None)
    assert caught.value.reason == "type" and words in str(caught.value)


def test_ragged_lists_are_a_type_error():
    with pytest.raises(BatchTypeError) as caught:
        to_features([[1.0, 2.0], [3.0]], 2, None)
    assert caught.value.reason == "type"


@pytest.mark.parametrize(
    "features, reason, words",
    [
        (np.ones((3, 2)), "row_mismatch", "3 rows"),
        (np.ones(2), "shape", "2-D"),
        (pd.DataFrame({"x": [1, 2, 3]}), "row_mismatch", "3 rows"),
    ],
)
def test_bad_shapes(features, reason, words):
    with pytest.raises(BatchValueError) as caught:
        to_features(features, 2, None)
    assert caught.value.reason == reason and words in str(caught.value)


def test_dataframe_text_category_and_bool_columns_are_text():
    frame = pd.DataFrame({
        "age": pd.array([30, None], dtype="Int64"),
        "city": ["Paris", None],
        "plan": pd.Categorical(["gold", "free"]),
        "member": [True, False],
        "score": [0.5, np.nan],
    })
    table = to_features(frame, 2, None)
    assert table.names == ["age", "city", "plan", "member", "score"]
    assert sorted(table.text) == [1, 2, 3]
    np.testing.assert_array_equal(table.numeric[:, 0], [30.0, np.nan])
    np.testing.assert_array_equal(table.numeric[:, 4], [0.5, np.nan])
    assert np.isnan(table.numeric[:, 1:4]).all()
    assert table.text[1][0] == "Paris" and is_missing(table.text[1][1])
    assert table.text[2].tolist() == ["gold", "free"]


def test_text_columns_learned_once_are_kept():
    """A column that was text in the first batch stays text even if a batch holds numbers."""
    frame = pd.DataFrame({"code": [1, 2], "x": [0.0, 1.0]})
    table = to_features(frame, 2, [0])
    assert sorted(table.text) == [0] and table.text[0].tolist() == [1, 2]


def test_conversion_never_changes_the_callers_frame():
    frame = pd.DataFrame({"city": ["Paris", "Rome"], "x": [1.0, 2.0]})
    before = frame.copy()
    table = to_features(frame, 2, None)
    table.text[0][0] = "changed"
    pd.testing.assert_frame_equal(frame, before)


@pytest.mark.parametrize("value", [None, np.nan, pd.NA, pd.NaT, float("nan")])
def test_missing_values(value):
    assert is_missing(value)


@pytest.mark.parametrize("value", ["", "a", 0, 1.5, datetime.date(2020, 1, 1)])
def test_present_values(value):
    assert not is_missing(value)


def test_predicates():
    frame = pd.DataFrame({"a": [1]})
    assert is_dataframe(frame) and not is_dataframe(np.ones((1, 1)))
    assert is_table(np.ones((2, 2))) and is_table([[1, 2]]) and is_table(frame)
    assert not is_table(np.ones(3)) and not is_table([1, 2]) and not is_table(object())
    assert not is_table([])
    assert is_text_dtype(np.dtype(object)) and is_text_dtype(pd.CategoricalDtype(["a"]))
    assert is_text_dtype(np.dtype(bool)) and not is_text_dtype(np.dtype(np.int64))
