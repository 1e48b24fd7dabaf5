"""GET /api/v1/models/{model}/windows over a real `serve`: the last windows, the limit,
the errors, the token, and the answer conforming to the OpenAPI document."""

import http.client
import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from mlwatcher_exporter.auth import BearerToken
from mlwatcher_exporter.history import MAX_KEEP
from mlwatcher_exporter.service import Service
from mlwatcher_exporter.serveconfig import load_serve_config

CONFIG = Path(__file__).parent / "fixtures" / "serve" / "two-models.yml"
TOKEN = "windows-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def service():
    svc = Service(load_serve_config(CONFIG), "127.0.0.1", 0, BearerToken(TOKEN),
                  registry=CollectorRegistry()).start()
    for rows in range(1, 6):
        body = json.dumps({"proba": [[0.1, 0.2, 0.7]] * rows, "labels": [2] * rows})
        assert request(svc, "POST", "/api/v1/models/digits/observations", body)[0] == 200
        svc.monitors["digits"].close_window()
    yield svc
    svc.shutdown()


def request(svc, method, path, body=None, headers=AUTH):
    host, port = svc.server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request(method, path, body, {"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else None, response


def test_the_last_windows_oldest_first(service):
    status, document, response = request(service, "GET", "/api/v1/models/digits/windows")
    assert status == 200 and response.getheader("Content-Type") == "application/json"
    assert document["model"] == "digits" and document["window_seconds"] == 3600
    windows = document["windows"]
    assert [w["rows"] for w in windows] == [1, 2, 3, 4, 5]
    assert all(w["accuracy"] == 1.0 and w["class_rows"]["2"] == w["rows"] for w in windows)
    assert windows == service.monitors["digits"].history.records()
    status, document, _ = request(service, "GET", "/api/v1/models/digits/windows?limit=2")
    assert [w["rows"] for w in document["windows"]] == [4, 5]
    status, document, _ = request(service, "GET",
                                  f"/api/v1/models/digits/windows?limit={MAX_KEEP}&x=1")
    assert status == 200 and len(document["windows"]) == 5
    status, document, _ = request(service, "GET", "/api/v1/models/fraud/windows")
    assert status == 200 and document["windows"] == []


@pytest.mark.parametrize("query", ["limit=0", "limit=-1", "limit=abc", "limit=",
                                   "limit=1&limit=2", f"limit={MAX_KEEP + 1}", "limit=1.5",
                                   "limit=%EF%BC%91"])
def test_a_bad_limit_is_400(service, query):
    status, document, _ = request(service, "GET", f"/api/v1/models/digits/windows?{query}")
    assert status == 400
    assert document["error"]["field"] == "limit" and document["error"]["reason"] == "limit"
    assert "from 1 to 10000" in document["error"]["problem"]


def test_unknown_model_method_and_token(service):
    status, document, _ = request(service, "GET", "/api/v1/models/cats/windows")
    assert status == 404 and document["error"]["reason"] == "unknown_model"
    status, _, response = request(service, "POST", "/api/v1/models/digits/windows", "{}")
    assert status == 405 and response.getheader("Allow") == "GET, HEAD"
    status, _, _ = request(service, "GET", "/api/v1/models/digits/windows", headers={})
    assert status == 401
    assert service.registry.get_sample_value(
        "mlwatcher_http_requests_total", {"handler": "windows", "code": "200"}) >= 1


def test_the_answer_conforms_to_the_document(service):
    """The served document's own response schema, checked by schemathesis (which
    test_openapi.py also runs against this route, with no window recorded)."""
    import requests
    import schemathesis

    status, document, _ = request(service, "GET", "/api/v1/openapi.json")
    assert status == 200
    operation = document["paths"]["/api/v1/models/{model}/windows"]["get"]
    assert {"200", "400", "401", "404"} <= set(operation["responses"])
    if hasattr(schemathesis, "openapi") and hasattr(schemathesis.openapi, "from_dict"):
        schema = schemathesis.openapi.from_dict(document)
    else:  # schemathesis 3
        schema = schemathesis.from_dict(document)
    windows = schema["/api/v1/models/{model}/windows"]["GET"]
    # schemathesis 4 names it is_valid_response, 3 (on Python < 3.11) is_response_valid.
    is_valid = getattr(windows, "is_valid_response", None) or windows.is_response_valid
    for query in ("", "?limit=2", "?limit=0"):
        response = requests.get(service.url + "/api/v1/models/digits/windows" + query,
                                headers=AUTH, timeout=10)
        assert is_valid(response), (query, response.text[:300])
    answer = requests.get(service.url + "/api/v1/models/digits/windows", headers=AUTH,
                          timeout=10).json()
    record = answer["windows"][-1]
    properties = document["components"]["schemas"]["Windows"]["properties"]
    assert set(record) <= set(properties["windows"]["items"]["properties"])
    record["rows"] = "five"  # the check can fail
    item = {**properties["windows"]["items"], "components": document["components"]}
    # The JSON Schema validator schemathesis brings: jsonschema_rs (4), jsonschema (3).
    try:
        import jsonschema_rs
    except ImportError:
        import jsonschema

        assert not jsonschema.validators.validator_for(item)(item).is_valid(record)
    else:
        assert not jsonschema_rs.validator_for(item).is_valid(record)
