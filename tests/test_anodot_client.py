"""Tests of mlwatcher_exporter.bridge.sender.AnodotClient: HTTP transport and token redaction."""

from __future__ import annotations

import json
import socket
import threading
from typing import Iterator

import pytest

from fake_anodot import FakeAnodot
from mlwatcher_exporter.bridge.config import redact
from mlwatcher_exporter.bridge.sender import AnodotClient


@pytest.fixture
def fake() -> Iterator[FakeAnodot]:
    with FakeAnodot(retry_after="3") as server:
        yield server


def body(n: int = 1) -> bytes:
    return json.dumps([{"properties": {"what": "x"}, "timestamp": 1, "value": 1.0}] * n).encode()


def test_post_reuses_one_connection(fake: FakeAnodot) -> None:
    client = AnodotClient(fake.url, fake.token)
    try:
        for _ in range(3):
            response = client.post(body())
            assert response.status == 200 and json.loads(response.body) == {"errors": []}
        conn = client._conn
        assert conn is not None
        client.post(body())
        assert client._conn is conn
    finally:
        client.close()
    assert len(fake.accepted) == 4


def test_retry_after_header_is_returned(fake: FakeAnodot) -> None:
    fake.fail_next("429")
    client = AnodotClient(fake.url, fake.token)
    try:
        response = client.post(body())
    finally:
        client.close()
    assert (response.status, response.retry_after) == (429, "3")


def test_dropped_connection_gives_no_status_and_reconnects(fake: FakeAnodot) -> None:
    fake.fail_next("drop")
    client = AnodotClient(fake.url, fake.token)
    try:
        first = client.post(body())
        assert first.status is None and first.error
        assert client.post(body()).status == 200
    finally:
        client.close()


def test_timeout_gives_no_status() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    try:
        client = AnodotClient(f"http://127.0.0.1:{listener.getsockname()[1]}", "tok-123",
                              timeout_seconds=0.2)
        response = client.post(body())
        client.close()
    finally:
        listener.close()
    assert response.status is None and "timed out" in (response.error or "")


def test_refused_connection_error_does_not_contain_the_token() -> None:
    secret = "SECRET-tok-77"
    client = AnodotClient("http://127.0.0.1:9", secret)
    response = client.post(body())
    assert response.status is None
    assert secret not in (response.error or "")
    assert secret not in client.url and "token=REDACTED" in client.url


def test_base_path_prefix_is_kept(fake: FakeAnodot) -> None:
    client = AnodotClient(fake.url + "/", fake.token)
    assert client.url.endswith("/api/v1/metrics?token=REDACTED&protocol=anodot20")
    client.close()


def test_redact_hides_query_tokens_and_the_token_itself() -> None:
    assert redact("GET /x?a=1&token=abc&b=2") == "GET /x?a=1&token=REDACTED&b=2"
    assert redact("error with a/b+c in it", "a/b+c") == "error with REDACTED in it"
    assert redact("quoted a%2Fb", "a/b") == "quoted REDACTED"


@pytest.mark.parametrize("url", ["ftp://h", "h:80", "http://h?x=1"])
def test_bad_base_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="base_url =="):
        AnodotClient(url, "t")


@pytest.mark.parametrize("token", ["", "a b", None])
def test_bad_token_is_refused_without_echo(token: object) -> None:
    with pytest.raises(ValueError, match="value hidden"):
        AnodotClient("http://h", token)  # type: ignore[arg-type]


def test_concurrent_clients_do_not_interfere(fake: FakeAnodot) -> None:
    def worker() -> None:
        client = AnodotClient(fake.url, fake.token)
        for _ in range(5):
            assert client.post(body(2)).status == 200
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(fake.accepted) == 40
