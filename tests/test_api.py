"""The ingest API of `serve` over real loopback sockets: valid, malformed and hostile
requests, each answer checked, and the metrics counting exactly the accepted rows."""

import http.client
import io
import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from mlwatcher_exporter.api import takes_ids
from mlwatcher_exporter.auth import BearerToken
from mlwatcher_exporter.service import Service
from mlwatcher_exporter.serveconfig import load_serve_config

CONFIG = Path(__file__).parent / "fixtures" / "serve" / "two-models.yml"
TOKEN = "s3cret-token-of-the-tests-0123"


@pytest.fixture
def service():
    services = []

    def start(token=None, **overrides):
        settings = load_serve_config(CONFIG)
        svc = Service(settings, "127.0.0.1", 0, BearerToken(token) if token else None,
                      registry=CollectorRegistry()).start()
        services.append(svc)
        return svc

    yield start
    for svc in services:
        svc.shutdown()


def post(svc, model, body, content_type="application/json", headers=None, method="POST",
         path=None):
    host, port = svc.server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    conn.request(method, path or f"/api/v1/models/{model}/observations", body,
                 {"Content-Type": content_type, **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    kind = response.getheader("Content-Type", "")
    return response.status, (json.loads(data) if kind.startswith("application/json")
                             else data.decode()), response


def counted(svc, model):
    """Rows the monitor of `model` counted: the sum of mlwatcher_predictions_total."""
    svc.monitors[model].flush()
    total = 0.0
    for family in svc.registry.collect():
        for sample in family.samples:
            if sample.name == "mlwatcher_predictions_total" and sample.labels["model"] == model:
                total += sample.value
    return total


def sample(svc, name, **labels):
    return svc.registry.get_sample_value(name, labels)


FRAUD = {"proba": [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]],
         "features": {"amount": [10.5, None, 3], "country": ["fr", "de", None]},
         "labels": ["no", "yes", None]}


def test_valid_json_batches_are_counted_exactly(service):
    svc = service()
    status, answer, _ = post(svc, "fraud", FRAUD)
    assert (status, answer) == (200, {"model": "fraud", "accepted_rows": 3})
    rows = {"proba": [[0.1, 0.2, 0.7]] * 4, "features": [[1, 2], [3, None], [5, 6], [7, 8]],
            "labels": [2, 2, 0, None]}
    status, answer, _ = post(svc, "digits", rows)
    assert (status, answer) == (200, {"model": "digits", "accepted_rows": 4})
    assert counted(svc, "fraud") == 3 and counted(svc, "digits") == 4
    assert sample(svc, "mlwatcher_ingest_rows_total", model="fraud", format="json") == 3
    assert sample(svc, "mlwatcher_ingest_batches_total", model="digits", format="json") == 1
    assert sample(svc, "mlwatcher_labeled_predictions_total", model="fraud",
                  **{"class": "yes"}) == 1
    window = svc.monitors["fraud"].close_window()
    assert window.rows == 3


def npz(**arrays):
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_npy_and_npz_bodies(service):
    svc = service()
    proba = np.tile([0.25, 0.25, 0.5], (50, 1))
    status, answer, _ = post(svc, "digits", npy(proba), "application/x-npy")
    assert (status, answer["accepted_rows"]) == (200, 50)
    fortran = np.asfortranarray(np.tile([0.7, 0.2, 0.1], (7, 1)))
    status, answer, _ = post(svc, "digits", npy(fortran), "application/x-npy")
    assert (status, answer["accepted_rows"]) == (200, 7)
    body = npz(proba=proba[:20], features=np.ones((20, 4)), labels=np.arange(20) % 3)
    status, answer, _ = post(svc, "digits", body, "application/x-npz")
    assert (status, answer["accepted_rows"]) == (200, 20)
    assert counted(svc, "digits") == 77
    assert sample(svc, "mlwatcher_ingest_rows_total", model="digits", format="npy") == 57
    assert sample(svc, "mlwatcher_ingest_rows_total", model="digits", format="npz") == 20
    # the fortran-ordered rows were read as rows: class 0 predicted 7 times
    assert sample(svc, "mlwatcher_predictions_total", model="digits", **{"class": "0"}) == 7


HOSTILE_JSON = [
    # (body, status, field, reason)
    ("not json", 400, "body", "json"),
    ('{"proba": [[NaN, 0.5]]}', 400, "body", "json"),
    ('{"proba": [[Infinity, 0]]}', 400, "body", "json"),
    ("[" * 100000 + "]" * 100000, 400, "body", "json"),
    ("[1, 2]", 422, "body", "type"),
    ('{"proba": "abc"}', 422, "proba", "type"),
    ('{"proba": [["a", "b"]]}', 422, "proba", "type"),
    ('{"proba": [[true, false]]}', 422, "proba", "type"),
    ('{"proba": [[0.5, 0.5], [0.5]]}', 422, "proba", "shape"),
    ('{"proba": [[[0.5, 0.5]]]}', 422, "proba", "type"),
    ('{"features": [[1, 2]]}', 422, "proba", "missing"),
    ('{"proba": [[0.5, 0.5]], "colour": 1}', 422, "colour", "unknown_field"),
    ('{"proba": [[0.2, 0.3, 0.5]]}', 422, "proba", "n_classes"),
    ('{"proba": [[null, 0.5]]}', 422, "proba", "non_finite"),
    ('{"proba": [[1e308, 1e308]]}', 422, "proba", "out_of_range"),
    ('{"proba": [[1.5, -0.5]]}', 422, "proba", "out_of_range"),
    ('{"proba": [[0.5, 0.5]], "labels": "yes"}', 422, "labels", "type"),
    ('{"proba": [[0.5, 0.5]], "labels": ["maybe"]}', 422, "labels", "unknown_label"),
    ('{"proba": [[0.5, 0.5]], "labels": ["no", "yes"]}', 422, "labels", "row_mismatch"),
    ('{"proba": [[0.5, 0.5]], "features": [[1, 2, 3]]}', 422, "features", "n_features"),
    ('{"proba": [[0.5, 0.5]], "features": [[1, 2], [3, 4]]}', 422, "features",
     "row_mismatch"),
    ('{"proba": [[0.5, 0.5]], "features": {"amount": [1], "country": [["x"]]}}', 422,
     "features.country", "type"),
    ('{"proba": [[0.5, 0.5]], "features": {"amount": [1, 2], "country": ["x", "y"]}}', 422,
     "features", "row_mismatch"),
    ('{"proba": [[0.5, 0.5]], "features": 7}', 422, "features", "type"),
    ('{"proba": [[0.5, 0.5]], "ids": [{"a": 1}]}', 422, "ids", "type"),
]


@pytest.mark.parametrize("body, status, field, reason", HOSTILE_JSON)
def test_malformed_json_is_refused_naming_the_field_and_nothing_is_kept(
        service, body, status, field, reason):
    svc = service()
    got, answer, _ = post(svc, "fraud", body)
    assert (got, answer["error"]["field"], answer["error"]["reason"]) == \
        (status, field, reason), answer
    assert answer["error"]["problem"]
    assert counted(svc, "fraud") == 0
    assert sample(svc, "mlwatcher_http_requests_total", handler="observations",
                  code=str(status)) == 1
    # the model still takes a valid batch afterwards: nothing was half-learned
    assert post(svc, "fraud", FRAUD)[0] == 200 and counted(svc, "fraud") == 3


def test_a_text_value_in_a_learned_numeric_column_is_refused(service):
    svc = service()
    assert post(svc, "fraud", FRAUD)[0] == 200
    body = {"proba": [[0.5, 0.5]], "features": {"amount": ["a"], "country": ["x"]}}
    status, answer, _ = post(svc, "fraud", body)
    assert (status, answer["error"]["field"], answer["error"]["reason"]) == \
        (422, "features", "type")
    assert counted(svc, "fraud") == 3


def test_rejected_rows_are_counted_by_reason(service):
    svc = service()
    post(svc, "fraud", '{"proba": [[1.5, -0.5], [0.5, 0.5]]}')
    assert sample(svc, "mlwatcher_rejected_rows_total", model="fraud",
                  reason="out_of_range") == 2
    assert counted(svc, "fraud") == 0


def test_hostile_numpy_bodies(service):
    svc = service()
    cases = [
        (b"\x93NUMPY garbage", "application/x-npy", 400, "proba"),
        (npy(np.array([["a", "b"]])), "application/x-npy", 422, "proba"),
        (npy(np.array([[1 + 2j, 0]])), "application/x-npy", 422, "proba"),
        (npy(np.zeros((200, 2)))[:-50], "application/x-npy", 400, "proba"),
        (npy(np.array([[0.5, 0.5]], dtype=object)), "application/x-npy", 422, "proba"),
        (npy(np.array([(0.5, 0.5)], dtype=[("a", "f8"), ("b", "f8")])),
         "application/x-npy", 422, "proba"),
        (npy(np.full((3, 2), np.nan)), "application/x-npy", 422, "proba"),
        (b"PK\x03\x04 not a zip", "application/x-npz", 400, "body"),
        (npz(features=np.ones((2, 2))), "application/x-npz", 422, "proba"),
        (npz(proba=np.full((2, 2), 0.5), weights=np.ones(2)), "application/x-npz", 422,
         "weights"),
        (npz(proba=np.full((2, 2), 0.5), labels=np.array([0, 1, 1])), "application/x-npz",
         422, "labels"),
        # a compressed archive that would expand far beyond max_array_bytes (1 MB)
        (npz(proba=np.zeros((200_000, 2))), "application/x-npz", 413, "body"),
        (b"{}", "text/csv", 415, "Content-Type"),
        (b"{}", "", 415, "Content-Type"),
    ]
    for body, kind, status, field in cases:
        got, answer, _ = post(svc, "fraud", body, kind)
        assert (got, answer["error"]["field"]) == (status, field), (kind, answer)
    assert counted(svc, "fraud") == 0


def test_a_header_declaring_a_huge_array_allocates_nothing(service):
    svc = service()
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10 ** 12, 2)})
    got, answer, _ = post(svc, "fraud", buffer.getvalue() + b"\0" * 64, "application/x-npy")
    assert got == 413 and answer["error"]["reason"] == "too_large"


def test_huge_bodies_get_413_before_being_read(service):
    svc = service()
    host, port = svc.server.server_address[:2]
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"POST /api/v1/models/fraud/observations HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n")
        data = sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 413 ")
    assert post(svc, "fraud", b'{"proba": ' + b"[0.5, 0.5]," * 30000 + b"]}")[0] == 413
    assert counted(svc, "fraud") == 0


def test_unknown_model_and_wrong_method(service):
    svc = service()
    status, answer, _ = post(svc, "nope", FRAUD)
    assert status == 404 and answer["error"]["field"] == "model"
    assert "['digits', 'fraud']" in answer["error"]["problem"]
    status, answer, response = post(svc, "fraud", b"", method="GET")
    assert status == 405 and response.getheader("Allow") == "POST"
    status, answer, _ = post(svc, "fr%61ud", FRAUD)  # percent-encoded names are decoded
    assert status == 200
    status, text, _ = post(svc, None, b"", method="GET", path="/api/v1/nothing")
    assert status == 404


def test_ids_are_refused_until_observe_takes_them(service):
    svc = service()
    body = dict(FRAUD, ids=["a", "b", "c"])
    status, answer, _ = post(svc, "fraud", body)
    if takes_ids(svc.monitors["fraud"]):
        assert (status, answer["accepted_rows"]) == (200, 3)
    else:
        assert status == 422 and answer["error"]["field"] == "ids"
        assert "takes no ids" in answer["error"]["problem"] and counted(svc, "fraud") == 0


def test_models_openapi_and_metrics_are_served(service):
    svc = service()
    status, answer, _ = post(svc, None, b"", method="GET", path="/api/v1/models")
    assert status == 200 and [m["model"] for m in answer["models"]] == ["digits", "fraud"]
    assert answer["models"][1]["class_names"] == ["no", "yes"]
    status, document, _ = post(svc, None, b"", method="GET", path="/api/v1/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.")
    assert "/api/v1/models/{model}/observations" in document["paths"]
    post(svc, "digits", {"proba": [[0.2, 0.2, 0.6]]})
    status, text, _ = post(svc, None, b"", method="GET", path="/metrics")
    assert status == 200
    assert 'mlwatcher_predictions_total{class="2",model="digits"} 1.0' in text
    assert 'mlwatcher_ingest_rows_total{format="json",model="digits"} 1.0' in text
    assert 'mlwatcher_http_requests_total{code="200",handler="observations"} 1.0' in text


def test_the_token_is_required_everywhere_and_compared_exactly(service):
    svc = service(token=TOKEN)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}):
        status, answer, response = post(svc, "fraud", FRAUD, headers=headers)
        assert status == 401 and answer["error"]["field"] == "Authorization"
        assert response.getheader("WWW-Authenticate").startswith("Bearer")
        assert post(svc, None, b"", method="GET", path="/metrics", headers=headers)[0] == 401
    assert counted(svc, "fraud") == 0
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert post(svc, "fraud", FRAUD, headers=good)[0] == 200
    assert post(svc, None, b"", method="GET", path="/metrics", headers=good)[0] == 200
    assert counted(svc, "fraud") == 3
    assert sample(svc, "mlwatcher_http_requests_total", handler="observations",
                  code="401") == 5


def test_listening_beyond_loopback_needs_a_token():
    settings = load_serve_config(CONFIG)
    with pytest.raises(ValueError, match="beyond loopback requires a bearer token"):
        Service(settings, "0.0.0.0", 0, None, registry=CollectorRegistry())


def test_slow_and_idle_clients_are_dropped_and_others_served(service):
    svc = service()
    host, port = svc.server.server_address[:2]
    slow_body = socket.create_connection((host, port), timeout=5)
    slow_body.sendall(b"POST /api/v1/models/fraud/observations HTTP/1.1\r\nContent-Type: "
                      b"application/json\r\nContent-Length: 1000\r\n\r\n{\"proba\"")
    slow_head = socket.create_connection((host, port), timeout=5)
    slow_head.sendall(b"POST /api/v1/models/fraud/observations HTTP/1.1\r\n")
    idle = [socket.create_connection((host, port), timeout=5) for _ in range(10)]
    started = time.monotonic()
    assert post(svc, "fraud", FRAUD)[0] == 200  # served meanwhile
    data = slow_body.recv(65536)  # body_timeout 1 s
    assert data.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < 3
    slow_head.settimeout(5)
    assert slow_head.recv(65536) == b""  # request_timeout 2 s: closed
    for sock in idle:
        sock.settimeout(5)
        assert sock.recv(1) == b""
    for sock in [slow_body, slow_head, *idle]:
        sock.close()
    assert counted(svc, "fraud") == 3


def test_concurrent_producers_lose_nothing(service):
    import threading

    svc = service()
    errors, sent = [], []

    def produce(seed):
        rng = np.random.default_rng(seed)
        for _ in range(20):
            rows = int(rng.integers(1, 30))
            proba = rng.dirichlet([1, 1, 1], size=rows)
            status, answer, _ = post(svc, "digits", npy(proba), "application/x-npy")
            if status != 200 or answer["accepted_rows"] != rows:
                errors.append((status, answer))
            sent.append(rows)

    threads = [threading.Thread(target=produce, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    accepted = sample(svc, "mlwatcher_ingest_rows_total", model="digits", format="npy")
    assert len(sent) == 120 and accepted == counted(svc, "digits") == sum(sent)


# ---------------------------------------------------------------- hypothesis bodies

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=3))
_PROBA_ROW = st.one_of(
    st.lists(st.floats(0, 1), min_size=2, max_size=2).map(lambda r: [r[0], 1 - r[0]]),
    st.lists(_VALUES, max_size=4))
_BODIES = st.fixed_dictionaries(
    {"proba": st.one_of(st.lists(_PROBA_ROW, max_size=6), _VALUES)},
    optional={
        "features": st.one_of(
            st.lists(st.lists(_VALUES, min_size=2, max_size=2), max_size=6),
            st.fixed_dictionaries({"amount": st.lists(_VALUES, max_size=6),
                                   "country": st.lists(st.sampled_from(["fr", "de", None]),
                                                       max_size=6)}),
            _VALUES),
        "labels": st.one_of(st.lists(st.sampled_from(["no", "yes", None, 0, 1, 7, "x"]),
                                     max_size=6), _VALUES),
        "ids": st.lists(st.integers(0, 9), max_size=6),
    })


@pytest.fixture(scope="module")
def shared_service():
    svc = Service(load_serve_config(CONFIG), "127.0.0.1", 0, registry=CollectorRegistry())
    svc.start()
    svc.accepted = 0
    yield svc
    svc.shutdown()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=_BODIES)
def test_generated_bodies_get_an_answer_and_the_count_is_exact(shared_service, body):
    svc = shared_service
    status, answer, _ = post(svc, "fraud", body)
    assert status in (200, 400, 422), (status, answer)
    if status == 200:
        svc.accepted += answer["accepted_rows"]
        assert answer["accepted_rows"] == len(body["proba"])
    else:
        assert set(answer["error"]) == {"field", "problem", "reason"}
    assert counted(svc, "fraud") == svc.accepted


# --- a refused first batch teaches nothing (intake.py checks before it learns) ---
def test_a_refused_first_batch_does_not_teach_the_schema():
    from mlwatcher_exporter.serveconfig import parse_serve_config

    svc = Service(parse_serve_config({"models": [{"model": "free"}]}), "127.0.0.1", 0,
                  registry=CollectorRegistry()).start()
    try:
        monitor = svc.monitors["free"]
        refused = [{"proba": [[0.5, 0.3, 0.2]], "ids": ["a", "b"]},
                   {"proba": [[0.5, 0.3, 0.2]], "labels": [7]},
                   {"proba": [[0.5, 0.3, 0.2]], "features": [[1, 2]], "labels": [9]},
                   {"proba": [[0.5, 0.3, 0.2]], "features": [[1, 2], [3, 4]]},
                   {"proba": [[None, 0.5, 0.5]]}]
        for body in refused:
            assert post(svc, "free", body)[0] == 422, body
            assert monitor.n_classes is None and monitor.feature_names is None
        status, _, _ = post(svc, "free", {"proba": [[0.25] * 4], "features": [[1, 2, 3]],
                                          "ids": ["z"]})
        assert status == 200
        assert monitor.n_classes == 4 and monitor.feature_names == ["f0", "f1", "f2"]
        assert post(svc, "free", {"proba": [[0.5, 0.5, 0.0]]})[0] == 422  # now learned
        monitor.flush()
        assert svc.registry.get_sample_value(
            "mlwatcher_rejected_rows_total", {"model": "free", "reason": "unknown_label"}) == 2
    finally:
        svc.shutdown()
