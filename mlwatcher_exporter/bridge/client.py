"""HTTP transport to Anodot's metrics API, with the token kept out of every message."""

from __future__ import annotations

import http.client
import urllib.parse
from dataclasses import dataclass
from typing import Optional, Type

from .options import _Spec, check_positive, is_http_url, redact

__all__ = ["AnodotClient", "Response", "redact", "is_http_url", "METRICS_PATH", "PROTOCOL"]

METRICS_PATH = "/api/v1/metrics"
PROTOCOL = "anodot20"
_BASE_URL = _Spec("url", bare=True)


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
        problem = _BASE_URL.check("base_url", base_url)
        if problem is not None:
            raise problem
        if not isinstance(token, str) or not token or any(c.isspace() for c in token):
            raise ValueError("token must be a non-empty string without whitespace (value hidden).")
        parts = urllib.parse.urlsplit(base_url)
        self._scheme = parts.scheme
        self._host = parts.hostname or ""  # never empty: checked above
        self._port = parts.port
        self._token = token
        self.timeout_seconds = check_positive("timeout_seconds", timeout_seconds)
        prefix = parts.path.rstrip("/")
        query = urllib.parse.urlencode({"token": token, "protocol": PROTOCOL})
        self._path = f"{prefix}{METRICS_PATH}?{query}"
        netloc = parts.netloc.rsplit("@", 1)[-1]
        #: The request address with the token hidden, for logs.
        self.url = (f"{parts.scheme}://{netloc}{prefix}{METRICS_PATH}"
                    f"?token=REDACTED&protocol={PROTOCOL}")
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
