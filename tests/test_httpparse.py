"""Request heads and bodies framed from a buffer: what is read, what is refused."""

import pytest

from mlwatcher_exporter.httpparse import BadRequest, parse_head, serialize
from mlwatcher_exporter.httptypes import Response, ServerLimits

BODIES = ServerLimits(max_body_bytes=100)


def parse(data, limits=BODIES):
    buf = bytearray(data)
    return parse_head(buf, limits, ("127.0.0.1", 1), "http", ("127.0.0.1", 2)), buf


def test_a_head_is_taken_off_the_buffer_and_the_body_measured():
    head, rest = parse(b"POST /a?b HTTP/1.1\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello")
    assert head.request.method == "POST" and head.request.target == "/a?b"
    assert head.request.headers["x-a"] == "1, 2" and head.body_length == 5
    assert not head.close_after and not head.expect_continue and rest == b"hello"


def test_an_incomplete_head_waits():
    head, rest = parse(b"POST / HTTP/1.1\r\nContent-Le")
    assert head is None and rest == b"POST / HTTP/1.1\r\nContent-Le"


@pytest.mark.parametrize("data, status", [
    (b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 1000000000000000000000\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
    (b"POST / HTTP/2.0\r\n\r\n", 505),
    (b"POST /\r\n\r\n", 400),
])
def test_refused_heads(data, status):
    with pytest.raises(BadRequest) as refused:
        parse(data)
    assert refused.value.status == status


def test_without_body_reading_a_body_closes_the_connection():
    head, _ = parse(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", ServerLimits())
    assert head.body_length == 0 and head.close_after
    head, _ = parse(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", ServerLimits())
    assert head.body_length == 0 and head.close_after


def test_expect_continue_only_with_a_body():
    head, _ = parse(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    assert head.expect_continue
    head, _ = parse(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n")
    assert not head.expect_continue


def test_serialize_adds_length_date_and_connection():
    data = serialize(Response(201, [("X", "y")], b"abc"), False, True)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201 Unknown\r\nX: y\r\nContent-Length: 3\r\nDate: ")
    assert head.endswith(b"Connection: close") and body == b"abc"
    with pytest.raises(ValueError, match="line break"):
        serialize(Response(200, [("X", "a\r\nb")]), False, False)
