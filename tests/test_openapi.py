"""The served OpenAPI document, and schemathesis against it: no request it generates from
the document gets a server error, and every answer conforms to the document."""

import json
import urllib.request
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from prometheus_client import CollectorRegistry

from mlwatcher_exporter.auth import BearerToken
from mlwatcher_exporter.openapi import openapi_document
from mlwatcher_exporter.service import Service
from mlwatcher_exporter.serveconfig import ApiSettings, ServeSettings, load_serve_config

CONFIG = Path(__file__).parent / "fixtures" / "serve" / "two-models.yml"
TOKEN = "schemathesis-token-0123456789"
# What the answers must satisfy: never a 5xx, status codes, media types and bodies as
# documented. Not "schema-valid data is accepted": the document cannot say that a row's
# probabilities sum to 1 or that a label is a known class (such batches get 422).
CHECKS = [getattr(schemathesis.checks, name) for name in (
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_schema_conformance")]
OPERATIONS = [("/api/v1/models/{model}/observations", "POST"), ("/api/v1/models", "GET"),
              ("/api/v1/openapi.json", "GET"), ("/metrics", "GET"),
              ("/api/v1/models/{model}/windows", "GET")]


def test_the_document_describes_every_route_and_the_token():
    document = openapi_document(["a", "b"], token=True)
    assert {(path, method.upper()) for path, item in document["paths"].items()
            for method in item} == set(OPERATIONS)
    assert document["security"] == [{"bearer": []}]
    post = document["paths"]["/api/v1/models/{model}/observations"]["post"]
    assert {"200", "401", "404", "413", "415", "422"} <= set(post["responses"])
    assert "security" not in openapi_document(["a"], token=False)


@pytest.fixture(scope="module")
def served():
    # The models of the hostile tests, with the default timeouts: a loaded machine must
    # not turn a slow generated request into an answer the test did not ask for.
    settings = load_serve_config(CONFIG)
    settings = ServeSettings(settings.models, settings.http, ApiSettings())
    service = Service(settings, "127.0.0.1", 0, BearerToken(TOKEN),
                      registry=CollectorRegistry()).start()
    request = urllib.request.Request(service.url + "/api/v1/openapi.json",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        document = json.load(response)
    if hasattr(schemathesis, "openapi") and hasattr(schemathesis.openapi, "from_dict"):
        schema = schemathesis.openapi.from_dict(document)  # schemathesis 4
    else:  # schemathesis 3, the last to run on Python < 3.11
        schema = schemathesis.from_dict(document)
    yield service, schema
    service.shutdown()


def _strategies(schema, path, method):
    operation = schema[path][method]
    yield operation.as_strategy()
    try:  # schemathesis 4
        from schemathesis import GenerationMode
        yield operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
    except ImportError:  # schemathesis 3
        from schemathesis import DataGenerationMethod
        yield operation.as_strategy(data_generation_method=DataGenerationMethod.negative)


@pytest.mark.parametrize("path, method", OPERATIONS)
@pytest.mark.parametrize("auth", ["token", "none"])
def test_schemathesis_finds_no_server_error(served, path, method, auth):
    service, schema = served
    headers = {"Authorization": f"Bearer {TOKEN}"} if auth == "token" else {}
    statuses = []
    for strategy in _strategies(schema, path, method):

        @settings(max_examples=60, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case):
            response = case.call(base_url=service.url, headers=headers)
            statuses.append(response.status_code)
            assert response.status_code < 500, (case.as_curl_command(), response.text)
            if auth == "token":
                case.validate_response(response, checks=CHECKS)
            else:
                assert response.status_code == 401

        run()
    assert statuses
    if auth == "token" and path == OPERATIONS[0][0]:
        assert {200, 404, 422} <= set(statuses), sorted(set(statuses))
