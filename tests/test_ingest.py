"""Bodies decoded into batches: JSON, .npy and .npz, and every refusal an IngestError."""

import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlwatcher_exporter.ingest import IngestError, decode_body, media_format

LIMIT = 1 << 20


def test_json_batch():
    batch = decode_body(json.dumps({"proba": [[0.5, 0.5]], "features": [[1, None]],
                                    "labels": [None], "ids": ["x"]}).encode(),
                        "application/json; charset=utf-8", LIMIT)
    assert batch.rows == 1 and batch.format == "json" and batch.ids == ["x"]
    assert np.isnan(batch.features[0, 1]) and batch.labels == [None]


def test_json_columns_keep_names_and_text():
    batch = decode_body(b'{"proba": [[1, 0], [0, 1]], "features": {"a": [1, null], '
                        b'"b": ["x", true]}}', "application/json", LIMIT)
    assert list(batch.features) == ["a", "b"]
    assert np.isnan(batch.features["a"][1]) and batch.features["b"].dtype == object


def test_media_types():
    assert media_format("Application/X-NPZ") == "npz"
    assert media_format("application/zip") == "npz"
    with pytest.raises(IngestError) as refused:
        media_format("text/plain")
    assert refused.value.status == 415


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("array", [np.zeros((3, 2)), np.arange(6, dtype=np.int32).reshape(2, 3),
                                   np.asfortranarray(np.arange(6.0).reshape(3, 2)),
                                   np.array([[True, False]])])
def test_npy_round_trip(array):
    batch = decode_body(npy(array), "application/x-npy", LIMIT)
    assert batch.proba.dtype == array.dtype and np.array_equal(batch.proba, array)


def test_npz_members_and_limits():
    buffer = io.BytesIO()
    np.savez(buffer, proba=np.full((4, 2), 0.5), labels=np.array(["a", "b", "a", "b"]),
             ids=np.arange(4))
    batch = decode_body(buffer.getvalue(), "application/x-npz", LIMIT)
    assert batch.rows == 4 and list(batch.labels) == ["a", "b", "a", "b"]
    assert batch.ids == [0, 1, 2, 3]
    with pytest.raises(IngestError) as refused:
        decode_body(buffer.getvalue(), "application/x-npz", 100)
    assert refused.value.status == 413


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=2000),
       kind=st.sampled_from(["application/json", "application/x-npy", "application/x-npz"]))
def test_arbitrary_bytes_raise_only_ingest_errors(body, kind):
    try:
        decode_body(body, kind, LIMIT)
    except IngestError as error:
        assert 400 <= error.status < 500 and error.field and error.problem


@settings(max_examples=200, deadline=None)
@given(header=st.binary(max_size=200), tail=st.binary(max_size=200))
def test_corrupted_npy_headers_raise_only_ingest_errors(header, tail):
    good = npy(np.zeros((2, 2)))
    for body in (good[:10] + header + tail, good[:8] + header, header + good[10:]):
        try:
            decode_body(body, "application/x-npy", LIMIT)
        except IngestError as error:
            assert 400 <= error.status < 500
