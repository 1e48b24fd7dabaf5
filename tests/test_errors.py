"""Batch errors and how values are named in their messages."""

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from mlwatcher_exporter import ModelMonitor
from mlwatcher_exporter.errors import (
    BatchError,
    BatchTypeError,
    BatchValueError,
    count_rows,
    describe_value,
)


def test_errors_are_value_and_type_errors_with_a_reason():
    error = BatchValueError("message", "shape", 3)
    assert isinstance(error, ValueError) and isinstance(error, BatchError)
    assert (error.reason, error.rows, str(error)) == ("shape", 3, "message")
    assert isinstance(BatchTypeError("m", "type"), TypeError)


def test_a_dataframe_is_described_by_its_dtypes_never_dtype_unknown():
    frame = pd.DataFrame({"a": [1.0], "b": ["x"], "c": pd.Categorical(["u"]), "d": [True]})
    text = describe_value(frame)
    assert text.startswith("DataFrame of shape (1, 4) and dtypes [")
    assert "float64" in text and "category" in text and "bool" in text
    assert "?" not in text


def test_values_are_described_shortly():
    assert describe_value(np.ones((2, 3), dtype=np.float32)) == \
        "ndarray of shape (2, 3) and dtype float32"
    assert describe_value([1, 2, 3]) == "list of length 3"
    assert describe_value(pd.Series([1, 2])) == "Series of shape (2,) and dtype int64"
    long = describe_value("x" * 500)
    assert len(long) == 60 and long.endswith("...")


def test_a_dataframe_error_through_the_monitor_names_its_dtypes():
    monitor = ModelMonitor(model="m", n_classes=2, registry=CollectorRegistry(),
                           background=False)
    with pytest.raises(TypeError) as caught:
        monitor.observe(pd.DataFrame({"a": ["x"], "b": ["y"]}))
    assert "DataFrame of shape (1, 2) and dtypes" in str(caught.value)
    assert "dtype ?" not in str(caught.value)


@pytest.mark.parametrize("value, rows", [
    (np.ones((4, 2)), 4), ([[1], [2]], 2), (pd.DataFrame({"a": [1, 2, 3]}), 3),
    ("text", 1), (b"bytes", 1), (None, 1), (3.5, 1), (np.float64(1.0), 1),
    (np.empty((0, 3)), 0), (object(), 1),
])
def test_count_rows(value, rows):
    assert count_rows(value) == rows
