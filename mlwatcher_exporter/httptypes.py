"""What the HTTP server and its handlers exchange: limits, requests, responses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["ServerLimits", "Request", "Response", "Handler", "reason_phrase", "format_host",
           "peer_sans"]

_REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    411: "Length Required", 413: "Content Too Large", 414: "URI Too Long",
    415: "Unsupported Media Type", 422: "Unprocessable Content",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}


def reason_phrase(status: int) -> str:
    """The reason phrase of an HTTP status code."""
    return _REASONS.get(status, "Unknown")


@dataclass(frozen=True)
class ServerLimits:
    """Timeouts and bounds of :class:`~mlwatcher_exporter.httpserver.HTTPServer`.

    Parameters
    ----------
    request_timeout : float, default=10.0
        Seconds a client has to send a whole request head, from its connection (or from
        the first byte after an idle keep-alive pause), TLS handshake included.
    idle_timeout : float, default=90.0
        Seconds a keep-alive connection may wait between requests (longer than the usual
        scrape interval of 60 s, so Prometheus keeps its connection).
    write_timeout : float, default=30.0
        Seconds a client has to read a whole response.
    max_connections : int, default=128
        Connections held at once; beyond it the least recently active one that is not
        being answered is closed.
    max_request_bytes : int, default=8192
        Size of a request head (request line and headers).
    workers : int, default=2
        Threads that answer complete requests.
    max_body_bytes : int, default=0
        Largest request body read (``Content-Length``); a larger one is answered 413.
        0: bodies are not read at all, a request that has one is answered and its
        connection closed (the ``/metrics`` server needs none).
    body_timeout : float, default=30.0
        Seconds a client has to send a whole body once its head is in; then 408.
    max_pending_body_bytes : int, default=67108864
        Body bytes held at once by requests being read or answered (64 MiB); a request
        whose body would exceed it is answered 503 with ``Retry-After``.
    """

    request_timeout: float = 10.0
    idle_timeout: float = 90.0
    write_timeout: float = 30.0
    max_connections: int = 128
    max_request_bytes: int = 8192
    workers: int = 2
    max_body_bytes: int = 0
    body_timeout: float = 30.0
    max_pending_body_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        for name in ("request_timeout", "idle_timeout", "write_timeout", "body_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} == {value!r}, must be a number of seconds")
            if not 0 < value <= 86400:
                raise ValueError(f"{name} == {value!r}, must be > 0 and <= 86400 seconds")
        for name, low, high in (("max_connections", 1, 65536),
                                ("max_request_bytes", 256, 1 << 20), ("workers", 1, 64),
                                ("max_body_bytes", 0, 1 << 30),
                                ("max_pending_body_bytes", 1, 1 << 34)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} == {value!r}, must be an int")
            if not low <= value <= high:
                raise ValueError(f"{name} == {value!r}, must be >= {low} and <= {high}")
        if self.max_pending_body_bytes < self.max_body_bytes:
            raise ValueError(f"max_pending_body_bytes == {self.max_pending_body_bytes}, must "
                             f"be >= max_body_bytes ({self.max_body_bytes})")


@dataclass
class Request:
    """A parsed request. Header names are lower case; repeated headers are joined."""

    method: str
    target: str
    version: str
    headers: Dict[str, str]
    peer: Tuple
    scheme: str = "http"
    server: Tuple = ()
    peer_certificate: Optional[dict] = None
    body: bytes = b""


@dataclass
class Response:
    """What a handler answers; the server adds Content-Length, Date and Connection."""

    status: int
    headers: List[Tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


Handler = Callable[[Request], Response]


def format_host(host: str) -> str:
    """`host` as it stands in a URL: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host


def peer_sans(certificate: Optional[dict]) -> Sequence[str]:
    """The subject alternative names of a peer certificate from ``getpeercert()``."""
    if not certificate:
        return ()
    return tuple(str(value) for _, value in certificate.get("subjectAltName", ()))
