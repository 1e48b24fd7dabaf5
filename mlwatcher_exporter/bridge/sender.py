"""Deliver batches of points to Anodot's API: HTTP transport, rate limits, retries.

What each Anodot answer leads to (accepted, retried, dead-lettered) is the table of
``docs/anodot.md``, "Errors, retries, rate limits". The token is kept out of every
message, log line and dead letter.
"""

from __future__ import annotations

import dataclasses
import email.utils
import http.client
import json
import logging
import math
import random
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .config import _BASE_URL, SendOptions, check_positive, redact, resolve
from .metrics import BridgeMetrics
from .spool import DeadLetter

__all__ = ["AnodotClient", "Response", "Sender", "SendResult", "Backoff", "TokenBucket",
           "RateLimiter", "parse_retry_after", "encode_batch", "RATE_LIMIT_CODES",
           "METRICS_PATH", "PROTOCOL"]

logger = logging.getLogger(__name__)

METRICS_PATH = "/api/v1/metrics"
PROTOCOL = "anodot20"
# Error codes Anodot reports, without an index, when an account limit is hit.
RATE_LIMIT_CODES = frozenset({"1004", "2002", "2003"})
_Points = Sequence[Dict[str, Any]]


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

    ``base_url`` is the ``http(s)://`` address of the API (``https://app.anodot.com``);
    ``token`` appears only in the request line, never in :attr:`url`, logs or errors;
    ``timeout_seconds`` bounds connecting and reading. One persistent connection is reused
    and reopened after any failure. Network problems never raise: they return a
    :class:`Response` whose ``status`` is None.
    """

    def __init__(self, base_url: str, token: str, timeout_seconds: float = 30.0) -> None:
        _BASE_URL.require("base_url", base_url)
        if not isinstance(token, str) or not token or any(c.isspace() for c in token):
            raise ValueError("token must be a non-empty string without whitespace (value hidden).")
        parts = urllib.parse.urlsplit(base_url)
        self._token = token
        self.timeout_seconds = check_positive("timeout_seconds", timeout_seconds)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._new_connection = lambda: cls(parts.hostname or "", parts.port,
                                           timeout=self.timeout_seconds)
        path = f"{parts.path.rstrip('/')}{METRICS_PATH}?"
        query = urllib.parse.urlencode({"token": token, "protocol": PROTOCOL})
        self._path = path + query
        #: The request address with the token hidden, for logs.
        self.url = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{path}{redact(query)}"
        self._conn: Optional[http.client.HTTPConnection] = None

    def redact(self, text: str) -> str:
        """Return ``text`` with this client's token hidden."""
        return redact(text, self._token)

    def post(self, body: bytes) -> Response:
        """POST ``body`` (a JSON array of points) and return the response."""
        if self._conn is None:
            self._conn = self._new_connection()
        try:
            self._conn.request("POST", self._path, body=body, headers={
                "Content-Type": "application/json", "Content-Length": str(len(body))})
            response = self._conn.getresponse()
            answer = Response(response.status, response.read(), response.getheader("Retry-After"))
            if response.will_close:
                self.close()
            return answer
        except (OSError, http.client.HTTPException) as exc:  # timeouts are OSErrors
            self.close()
            return Response(None, error=self.redact(f"{type(exc).__name__}: {exc}"))

    def close(self) -> None:
        """Close the connection (a later :meth:`post` reopens it)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __repr__(self) -> str:
        return f"AnodotClient({self.url!r})"


def encode_batch(points: _Points) -> bytes:
    """Return the JSON body of a request carrying ``points``."""
    return json.dumps(list(points), separators=(",", ":"), allow_nan=False).encode("utf-8")


class Backoff:
    """Capped exponential backoff with jitter, timed by the ``backoff_*`` of SendOptions
    (``overrides`` replace some); ``random_state`` seeds the jitter. The delay ``d`` of
    :class:`SendOptions` is drawn uniformly from ``[d * (1 - backoff_jitter), d]``.

    Examples
    --------
    >>> b = Backoff(backoff_initial_seconds=1, backoff_max_seconds=8, backoff_jitter=0)
    >>> [b.delay(a) for a in range(5)]
    [1.0, 2.0, 4.0, 8.0, 8.0]
    """

    def __init__(self, options: Optional[SendOptions] = None,
                 random_state: Union[None, int, random.Random] = None, **overrides: Any) -> None:
        self.options = dataclasses.replace(resolve(options, SendOptions, "options"), **overrides)
        self._random = (random_state if isinstance(random_state, random.Random)
                        else random.Random(random_state))

    def delay(self, attempt: int) -> float:
        """Return the seconds to wait before retry number ``attempt`` (0 for the first)."""
        if attempt < 0:
            raise ValueError(f"attempt == {attempt!r}, must be >= 0.")
        o = self.options
        try:  # the cap is reached long before the exponent could overflow
            growth = o.backoff_multiplier ** min(attempt, 1000)
            base = float(min(o.backoff_max_seconds, o.backoff_initial_seconds * growth))
        except OverflowError:
            base = float(o.backoff_max_seconds)
        return base * (1.0 - o.backoff_jitter * self._random.random())


def parse_retry_after(value: Optional[str], now: float) -> Optional[float]:
    """Return the seconds a ``Retry-After`` header (seconds or an HTTP date) asks to wait,
    None when it is absent or invalid; ``now`` is the current Unix time.

    Examples
    --------
    >>> parse_retry_after("3", now=0.0), parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", 4.0)
    (3.0, 6.0)
    """
    value = (value or "").strip()
    try:  # an empty value is neither
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError, AttributeError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


class TokenBucket:
    """``rate`` tokens a second, up to ``capacity`` (the largest burst); callers reserve
    tokens ahead and are told how long to wait.

    Examples
    --------
    >>> bucket = TokenBucket(rate=10.0, capacity=10.0, _clock=lambda: 0.0)
    >>> bucket.reserve(10), bucket.reserve(5)
    (0.0, 0.5)
    """

    def __init__(self, rate: float, capacity: float,
                 _clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = check_positive("rate", rate)
        self.capacity = self._tokens = check_positive("capacity", capacity)
        self._clock = _clock
        self._last = _clock()
        self._lock = threading.Lock()

    def reserve(self, tokens: float) -> float:
        """Take ``tokens`` now (the balance may go negative) and return the seconds to wait."""
        if tokens < 0:
            raise ValueError(f"tokens == {tokens!r}, must be >= 0.")
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= tokens
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class RateLimiter:
    """Both limits of an Anodot account: points per second (a bucket holding at least one
    batch of ``batch_size`` points) and requests per minute."""

    def __init__(self, points_per_second: float, requests_per_minute: float,
                 batch_size: int = 1000, _clock: Callable[[], float] = time.monotonic) -> None:
        self.points = TokenBucket(points_per_second, max(points_per_second, batch_size), _clock)
        per_second = requests_per_minute / 60.0
        self.requests = TokenBucket(per_second, max(1.0, per_second), _clock)

    def reserve(self, points: int) -> float:
        """Reserve one request of ``points`` points; return the seconds to wait before sending."""
        return max(self.points.reserve(points), self.requests.reserve(1))


@dataclass(frozen=True)
class SendResult:
    """Outcome of one request: ``kind`` ``ok`` (2xx; some points may have been refused one
    by one), ``retry`` (nothing accepted) or ``dead_letter`` (refused for good); the points
    ``accepted`` and ``rejected`` (dead-lettered); the retry or dead-letter ``reason``; the
    ``retry_after`` seconds the server asked for; the HTTP ``status`` (None: no response).
    """

    kind: str
    accepted: int = 0
    rejected: int = 0
    reason: str = ""
    retry_after: Optional[float] = None
    status: Optional[int] = None


class Sender:
    """Send batches of points to Anodot with rate limiting and retries.

    Parameters
    ----------
    client : AnodotClient or callable
        Transport; any callable ``body -> Response`` works (a test seam).
    options : SendOptions, default=SendOptions()
        Limits and retry timing; ``random_state`` seeds the backoff jitter.
    metrics, dead_letter : BridgeMetrics or DeadLetter or None, default=None
        Where to count (None: unregistered metrics) and where refused points go (None:
        they are only logged and counted).
    redact : callable, default=the client's own
        Hides the token in logged or dead-lettered texts.
    _clock, _monotonic : callable, default=time.time, time.monotonic
        Unix time (last-success gauge, HTTP-date ``Retry-After``); rate limiter clock.
    """

    def __init__(
        self, client: Union[AnodotClient, Callable[[bytes], Response]],
        options: Optional[SendOptions] = None, metrics: Optional[BridgeMetrics] = None,
        dead_letter: Optional[DeadLetter] = None,
        random_state: Union[None, int, random.Random] = None,
        redact: Optional[Callable[[str], str]] = None, _clock: Callable[[], float] = time.time,
        _monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options = resolve(options, SendOptions, "options")
        if isinstance(client, AnodotClient):
            redact = redact or client.redact
            client = client.post
        elif not callable(client):
            raise TypeError(f"client == {client!r}, must be an AnodotClient or a callable.")
        self._post: Callable[[bytes], Response] = client
        self._redact: Callable[[str], str] = redact or (lambda text: text)
        self.metrics = metrics if metrics is not None else BridgeMetrics(registry=None)
        self.dead_letter = dead_letter
        self.limiter = RateLimiter(options.points_per_second, options.requests_per_minute,
                                   options.batch_size, _monotonic)
        self.backoff = Backoff(options, random_state)
        self._clock = _clock

    def send_once(self, points: _Points, body: Optional[bytes] = None) -> SendResult:
        """Send ``points`` (at most ``batch_size``; ``body`` their JSON, if at hand) in one
        request, without waiting, and account for the answer."""
        size = self.options.batch_size
        if len(points) > size:
            raise ValueError(f"len(points) == {len(points)}, must be <= batch_size ({size}).")
        response = self._post(encode_batch(points) if body is None else body)
        status = response.status
        if status is None:
            self.metrics.connection_errors.inc()
            logger.warning("anodot: no response: %s", self._redact(str(response.error)))
            return SendResult("retry", reason="connection_error")
        self.metrics.responses.labels(str(status)).inc()
        if 200 <= status < 300:
            return self._on_success(points, response)
        if status == 429 or status == 408 or status >= 500:
            reason = "rate_limited" if status == 429 else "server_error"
            logger.warning("anodot: HTTP %d (%s, Retry-After %s), will retry", status, reason,
                           response.retry_after)
            retry_after = parse_retry_after(response.retry_after, self._clock())
            if retry_after is not None:
                retry_after = min(retry_after, self.options.max_retry_after_seconds)
            return SendResult("retry", reason=reason, retry_after=retry_after, status=status)
        if status in (401, 403):
            reason = "unauthorized"
            logger.error("anodot: HTTP %d: the token was refused; check token_env/token_file",
                         status)
        else:
            reason = "bad_request" if status in (400, 413) else "client_error"
        description = self._redact(response.body[:500].decode("utf-8", "replace"))
        logger.error("anodot: HTTP %d (%s): %d points dead-lettered: %s",
                     status, reason, len(points), description)
        return self._dead_letter(points, reason, status, None, description)

    def _on_success(self, points: _Points, response: Response) -> SendResult:
        indexed, unindexed = _parse_errors(response.body, len(points))
        status = response.status
        if any(str(e.get("error")) in RATE_LIMIT_CODES for e in unindexed):
            logger.warning("anodot: account limit reached (%s), will retry",
                           ", ".join(str(e.get("error")) for e in unindexed))
            return SendResult("retry", reason="rate_limited", status=status)
        if unindexed:
            first = unindexed[0]
            description = self._redact(str(first.get("description", "")))
            logger.error("anodot: error %s without index: %s; %d points dead-lettered",
                         first.get("error"), description, len(points))
            return self._dead_letter(points, "client_error", status, first.get("error"),
                                     description)
        for index, (code, description) in sorted(indexed.items()):
            self.metrics.rejected(code)
            self._dead_letter([points[index]], "rejected", status, code, self._redact(description))
        if indexed:
            logger.warning("anodot: %d of %d points refused (codes %s)", len(indexed), len(points),
                           sorted({str(c) for c, _ in indexed.values()}))
        accepted = len(points) - len(indexed)
        self.metrics.points_sent.inc(accepted)
        self.metrics.last_success_timestamp_seconds.set(self._clock())
        return SendResult("ok", accepted=accepted, rejected=len(indexed), status=status)

    def _dead_letter(self, points: _Points, reason: str, status: Optional[int], error: Any,
                     description: Optional[str]) -> SendResult:
        """Dead-letter ``points``; the result of a request all of whose points were refused."""
        self.metrics.points_dead_lettered.labels(reason).inc(len(points))
        if self.dead_letter is not None:
            try:
                self.dead_letter.write(points, reason, status, error, description)
            except OSError as exc:
                logger.error("anodot: could not write the dead-letter file %s: %s",
                             self.dead_letter.path, exc)
                self.metrics.dead_letter_dropped(len(points))
        return SendResult("dead_letter", rejected=len(points), reason=reason, status=status)

    def deliver(self, points: _Points, body: Optional[bytes] = None,
                wait: Optional[Callable[[float], bool]] = None,
                max_attempts: Optional[int] = None) -> Optional[SendResult]:
        """Send one batch, waiting for the rate limits and retrying transient failures.

        ``body`` is the JSON of ``points``, if at hand. ``wait(seconds)`` (default: sleep)
        returns False when the caller is stopping; ``max_attempts`` requests at most (None:
        retry until ``wait`` says stop). Returns the last result (``kind == "retry"`` if
        attempts ran out), or None when ``wait`` asked to stop before an answer was final.
        """
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts == {max_attempts!r}, must be >= 1 or None.")
        body = encode_batch(points) if body is None else body
        wait = wait or _sleep
        attempt = 0
        while True:
            delay = self.limiter.reserve(len(points))
            if delay > 0 and not wait(delay):
                return None
            result = self.send_once(points, body)
            attempt += 1
            if result.kind != "retry" or (max_attempts is not None and attempt >= max_attempts):
                return result
            self.metrics.retries.labels(result.reason).inc()
            delay = self.backoff.delay(attempt - 1) if result.retry_after is None \
                else result.retry_after
            if not wait(delay):
                return None


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return True


def _parse_errors(body: bytes, n_points: int) -> Tuple[Dict[int, Tuple[Any, str]], List[Dict]]:
    """Split the ``errors`` of a 2xx body into per-point ones (by index) and the rest."""
    try:
        data = json.loads(body) if body.strip() else {}
    except ValueError:
        logger.warning("anodot: 2xx body is not JSON; assuming every point was accepted")
        data = {}
    errors = data.get("errors") if isinstance(data, dict) else None
    indexed: Dict[int, Tuple[Any, str]] = {}
    unindexed: List[Dict[str, Any]] = []
    for item in errors if isinstance(errors, list) else []:
        if not isinstance(item, dict):
            continue
        try:
            position = int(item["index"]) if item.get("index") not in (None, "") else -1
        except (TypeError, ValueError):
            position = -1
        if 0 <= position < n_points:
            indexed[position] = (item.get("error"), str(item.get("description", "")))
        else:
            unindexed.append(item)
    return indexed, unindexed
