"""HTTP exposition over a real loopback socket: /metrics, the landing page, 404."""

import json
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


def _mixed_registry():
    """Every metric type of prometheus_client, odd label values and special floats."""
    from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary

    registry = CollectorRegistry()
    Counter("c", "A counter.\nWith a second line and a \\ backslash.", ["x"], registry=registry) \
        .labels('quo"te').inc(3)
    gauge = Gauge("g_seconds", "Gauges.", ["a", "b"], registry=registry)
    gauge.labels("new\nline", "back\\slash").set(float("inf"))
    gauge.labels("ünïcode", "").set(float("nan"))
    gauge.labels("big", "small").set(1795843997.4212275)
    gauge.labels("tiny", "neg").set(-1e-12)
    Histogram("h", "A histogram.", registry=registry).observe(0.3)
    Summary("s", "A summary.", registry=registry).observe(2)
    Info("i", "Info.", registry=registry).info({"version": "1.2"})
    Enum("e", "An enum.", states=["a", "b"], registry=registry).state("b")
    Gauge("empty", "No samples.", ["k"], registry=registry)
    return registry


def test_render_text_is_byte_identical_to_prometheus_client(registry, clock):
    from prometheus_client import generate_latest

    from mlwatcher_exporter.exposition import render_text

    monitor = ModelMonitor(model='odd "model"', class_names=["a\\b", "c\nd", "é"],
                           registry=registry, background=False, _clock=clock,
                           categorical_features=[1])
    other = ModelMonitor(model="plain", n_classes=2, registry=registry, background=False,
                         _clock=clock)
    monitor.observe(np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]), [[1.0, 2], [np.nan, 3]],
                    labels=["é", "a\\b"])
    other.observe(np.array([[0.9, 0.1]]))
    clock.advance(60)
    for source in (registry, _mixed_registry()):
        assert render_text(source) == generate_latest(source)
    first = render_text(registry)
    assert render_text(registry) == first  # the same window, from the cache
    other.observe(np.array([[0.2, 0.8]] * 3))
    clock.advance(60)  # a new window: the cache is rebuilt
    second = render_text(registry)
    assert second != first and second == generate_latest(registry)
    assert b'mlwatcher_window_rows{model="plain"} 3.0' in second


def test_render_text_falls_back_for_utf8_names():
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily

    from mlwatcher_exporter.exposition import render_text

    class Odd:
        def collect(self):
            family = GaugeMetricFamily("odd", "Odd label name.", labels=["bad.name"])
            family.add_metric(["v"], 1.0)
            yield family

    registry = CollectorRegistry()
    registry.register(Odd())
    assert render_text(registry) == generate_latest(registry)


def test_metrics_gzip_and_name_filter(served):
    import gzip

    request = urllib.request.Request(served.url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        body = gzip.decompress(response.read()).decode()
    assert "mlwatcher_predictions_total" in body
    _, _, body = get(served.url + "?name[]=mlwatcher_model_info")
    assert "mlwatcher_model_info{" in body and "mlwatcher_predictions_total" not in body


def request(url, method="GET", headers=None):
    """(status, headers, body) of one request; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method,
                                                           headers=headers or {}),
                                    timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_the_windows_endpoint_is_served_by_the_plain_exporter(registry, clock):
    monitor = ModelMonitor(model="fraud/eu", n_classes=2, registry=registry,
                           background=False, _clock=clock)
    server = monitor.start_http_server(port=0)
    base = f"http://127.0.0.1:{server.port}/api/v1/models"
    try:
        for rows in (1, 2, 3):
            monitor.observe(np.tile([[0.3, 0.7]], (rows, 1)))
            monitor.close_window()
        status, headers, body = request(f"{base}/fraud%2Feu/windows?limit=2")
        answer = json.loads(body)
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert answer["model"] == "fraud/eu"
        assert [w["rows"] for w in answer["windows"]] == [2, 3]
        status, _, body = request(f"{base}/nope/windows")
        assert status == 404 and json.loads(body)["error"]["field"] == "model"
        assert request(f"{base}/fraud%2Feu/windows?limit=0")[0] == 400
        status, headers, _ = request(f"{base}/fraud%2Feu/windows", method="POST")
        assert status == 405 and headers["Allow"] == "GET, HEAD"
        status, _, body = request(f"{base}/fraud%2Feu/windows", method="HEAD")
        assert status == 200 and body == b""
    finally:
        server.shutdown()
        monitor.close()


def test_head_answers_headers_without_a_body(served):
    status, headers, body = request(served.url, "HEAD")
    _, _, full = request(served.url)
    assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(full)
    status, headers, body = request(f"http://127.0.0.1:{served.port}/", "HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"])
def test_other_methods_get_405_with_allow(served, method):
    for path in ("/metrics", "/"):
        status, headers, _ = request(f"http://127.0.0.1:{served.port}{path}", method)
        assert status == 405 and headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("accept_encoding, gzipped", [
    ("gzip", True), ("GZIP", True), ("x-gzip", True), ("deflate, gzip;q=0.8", True),
    ("*", True), ("br;q=1, *;q=0.1", True), ("gzip; Q=0.5", True),
    ("gzip;q=0", False), ("gzip;q=0.000", False), ("identity", False), ("br", False),
    ("gzip;q=0.5, identity;q=1", False), ("*;q=0", False), ("gzip;q=2", False),
    ("gzip;q=abc", False), ("gzipx", False), ("", False), (None, False),
])
def test_accept_encoding_is_parsed_with_q_values(served, accept_encoding, gzipped):
    import gzip

    from mlwatcher_exporter.exposition import accepts_gzip

    assert accepts_gzip(accept_encoding) is gzipped
    headers = {} if accept_encoding is None else {"Accept-Encoding": accept_encoding}
    status, response_headers, body = request(served.url, headers=headers)
    assert status == 200 and response_headers["Vary"] == "Accept-Encoding"
    assert (response_headers.get("Content-Encoding") == "gzip") is gzipped
    text = gzip.decompress(body) if gzipped else body
    assert b"mlwatcher_predictions_total" in text


def test_ipv6_loopback_is_served(registry):
    import socket

    try:
        server = start_http_server(0, "::1", registry=registry)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        assert server.addr == "::1" and server.url.startswith("http://[::1]:")
        assert request(server.url)[0] == 200
    finally:
        server.shutdown()
    assert socket.has_ipv6


def test_a_second_server_on_the_same_registry_and_port_is_shared(registry):
    first = start_http_server(0, registry=registry)
    second = start_http_server(first.port, "localhost", registry=registry)
    try:
        assert second.url == first.url and second.thread is first.thread
        first.shutdown()
        first.shutdown()  # a handle is released once
        assert request(second.url)[0] == 200  # still served for the second user
    finally:
        second.shutdown()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(second.url, timeout=2)


def test_another_registry_on_a_served_port_is_a_clear_error(registry):
    from prometheus_client import CollectorRegistry

    from mlwatcher_exporter.exposition import ServerLimits

    first = start_http_server(0, registry=registry)
    try:
        with pytest.raises(OSError, match="already served by mlwatcher-exporter for another "
                                          "registry"):
            start_http_server(first.port, registry=CollectorRegistry())
        with pytest.raises(ValueError, match="another web_config or limits"):
            start_http_server(first.port, registry=registry,
                              limits=ServerLimits(max_connections=5))
    finally:
        first.shutdown()


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(port=-1), ValueError, r"port == -1, must be >= 0 and <= 65535"),
    (dict(port="80"), TypeError, r"port == '80', must be an int"),
    (dict(port=0, addr=None), TypeError, r"addr == None, must be a str"),
    (dict(port=0, addr="no such host.invalid"), ValueError, r"addr == 'no such host.invalid'"),
])
def test_start_http_server_checks_its_arguments(registry, kwargs, error, message):
    with pytest.raises(error, match=message):
        start_http_server(registry=registry, **kwargs)
