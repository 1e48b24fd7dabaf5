"""Tests of mlwatcher_exporter.bridge.anodot.ScrapeSource against real /metrics servers."""

from __future__ import annotations

from typing import Iterator, Tuple

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from mlwatcher_exporter.bridge.anodot import ScrapeSource
from mlwatcher_exporter.bridge.config import Target
from mlwatcher_exporter.bridge.mapping import PointMapper
from mlwatcher_exporter.bridge.metrics import BridgeMetrics


@pytest.fixture
def exporter() -> Iterator[Tuple[str, CollectorRegistry]]:
    registry = CollectorRegistry()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics", registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_scraped_families_map_like_the_registry(exporter: Tuple[str, CollectorRegistry]) -> None:
    url, registry = exporter
    Gauge("mlwatcher_pred1", "h", ["model", "stat"], registry=registry).labels("d", "q25").set(0.4)
    source = ScrapeSource([Target(url, {"instance": "replica-1", "model": "ignored"})])
    [point] = PointMapper().map(source.collect(), 100).points
    assert point["properties"] == {"what": "mlwatcher_pred1", "instance": "replica-1",
                                   "model": "d", "stat": "q25", "ver": "1",
                                   "target_type": "gauge"}
    assert point["value"] == 0.4


def test_a_failing_target_is_counted_and_the_others_still_forwarded(
    exporter: Tuple[str, CollectorRegistry], registry: CollectorRegistry
) -> None:
    url, source_registry = exporter
    Gauge("mlwatcher_up", "h", registry=source_registry).set(1)
    metrics = BridgeMetrics(registry)
    dead = "http://127.0.0.1:9/metrics"  # discard port: connection refused
    source = ScrapeSource([dead, url], timeout_seconds=2, metrics=metrics)
    assert registry.get_sample_value("mlwatcher_anodot_scrape_failures_total",
                                     {"target": dead}) == 0
    names = [f.name for f in source.collect()]
    assert names == ["mlwatcher_up"]
    assert registry.get_sample_value("mlwatcher_anodot_scrape_failures_total",
                                     {"target": dead}) == 1


def test_unparsable_page_is_a_failure(registry: CollectorRegistry) -> None:
    metrics = BridgeMetrics(registry)
    source = ScrapeSource(["http://x/metrics"], metrics=metrics,
                          _fetch=lambda url, timeout: "garbage{{{ 1\n")
    assert list(source.collect()) == []
    assert registry.get_sample_value("mlwatcher_anodot_scrape_failures_total",
                                     {"target": "http://x/metrics"}) == 1


def test_credentials_in_target_urls_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    def fail(url: str, timeout: float) -> str:
        raise OSError(f"cannot reach {url}")

    source = ScrapeSource(["http://h/metrics?token=hunter2"], _fetch=fail)
    list(source.collect())
    assert "hunter2" not in caplog.text and "token=REDACTED" in caplog.text


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="targets == \\[\\]"):
        ScrapeSource([])
    with pytest.raises(TypeError, match="targets == 'http://h'"):
        ScrapeSource("http://h")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout_seconds == 0"):
        ScrapeSource(["http://h"], timeout_seconds=0)
