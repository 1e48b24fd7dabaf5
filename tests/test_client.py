"""RemoteMonitor against a real `serve` on loopback: the decorator's promise, retries
while the server is down, a bounded buffer, and every dropped row counted."""

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from mlwatcher_exporter.auth import BearerToken
from mlwatcher_exporter.client import RemoteMonitor
from mlwatcher_exporter.service import Service
from mlwatcher_exporter.serveconfig import load_serve_config

from _prometheus import free_port

CONFIG = Path(__file__).parent / "fixtures" / "serve" / "two-models.yml"
TOKEN = "client-test-token-0123456789"


def start_service(port=0, token=None):
    return Service(load_serve_config(CONFIG), "127.0.0.1", port,
                   BearerToken(token) if token else None, registry=CollectorRegistry()).start()


def counted(svc, model):
    svc.monitors[model].flush()
    return sum(s.value for f in svc.registry.collect() for s in f.samples
               if s.name == "mlwatcher_predictions_total" and s.labels["model"] == model)


def client_value(registry, name, **labels):
    return registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def service():
    svc = start_service()
    yield svc
    svc.shutdown()


def test_watch_sends_every_row_and_keeps_the_models_answer(service):
    registry = CollectorRegistry()
    remote = RemoteMonitor(service.url, model="digits", registry=registry)

    @remote.watch
    def predict_proba(X):
        return np.tile([0.1, 0.3, 0.6], (len(X), 1))

    sizes = [1, 5, 17, 3] * 10
    for rows in sizes:
        with remote.labels(np.full(rows, 2)):
            out = predict_proba(np.zeros((rows, 4)))
        assert out.shape == (rows, 3)
    assert remote.flush(10)
    assert counted(service, "digits") == sum(sizes)
    assert service.registry.get_sample_value(
        "mlwatcher_correct_predictions_total", {"model": "digits", "class": "2"}) == sum(sizes)
    assert client_value(registry, "mlwatcher_client_sent_rows_total", model="digits") == \
        sum(sizes)
    # batches were coalesced into fewer requests than calls
    requests = service.registry.get_sample_value(
        "mlwatcher_ingest_batches_total", {"model": "digits", "format": "npz"})
    assert 1 <= requests <= len(sizes)
    remote.close()


def test_the_model_is_never_blocked_nor_failed_when_the_server_is_down():
    registry = CollectorRegistry()
    port = free_port()
    remote = RemoteMonitor(f"http://127.0.0.1:{port}", model="digits", registry=registry,
                           max_buffered_rows=50, max_backoff=0.2)

    @remote.watch
    def predict_proba(X):
        return np.tile([0.2, 0.2, 0.6], (len(X), 1))

    started = time.monotonic()
    for _ in range(30):
        predict_proba(np.zeros((4, 2)))  # 120 rows, the buffer holds 50
    assert time.monotonic() - started < 1.0
    time.sleep(0.5)
    dropped = client_value(registry, "mlwatcher_client_dropped_rows_total", model="digits",
                           reason="buffer_full")
    assert client_value(registry, "mlwatcher_client_retries_total", model="digits") >= 1
    assert dropped >= 120 - 50 - 4 * 13  # oldest dropped; some rows may be in flight
    # the server comes up on that port: what was kept is delivered, the rest was counted
    svc = start_service(port)
    try:
        assert remote.flush(15)
        sent = client_value(registry, "mlwatcher_client_sent_rows_total", model="digits")
        dropped = client_value(registry, "mlwatcher_client_dropped_rows_total",
                               model="digits", reason="buffer_full")
        # At most the buffer plus the one request the sender had taken out of it (which
        # merges up to a buffer's worth of batches) reach the server.
        assert sent + dropped == 120 and 0 < sent <= 2 * 50
        assert counted(svc, "digits") == sent
    finally:
        remote.close()
        svc.shutdown()


def test_refused_batches_are_counted_and_do_not_sink_the_good_ones(service):
    registry = CollectorRegistry()
    remote = RemoteMonitor(service.url, model="digits", registry=registry)
    good = np.tile([0.2, 0.2, 0.6], (5, 1))
    remote.observe_quietly(good)
    remote.observe_quietly(np.tile([0.5, 0.5], (3, 1)))  # 2 columns: the server says 422
    remote.observe_quietly(good)
    remote.observe_quietly("not a table")  # refused by the client itself
    assert remote.flush(10)
    assert counted(service, "digits") == 10
    assert client_value(registry, "mlwatcher_client_dropped_rows_total", model="digits",
                        reason="rejected") == 3
    assert client_value(registry, "mlwatcher_client_dropped_rows_total", model="digits",
                        reason="invalid") >= 1
    unknown = RemoteMonitor(service.url, model="nope", registry=registry)
    unknown.observe_quietly(good)
    assert unknown.flush(10)
    assert client_value(registry, "mlwatcher_client_dropped_rows_total", model="nope",
                        reason="rejected") == 5
    remote.close()
    unknown.close()


def test_dataframes_and_text_go_as_json():
    pd = pytest.importorskip("pandas")
    svc = start_service()
    try:
        registry = CollectorRegistry()
        remote = RemoteMonitor(svc.url, model="fraud", registry=registry)
        frame = pd.DataFrame({"amount": [1.5, np.nan], "country": ["fr", None]})
        remote.observe_quietly(np.array([[0.9, 0.1], [0.3, 0.7]]), frame,
                               np.array(["no", "yes"], dtype=object))
        frame.loc[0, "amount"] = 99.0  # the model changing its input afterwards changes nothing
        assert remote.flush(10)
        assert counted(svc, "fraud") == 2
        window = svc.monitors["fraud"].close_window()
        assert window.rows == 2
        assert svc.registry.get_sample_value("mlwatcher_ingest_rows_total",
                                             {"model": "fraud", "format": "json"}) == 2
        remote.close()
    finally:
        svc.shutdown()


def test_token_and_wrong_token():
    svc = start_service(token=TOKEN)
    try:
        registry = CollectorRegistry()
        good = RemoteMonitor(svc.url, model="digits", token=TOKEN, registry=registry)
        bad = RemoteMonitor(svc.url, model="fraud", token="wrong-token-wrong-token",
                            registry=registry)
        good.observe_quietly(np.tile([0.2, 0.2, 0.6], (4, 1)))
        bad.observe_quietly(np.tile([0.5, 0.5], (4, 1)))
        assert good.flush(10) and bad.flush(10)
        assert counted(svc, "digits") == 4 and counted(svc, "fraud") == 0
        assert client_value(registry, "mlwatcher_client_dropped_rows_total", model="fraud",
                            reason="rejected") == 4
        good.close()
        bad.close()
    finally:
        svc.shutdown()


def test_close_counts_what_it_could_not_send():
    registry = CollectorRegistry()
    remote = RemoteMonitor(f"http://127.0.0.1:{free_port()}", model="m", registry=registry,
                           max_backoff=0.1)
    remote.observe_quietly(np.tile([0.5, 0.5], (7, 1)))
    remote.close(timeout=0.3)
    assert remote.counts.dropped["closed"] == 7 and remote.counts.buffered_rows == 0
    assert remote.observe_quietly(np.tile([0.5, 0.5], (2, 1))) is False
    assert registry.get_sample_value("mlwatcher_client_buffered_rows", {"model": "m"}) is None


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="url == 'ftp://x', must be http"):
        RemoteMonitor("ftp://x", registry=None)
    with pytest.raises(TypeError, match="max_buffered_rows == 1.5, must be an int"):
        RemoteMonitor("http://127.0.0.1:1", registry=None, max_buffered_rows=1.5)
    with pytest.raises(ValueError, match="timeout == 0, must be > 0"):
        RemoteMonitor("http://127.0.0.1:1", registry=None, timeout=0)
    registry = CollectorRegistry()
    first = RemoteMonitor("http://127.0.0.1:1", model="a", registry=registry)
    with pytest.raises(ValueError, match="already registered"):
        RemoteMonitor("http://127.0.0.1:1", model="a", registry=registry)
    first.close(0)


def test_many_threads_observe_at_once(service):
    registry = CollectorRegistry()
    remote = RemoteMonitor(service.url, model="digits", registry=registry)
    predict = remote.watch(lambda X: np.tile([0.6, 0.2, 0.2], (len(X), 1)))

    def work():
        for _ in range(200):
            predict(np.zeros((2, 2)))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert remote.flush(20)
    assert counted(service, "digits") == 1600
    remote.close()


def test_a_server_that_stalls_does_not_block_the_model():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)  # accepts connections, never answers
    registry = CollectorRegistry()
    remote = RemoteMonitor(f"http://127.0.0.1:{listener.getsockname()[1]}", model="s",
                           registry=registry, timeout=0.3, max_backoff=0.1)
    try:
        started = time.monotonic()
        for _ in range(100):
            remote.observe_quietly(np.tile([0.5, 0.5], (1, 1)))
        assert time.monotonic() - started < 0.5
        time.sleep(0.8)
        assert client_value(registry, "mlwatcher_client_retries_total", model="s") >= 1
    finally:
        remote.close(0.1)
        listener.close()
    assert remote.counts.dropped["closed"] == 100


# --- prediction ids sent by RemoteMonitor, joined by the server's late labels ---
def late(svc, name, **labels):
    svc.monitors["digits"].flush()
    return svc.registry.get_sample_value(name, {"model": "digits", **labels}) or 0.0


@pytest.mark.parametrize("kind", ["npz", "json"])
def test_ids_travel_with_their_batches_and_late_labels_join_them(service, kind):
    remote = RemoteMonitor(service.url, model="digits", registry=CollectorRegistry())

    @remote.watch
    def predict_proba(X):
        return np.tile([0.1, 0.3, 0.6], (len(X), 1))

    ids = []
    for call in range(12):
        batch = [f"req-{call}-{row}" for row in range(call % 4 + 1)] if kind == "npz" \
            else list(range(call * 10, call * 10 + call % 4 + 1))
        ids += batch
        features = np.zeros((len(batch), 2)) if kind == "npz" else [[0, None]] * len(batch)
        with remote.ids(batch):
            predict_proba(features)
    assert remote.flush(10)
    assert late(service, "mlwatcher_prediction_ids") == len(ids)
    formats = {"format": kind}
    assert service.registry.get_sample_value(
        "mlwatcher_ingest_batches_total", {"model": "digits", **formats}) >= 1
    service.monitors["digits"].observe_labels(ids[:7] + ["never-sent"], [2] * 8)
    assert late(service, "mlwatcher_late_labels_matched_total") == 7
    assert late(service, "mlwatcher_late_labels_unmatched_total", reason="unknown") == 1
    remote.close()


def test_bad_ids_are_dropped_with_their_batch_and_counted():
    remote = RemoteMonitor("http://127.0.0.1:9", model="digits", registry=CollectorRegistry())
    proba = [[0.2, 0.8], [0.5, 0.5]]
    assert not remote.observe_quietly(proba, ids=["a"])  # one id for two rows
    assert not remote.observe_quietly(proba, ids=["a", 1])  # mixed
    assert not remote.observe_quietly(proba, ids=[1.5, 2.5])  # floats
    assert remote.counts.dropped["invalid"] == 6
    with remote.labels([1, 0], ids=["x", "y"]):
        assert remote.current_labels() == [1, 0]
        assert remote.current_block().ids == ["x", "y"]
    remote.close(timeout=0)
