"""HTTP exposition over a real loopback socket: /metrics, the landing page, 404."""

import urllib.error
import urllib.request

import numpy as np
import pytest

from mlwatcher_exporter import ModelMonitor, make_wsgi_app, start_http_server


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers.get("Content-Type"), response.read().decode()


@pytest.fixture
def served(registry, clock):
    monitor = ModelMonitor(model="web", n_classes=2, registry=registry, background=False,
                           _clock=clock)
    monitor.observe(np.array([[0.3, 0.7]]))
    server = monitor.start_http_server(port=0)
    yield server
    server.shutdown()


def test_metrics_and_landing_page(served):
    assert served.addr == "127.0.0.1"
    status, content_type, body = get(served.url)
    assert status == 200 and content_type.startswith("text/plain")
    assert 'mlwatcher_predictions_total{class="1",model="web"} 1.0' in body
    status, content_type, body = get(f"http://127.0.0.1:{served.port}/")
    assert status == 200 and "text/html" in content_type and 'href="/metrics"' in body


def test_unknown_path_is_404(served):
    with pytest.raises(urllib.error.HTTPError) as caught:
        get(f"http://127.0.0.1:{served.port}/nope")
    assert caught.value.code == 404


def test_wsgi_app_mounts_under_a_prefix(registry):
    app = make_wsgi_app(registry)
    captured = {}

    def start_response(status, headers):
        captured["status"] = status

    body = b"".join(app({"PATH_INFO": "/", "SCRIPT_NAME": "/monitoring",
                         "REQUEST_METHOD": "GET"}, start_response))
    assert captured["status"] == "200 OK" and b'href="/monitoring/metrics"' in body


def test_start_http_server_binds_loopback_by_default(registry):
    server = start_http_server(0, registry=registry)
    try:
        assert server.addr == "127.0.0.1"
        assert get(server.url)[0] == 200
    finally:
        server.shutdown()
