"""The landing page over real loopback servers: the latest window, charts drawn from the
last windows, every user-given name escaped, nothing loaded from elsewhere."""

import re
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from mlwatcher_exporter import ModelMonitor
from mlwatcher_exporter.history import WindowHistory
from mlwatcher_exporter.landing import MAX_CLASS_LINES, render_landing, svg_chart
from mlwatcher_exporter.service import Service
from mlwatcher_exporter.serveconfig import load_serve_config

HOSTILE = '<script>alert("x")</script>&'
CONFIG = Path(__file__).parent / "fixtures" / "serve" / "two-models.yml"


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text."""

    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(body):
    parser = Elements()
    parser.feed(body)
    return parser


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


@pytest.fixture
def hostile_monitor():
    m = ModelMonitor(model=HOSTILE, class_names=[HOSTILE + "c", "b", "c"],
                     feature_names=[HOSTILE + "f"], registry=CollectorRegistry(),
                     background=False)
    rng = np.random.default_rng(0)
    for _ in range(4):
        m.observe(rng.dirichlet([1, 1, 1], size=40), rng.normal(size=(40, 1)),
                  labels=rng.integers(0, 3, 40))
        m.close_window()
    yield m
    m.close()


def test_the_page_shows_the_latest_window_and_charts_and_escapes_names(hostile_monitor):
    server = hostile_monitor.start_http_server(0)
    try:
        status, kind, body = fetch(f"http://127.0.0.1:{server.port}/")
    finally:
        server.shutdown()
    assert status == 200 and kind.startswith("text/html")
    assert "<script" not in body and 'alert("x")' not in body
    page = parse(body)
    text = "".join(page.text)
    assert HOSTILE in text and HOSTILE + "c" in text  # escaped, then read back intact
    charts = {a["data-chart"]: int(a["data-points"]) for tag, a in page.tags if tag == "svg"}
    assert charts == {"pred1-median": 4, "spread12-median": 4, "class-ratio": 12,
                      "accuracy": 4}
    assert sum(tag == "polyline" for tag, _ in page.tags) == 6  # 1 + 1 + 3 classes + 1
    section = [a for tag, a in page.tags if tag == "section"]
    assert [(a["data-model"], a["data-windows"]) for a in section] == [(HOSTILE, "4")]
    latest = hostile_monitor.history.records()[-1]
    assert f"{latest['pred1']['median']:.3f}" in text
    assert ("meta", {"http-equiv": "refresh", "content": "60"}) in page.tags
    assert ("a", {"href": "/metrics"}) in page.tags
    # No external asset: no script, stylesheet, image or font from anywhere.
    assert not [t for t, a in page.tags if t in ("script", "link", "img", "iframe")]
    assert re.findall(r"https?://[^\"']+", body) == ["http://www.w3.org/2000/svg"] * 4
    assert "Most drifted" not in body


def test_without_windows_the_page_says_so_and_refreshes_with_the_window(registry):
    m = ModelMonitor(model="new", n_classes=2, window_seconds=5, registry=registry,
                     background=False)
    body = render_landing(registry, "/prefix/").decode()
    assert "No window closed yet (windows last 5 s)" in body
    assert '<meta http-equiv="refresh" content="5">' in body
    assert 'href="/prefix/metrics"' in body and "<svg" not in body
    m.close()
    assert "No model is monitored yet" in render_landing(registry).decode()


def test_drift_scores_are_shown_when_the_window_has_them(registry):
    m = ModelMonitor(model="d", n_classes=2, registry=registry, background=False)
    m.history = WindowHistory("d")
    m.observe([[0.2, 0.8]])
    m.close_window()
    plain = render_landing(registry).decode()
    m.history.records()[-1]["drift"] = {"<x>": 0.9, "y": 0.1, "z": None}
    body = render_landing(registry).decode()
    assert "Most drifted" not in plain
    assert "Most drifted" in body and "<li>&lt;x&gt;: 0.900</li><li>y: 0.100</li>" in body
    m.close()


def test_many_classes_draw_the_largest_and_say_how_many_more():
    values = [(f"c{i}", [0.1, None, 0.2]) for i in range(3)]
    chart = parse(svg_chart("k", values, "caption"))
    svg = [a for t, a in chart.tags if t == "svg"][0]
    assert svg["data-points"] == "6"
    assert sum(t == "polyline" for t, _ in chart.tags) == 0  # gaps split single points
    assert sum(t == "circle" for t, _ in chart.tags) == 6
    registry = CollectorRegistry()
    m = ModelMonitor(model="wide", n_classes=12, registry=registry, background=False)
    proba = np.eye(12)[np.arange(12).repeat(np.arange(1, 13))]
    m.observe(proba)
    m.close_window()
    body = render_landing(registry).decode()
    assert f"(top {MAX_CLASS_LINES}, {12 - MAX_CLASS_LINES} more)" in body
    assert "11: 0.15" in body  # the most predicted class first
    m.close()


def test_serve_answers_the_landing_page_behind_its_token():
    settings = load_serve_config(CONFIG)
    from mlwatcher_exporter.auth import BearerToken

    with Service(settings, "127.0.0.1", 0, BearerToken("t" * 24),
                 registry=CollectorRegistry()) as service:
        service.monitors["digits"].observe([[0.2, 0.3, 0.5]])
        service.monitors["digits"].close_window()
        request = urllib.request.Request(service.url + "/",
                                         headers={"Authorization": "Bearer " + "t" * 24})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(service.url + "/", timeout=10)
    assert refused.value.code == 401
    page = parse(body)
    models = [(a["data-model"], a["data-windows"]) for t, a in page.tags if t == "section"]
    assert models == [("digits", "1"), ("fraud", "0")]
