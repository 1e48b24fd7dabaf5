"""Tests of mlwatcher_exporter.bridge.anodot.AnodotBridge against the fake Anodot server."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator, List

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from conftest import ManualClock
from fake_anodot import FakeAnodot, wait_until
from mlwatcher_exporter.bridge.anodot import AnodotBridge
from mlwatcher_exporter.bridge.config import SendOptions, SpoolOptions

T0 = 1_700_000_000.0
FAST = SendOptions(backoff_initial_seconds=0.001, backoff_max_seconds=0.02,
                   points_per_second=1e6, requests_per_minute=1e7, timeout_seconds=5)


@pytest.fixture
def fake() -> Iterator[FakeAnodot]:
    with FakeAnodot(retry_after="0") as server:
        yield server


@pytest.fixture
def bridges() -> Iterator[List[AnodotBridge]]:
    made: List[AnodotBridge] = []
    yield made
    for bridge in made:
        bridge.close()


def make(bridges: List[AnodotBridge], fake: FakeAnodot, source: CollectorRegistry,
         spool_dir: Path, **kwargs: Any) -> AnodotBridge:
    kwargs.setdefault("sending", FAST)
    kwargs.setdefault("metrics_registry", None)
    bridge = AnodotBridge(fake.url, fake.token, spool_dir, source, random_state=0, **kwargs)
    bridges.append(bridge)
    return bridge


def test_push_sends_what_the_registry_holds(
    fake: FakeAnodot, registry: CollectorRegistry, tmp_path: Path, bridges: List[AnodotBridge]
) -> None:
    gauge = Gauge("mlwatcher_pred1", "h", ["model", "stat"], registry=registry)
    gauge.labels("digits", "median").set(0.9)
    clock = ManualClock(T0)
    own = CollectorRegistry()
    bridge = make(bridges, fake, registry, tmp_path, metrics_registry=own, _clock=clock)
    result = bridge.push()
    assert (result.accepted, result.rejected, result.pending) == (1, 0, 0)
    gauge.labels("digits", "median").set(0.8)
    clock.now += 60
    bridge.push()
    assert fake.accepted_values("mlwatcher_pred1", model="digits") == [0.9, 0.8]
    assert [p["timestamp"] for p in fake.accepted] == [1_700_000_000, 1_700_000_060]
    assert own.get_sample_value("mlwatcher_anodot_points_spooled_total") == 2
    assert own.get_sample_value("mlwatcher_anodot_points_sent_total") == 2
    assert own.get_sample_value("mlwatcher_anodot_spool_points") == 0
    assert own.get_sample_value("mlwatcher_anodot_last_success_timestamp_seconds") == clock.now


def test_outage_keeps_points_spooled_and_restart_replays_them_first(
    fake: FakeAnodot, registry: CollectorRegistry, tmp_path: Path, bridges: List[AnodotBridge]
) -> None:
    gauge = Gauge("mlwatcher_pred1", "h", registry=registry)
    clock = ManualClock(T0)
    own = CollectorRegistry()
    first = make(bridges, fake, registry, tmp_path, metrics_registry=own, _clock=clock)
    fake.fail_next("503", count=3)
    for value in (1, 2, 3):
        gauge.set(value)
        first.snapshot()
        clock.now += 60
        assert first.flush().pending > 0
    assert own.get_sample_value("mlwatcher_anodot_spool_points") == 3
    assert own.get_sample_value("mlwatcher_anodot_spool_oldest_age_seconds") == 180
    assert own.get_sample_value("mlwatcher_anodot_spool_bytes") > 0
    first.close()
    assert fake.accepted == []

    second = make(bridges, fake, registry, tmp_path, _clock=clock)
    gauge.set(4)
    result = second.push()
    assert result.pending == 0
    assert fake.accepted_values("mlwatcher_pred1") == [1, 2, 3, 4]


def test_counter_increases_continue_across_restart(
    fake: FakeAnodot, registry: CollectorRegistry, tmp_path: Path, bridges: List[AnodotBridge]
) -> None:
    counter = Counter("mlwatcher_predictions", "h", ["model"], registry=registry).labels("m")
    clock = ManualClock(T0)
    counter.inc(10)
    first = make(bridges, fake, registry, tmp_path, _clock=clock)
    first.push()  # baseline
    counter.inc(5)
    clock.now += 60
    first.push()
    first.close()
    counter.inc(7)  # while the bridge is down
    clock.now += 60
    make(bridges, fake, registry, tmp_path, _clock=clock).push()
    assert fake.accepted_values("mlwatcher_predictions_total") == [5, 7]


def test_model_side_never_waits_for_the_api(
    fake: FakeAnodot, registry: CollectorRegistry, tmp_path: Path, bridges: List[AnodotBridge]
) -> None:
    counter = Counter("mlwatcher_predictions", "h", ["model"], registry=registry).labels("m")
    gauge = Gauge("mlwatcher_pred1", "h", ["model"], registry=registry).labels("m")
    bridge = make(bridges, fake, registry, tmp_path)
    fake.hold()  # every request now hangs until release()
    try:
        bridge.start(0.01)
        wait_until(lambda: fake.waiting == 1, 10, "the sender to be stuck in a request")

        def model() -> None:
            for i in range(2000):
                counter.inc()
                gauge.set(i)

        thread = threading.Thread(target=model)
        thread.start()
        thread.join(30)
        assert not thread.is_alive(), "the model thread was blocked"
        spooled = bridge.spool.pending_points
        assert bridge.snapshot() == 2, "snapshots go on while the API hangs"
        assert bridge.spool.pending_points == spooled + 2
        assert fake.waiting == 1 and fake.accepted == []
    finally:
        fake.release()
    wait_until(lambda: 1999.0 in fake.accepted_values("mlwatcher_pred1", model="m"), 20,
               "the points spooled during the hang to be delivered")
    bridge.stop()
    assert fake.order_violations == []


def test_background_threads_survive_random_faults_and_stop_cleanly(
    registry: CollectorRegistry, tmp_path: Path, bridges: List[AnodotBridge]
) -> None:
    gauge = Gauge("mlwatcher_seq", "h", ["model"], registry=registry)
    with FakeAnodot(fault_rate=0.4, seed=3, retry_after="0", slow_seconds=0.01) as fake:
        bridge = make(bridges, fake, registry, tmp_path,
                      sending=SendOptions(**{**FAST.__dict__, "batch_size": 3}))
        produced: List[int] = []
        bridge.start(3600)  # the test snapshots by hand
        for i in range(60):
            for m in ("a", "b"):
                gauge.labels(m).set(i)
            bridge.snapshot()
            produced.append(i)
        wait_until(lambda: bridge.spool.pending_points == 0, 30, "the spool to drain")
        bridge.stop()
        assert all(not t.is_alive() for t in threading.enumerate() if t.name.startswith("anodot-"))
    for m in ("a", "b"):
        values = fake.accepted_values("mlwatcher_seq", model=m)
        unique = list(dict.fromkeys(values))
        assert unique == [float(i) for i in produced], "every point, in order"
    assert fake.order_violations == []
    assert sum(fake.requests.values()) > sum(v for k, v in fake.requests.items() if k == "ok")


def test_failed_spool_write_is_counted_and_keeps_counter_baselines(
    fake: FakeAnodot, registry: CollectorRegistry, tmp_path: Path, bridges: List[AnodotBridge],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = Counter("mlwatcher_predictions", "h", registry=registry)
    own = CollectorRegistry()
    clock = ManualClock(T0)
    bridge = make(bridges, fake, registry, tmp_path, metrics_registry=own, _clock=clock)
    counter.inc(1)
    bridge.push()
    counter.inc(2)
    clock.now += 60

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bridge.spool, "append", disk_full)
    assert bridge.snapshot() == 0
    assert own.get_sample_value("mlwatcher_anodot_spool_errors_total") == 1
    monkeypatch.undo()
    counter.inc(3)
    clock.now += 60
    bridge.push()
    assert fake.accepted_values("mlwatcher_predictions_total") == [5.0], "no increase is lost"


def test_timestamps_never_go_back(
    fake: FakeAnodot, registry: CollectorRegistry, tmp_path: Path, bridges: List[AnodotBridge]
) -> None:
    Gauge("mlwatcher_pred1", "h", registry=registry).set(1)
    clock = ManualClock(T0)
    bridge = make(bridges, fake, registry, tmp_path, _clock=clock)
    bridge.push()
    clock.now -= 30  # the wall clock was stepped back
    bridge.push()
    assert [p["timestamp"] for p in fake.accepted] == [1_700_000_000, 1_700_000_000]


def test_spool_bounds_are_applied(
    fake: FakeAnodot, registry: CollectorRegistry, tmp_path: Path, bridges: List[AnodotBridge]
) -> None:
    Gauge("mlwatcher_pred1", "h", ["i"], registry=registry)
    for i in range(10):
        registry._names_to_collectors["mlwatcher_pred1"].labels(str(i)).set(i)
    own = CollectorRegistry()
    bridge = make(bridges, fake, registry, tmp_path, metrics_registry=own,
                  spool=SpoolOptions(max_bytes=4096, segment_bytes=1024))
    fake.fail_next("500", count=100)
    for _ in range(30):
        bridge.snapshot()
    assert bridge.spool.bytes <= 4096 + 1024
    dropped = own.get_sample_value("mlwatcher_anodot_points_dropped_total",
                                   {"reason": "spool_size"})
    assert dropped > 0
    assert dropped + bridge.spool.pending_points == 300


def test_token_never_appears_in_errors_or_repr(tmp_path: Path, registry: CollectorRegistry) -> None:
    secret = "tok-SECRET-123"
    with pytest.raises(ValueError) as info:
        AnodotBridge(f"ftp://host/?token={secret}", secret, tmp_path, registry,
                     metrics_registry=None)
    assert secret not in str(info.value)
    bridge = AnodotBridge("http://127.0.0.1:9", secret, tmp_path, registry, metrics_registry=None)
    try:
        assert secret not in repr(bridge.client) and secret not in bridge.client.url
    finally:
        bridge.close()


def test_bad_arguments_are_named(tmp_path: Path, registry: CollectorRegistry) -> None:
    with pytest.raises(TypeError, match="registry == 3"):
        AnodotBridge("http://127.0.0.1:9", "t", tmp_path, 3, metrics_registry=None)
    with pytest.raises(TypeError, match="sending == "):
        AnodotBridge("http://127.0.0.1:9", "t", tmp_path, registry, sending={"batch_size": 1},
                     metrics_registry=None)
    bridge = AnodotBridge("http://127.0.0.1:9", "t", tmp_path, registry, metrics_registry=None)
    try:
        with pytest.raises(ValueError, match="interval == 0"):
            bridge.start(0)
        with pytest.raises(ValueError, match="interval == inf"):
            bridge.start(float("inf"))
    finally:
        bridge.close()


def test_a_very_long_interval_waits_instead_of_crashing_the_thread(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    Gauge("mlwatcher_pred1", "h", registry=registry).set(1)
    bridge = AnodotBridge("http://127.0.0.1:9", "t", tmp_path, registry, metrics_registry=None)
    try:
        bridge.start(1e12)  # past threading.TIMEOUT_MAX
        wait_until(lambda: bridge.spool.pending_points == 1, 10, "the first snapshot")
        time.sleep(0.05)
        assert [t.is_alive() for t in bridge._threads] == [True, True]
    finally:
        bridge.close()
    assert bridge._threads == []


def test_registers_its_metrics_in_the_given_registry(tmp_path: Path) -> None:
    own = CollectorRegistry()
    bridge = AnodotBridge("http://127.0.0.1:9", "t", tmp_path, CollectorRegistry(),
                          metrics_registry=own)
    try:
        names = {m.name for m in own.collect()}
        assert "mlwatcher_anodot_points_sent" in names
        assert own.get_sample_value("mlwatcher_anodot_retries_total",
                                    {"reason": "rate_limited"}) == 0
    finally:
        bridge.close()


def test_v1_naming_reaches_anodot_with_the_ancestors_names(
    fake: FakeAnodot, registry: CollectorRegistry, tmp_path: Path, bridges: List[AnodotBridge]
) -> None:
    import numpy as np

    from mlwatcher_exporter import ModelMonitor
    from mlwatcher_exporter.bridge.config import MappingOptions

    monotonic = ManualClock(0.0)
    monitor = ModelMonitor(model="digits", n_classes=3, window_seconds=60, registry=registry,
                           background=False, _clock=monotonic, _wall_clock=lambda: T0)
    rng = np.random.default_rng(0)
    monitor.observe(rng.dirichlet([1, 1, 1], size=40), rng.normal(size=(40, 2)),
                    labels=rng.integers(0, 3, 40))
    monotonic.now = 30
    monitor.close_window()
    clock = ManualClock(T0 + 60)
    bridge = make(bridges, fake, registry, tmp_path, _clock=clock,
                  mapping=MappingOptions(naming="mlwatcher-v1"))
    bridge.push()
    clock.now += 60
    bridge.push()  # the same window: its statistics are not sent again
    assert len(fake.accepted_values("max_prediction_proba", agent_id="digits", stat="q50")) == 1
    assert len(fake.accepted_values("spread12_prediction_proba", stat="iqr")) == 1
    assert fake.accepted_values("buffer_count", agent_id="digits") == [40]
    counts = [fake.accepted_values("prediction_count", class_name=f"class_{c}")[0]
              for c in range(3)]
    assert sum(counts) == 40
    assert len(fake.accepted_values("feature_value", feat_name="feat_1", stat="mean")) == 1
    for what in ("accuracy", "precision", "recall", "f1", "prediction_freq"):
        assert len(fake.accepted_values(what, class_name="class_2")) == 1, what
    assert fake.order_violations == []
