"""Serving and closing a monitor (monitorlifecycle.LifecycleMixin)."""

import urllib.request

import numpy as np
import pytest
from prometheus_client import generate_latest

from mlwatcher_exporter import ModelMonitor


def test_one_server_serves_every_monitor_of_its_registry(registry, clock):
    first = ModelMonitor(model="a", n_classes=2, registry=registry, background=False,
                         _clock=clock)
    second = ModelMonitor(model="b", n_classes=2, registry=registry, background=False,
                          _clock=clock)
    server = first.start_http_server(port=0)
    try:
        again = second.start_http_server(port=server.port)
        assert again.port == server.port  # the running server, not "Address already in use"
        first.observe([[0.9, 0.1]])
        second.observe([[0.2, 0.8]])
        text = urllib.request.urlopen(server.url, timeout=10).read().decode()
        assert 'model="a"' in text and 'model="b"' in text
    finally:
        server.shutdown()


def test_a_monitor_without_registry_cannot_serve(clock):
    monitor = ModelMonitor(model="none", n_classes=2, registry=None, background=False,
                           _clock=clock)
    with pytest.raises(ValueError, match="registry == None, must have a registry to serve"):
        monitor.start_http_server(port=0)


def test_close_counts_what_is_staged_unregisters_and_can_be_repeated(registry, clock):
    with ModelMonitor(model="closing", n_classes=2, registry=registry, background=False,
                      _clock=clock) as monitor:
        assert monitor.observe_quietly(np.array([[0.9, 0.1], [0.6, 0.4]]))
        assert 'model="closing"' in generate_latest(registry).decode()
    counted = monitor.snapshot()
    assert sum(counted.counts.predictions) == 2
    assert 'model="closing"' not in generate_latest(registry).decode()
    monitor.close()  # a second close is harmless: it raises nothing
