"""HTTP transport to Anodot's metrics API, with the token kept out of every message."""

from __future__ import annotations

import http.client
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, Optional, Type

from .options import check_positive

__all__ = ["AnodotClient", "Response", "redact", "is_http_url", "METRICS_PATH", "PROTOCOL"]

METRICS_PATH = "/api/v1/metrics"
PROTOCOL = "anodot20"
_TOKEN_QUERY = re.compile(r"(token=)[^&\s]*", re.IGNORECASE)
REDACTED = "REDACTED"


def redact(text: str, token: Optional[str] = None) -> str:
    """Return ``text`` with every ``token=...`` query value, and ``token`` itself, hidden.

    Examples
    --------
    >>> redact("POST https://host/api/v1/metrics?token=s3cr3t&protocol=anodot20")
    'POST https://host/api/v1/metrics?token=REDACTED&protocol=anodot20'
    """
    text = _TOKEN_QUERY.sub(r"\1" + REDACTED, text)
    if token:
        text = text.replace(token, REDACTED)
        quoted = urllib.parse.quote(token, safe="")
        if quoted != token:
            text = text.replace(quoted, REDACTED)
    return text


def is_http_url(url: Any) -> bool:
    """Return True if ``url`` is an ``http://`` or ``https://`` address with a host and valid port.

    Examples
    --------
    >>> is_http_url("https://app.anodot.com"), is_http_url("ftp://h"), is_http_url("http://h:x")
    (True, False, False)
    """
    if not isinstance(url, str):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # raises ValueError when not a number in 0-65535
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


@dataclass(frozen=True)
class Response:
    """What one POST got back: the HTTP ``status`` (None when no response arrived:
    connection error, timeout; then ``error`` says why, token redacted), the ``body``
    and the ``Retry-After`` header."""

    status: Optional[int]
    body: bytes = b""
    retry_after: Optional[str] = None
    error: Optional[str] = None


class AnodotClient:
    """POST JSON bodies to ``{base_url}/api/v1/metrics?token=...&protocol=anodot20``.

    One persistent connection is reused and reopened after any failure. The client
    never raises for network problems: it returns a :class:`Response` whose ``status``
    is None.

    Parameters
    ----------
    base_url : str
        ``http://`` or ``https://`` address of the Anodot API, e.g. ``https://app.anodot.com``.
    token : str
        Data collection token. It appears only in the request line, never in
        :attr:`url`, logs or errors.
    timeout_seconds : float, default=30.0
        Connect and read timeout.
    """

    def __init__(self, base_url: str, token: str, timeout_seconds: float = 30.0) -> None:
        if not isinstance(base_url, str):
            raise TypeError(f"base_url == {base_url!r}, must be a string.")
        parts = urllib.parse.urlsplit(base_url) if is_http_url(base_url) else None
        if parts is None or parts.query or parts.fragment:
            raise ValueError(f"base_url == {redact(base_url)!r}, must be an http:// or https:// "
                             "address without a query or fragment.")
        if not isinstance(token, str) or not token or any(c.isspace() for c in token):
            raise ValueError("token must be a non-empty string without whitespace (value hidden).")
        self._scheme = parts.scheme
        self._host = parts.hostname or ""  # never empty: is_http_url() checked it
        self._port = parts.port
        self._token = token
        self.timeout_seconds = check_positive("timeout_seconds", timeout_seconds)
        prefix = parts.path.rstrip("/")
        query = urllib.parse.urlencode({"token": token, "protocol": PROTOCOL})
        self._path = f"{prefix}{METRICS_PATH}?{query}"
        netloc = parts.netloc.rsplit("@", 1)[-1]
        #: The request address with the token hidden, for logs.
        self.url = (f"{parts.scheme}://{netloc}{prefix}{METRICS_PATH}"
                    f"?token={REDACTED}&protocol={PROTOCOL}")
        self._conn: Optional[http.client.HTTPConnection] = None

    def redact(self, text: str) -> str:
        """Return ``text`` with this client's token hidden."""
        return redact(text, self._token)

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            https = self._scheme == "https"
            cls: Type[http.client.HTTPConnection] = (
                http.client.HTTPSConnection if https else http.client.HTTPConnection)
            self._conn = cls(self._host, self._port, timeout=self.timeout_seconds)
        return self._conn

    def post(self, body: bytes) -> Response:
        """POST ``body`` (a JSON array of points) and return the response."""
        conn = self._connection()
        try:
            conn.request("POST", self._path, body=body, headers={
                "Content-Type": "application/json", "Content-Length": str(len(body))})
            response = conn.getresponse()
            answer = Response(response.status, response.read(), response.getheader("Retry-After"))
            if response.will_close:
                self.close()
            return answer
        except (OSError, http.client.HTTPException) as exc:  # timeouts are OSErrors
            self.close()
            return Response(None, error=self.redact(f"{type(exc).__name__}: {exc}"))

    def close(self) -> None:
        """Close the connection (a later :meth:`post` reopens it)."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def __repr__(self) -> str:
        return f"AnodotClient({self.url!r})"
