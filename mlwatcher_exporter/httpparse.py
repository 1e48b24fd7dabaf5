"""HTTP/1.x framing: request heads parsed from a buffer, bodies measured, answers written.

Bodies are framed by ``Content-Length`` only. ``Transfer-Encoding`` (chunked uploads) is
refused with 411 on a server that reads bodies: every client this server is meant for
(the package's own client, curl, requests, urllib) sends a length for a body it holds in
memory, and refusing keeps one simple, bounded way in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import formatdate
from typing import Dict, Optional, Tuple, Union

from .httptypes import Request, Response, ServerLimits, reason_phrase

__all__ = ["BadRequest", "Head", "parse_head", "serialize", "error_response"]

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VERSION = re.compile(rb"^HTTP/(\d)\.(\d)$")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_MAX_HEADERS = 100


class BadRequest(Exception):
    """A request answered with `status` and closed; `headers` go with the answer."""

    def __init__(self, status: int, message: str, headers: Tuple[Tuple[str, str], ...] = ()
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


@dataclass
class Head:
    """A parsed request head and how its connection goes on."""

    request: Request
    close_after: bool
    body_length: int
    expect_continue: bool


def parse_head(buf: bytearray, limits: ServerLimits, peer: Tuple, scheme: str,
               server: Tuple) -> Optional[Head]:
    """The request head at the start of `buf` (removed from it), None while incomplete.

    Raises
    ------
    BadRequest
        For a request to refuse: malformed (400), too large (414, 431, 413), of another
        protocol version (505) or framed by Transfer-Encoding (411).
    """
    limit = limits.max_request_bytes
    while buf[:2] == b"\r\n" or buf[:1] == b"\n":  # RFC 9112 2.2: skip empty lines
        del buf[:2 if buf[:2] == b"\r\n" else 1]
    if not buf:
        return None
    line_end = buf.find(b"\n")
    if line_end < 0:
        if len(buf) > limit:
            raise BadRequest(414, "request line too long")
        return None
    parts = bytes(buf[:line_end]).rstrip(b"\r").split(b" ")
    if len(parts) != 3:
        raise BadRequest(400, "malformed request line (HTTP/1.0 or 1.1 expected)")
    method, target, version = parts
    match = _VERSION.match(version)
    if match is None or not _TOKEN.match(method) or not target:
        raise BadRequest(400, "malformed request line")
    if match.group(1) != b"1":
        raise BadRequest(505, "only HTTP/1.0 and HTTP/1.1 are served")
    end = _HEAD_END.search(buf, line_end - 1 if line_end else 0)
    if end is None:
        if len(buf) > limit:
            raise BadRequest(431, "request head too large")
        return None
    if end.start() > limit:
        raise BadRequest(431, "request head too large")
    head = bytes(buf[line_end + 1:end.start()])
    del buf[:end.end()]
    headers = _headers(head)
    request = Request(method.decode("ascii"), target.decode("latin-1"),
                      version.decode("ascii"), headers, peer, scheme, server)
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if version == b"HTTP/1.1":
        close_after = "close" in tokens
    else:
        close_after = "keep-alive" not in tokens
    length, close_after = _body_length(headers, limits, close_after)
    expect = headers.get("expect", "").strip().lower() == "100-continue" and length > 0
    return Head(request, close_after, length, expect)


def _headers(head: bytes) -> Dict[str, str]:
    headers: Dict[str, str] = {}
    lines = head.split(b"\n") if head else []
    if len(lines) > _MAX_HEADERS:
        raise BadRequest(431, "too many header fields")
    for raw in lines:
        raw = raw.rstrip(b"\r")
        name, colon, value = raw.partition(b":")
        if not colon or not _TOKEN.match(name):
            raise BadRequest(400, "malformed header field")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _body_length(headers: Dict[str, str], limits: ServerLimits, close_after: bool
                 ) -> Tuple[int, bool]:
    """Bytes of body to read, and whether the connection closes after the answer."""
    length = headers.get("content-length", "0").strip()
    if limits.max_body_bytes == 0:
        # Bodies are not read: a request that has one is answered, then closed.
        if "transfer-encoding" in headers:
            return 0, True
        if not length.isdigit():
            raise BadRequest(400, "malformed Content-Length")
        return 0, close_after or int(length) > 0
    if "transfer-encoding" in headers:
        raise BadRequest(411, "Transfer-Encoding is not accepted: send the body with a "
                         "Content-Length")
    if not length.isdigit() or len(length) > 18:
        raise BadRequest(400, "malformed Content-Length")
    size = int(length)
    if size > limits.max_body_bytes:
        raise BadRequest(413, f"body of {size} bytes, the limit is {limits.max_body_bytes}")
    return size, close_after


def serialize(response: Response, head_only: bool, close: bool,
              version: Union[str, bytes] = "HTTP/1.1") -> bytes:
    """The bytes of `response`, with Content-Length, Date and Connection added."""
    lines = [f"HTTP/1.1 {response.status} {reason_phrase(response.status)}"]
    has_length = False
    for name, value in response.headers:
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} contains a line break")
        has_length = has_length or name.lower() == "content-length"
        lines.append(f"{name}: {value}")
    if not has_length:
        lines.append(f"Content-Length: {len(response.body)}")
    lines.append(f"Date: {formatdate(usegmt=True)}")
    if close:
        lines.append("Connection: close")
    elif version == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


def error_response(status: int, message: str, headers: Tuple[Tuple[str, str], ...] = ()
                   ) -> bytes:
    """A plain-text error answer that closes its connection."""
    body = f"{reason_phrase(status)}: {message}\n".encode()
    response = Response(status, [("Content-Type", "text/plain; charset=utf-8"), *headers],
                        body)
    return serialize(response, False, True)
