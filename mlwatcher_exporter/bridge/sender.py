"""Send batches of points: rate limits, response classification, retries, dead letters.

How each answer is handled:

=============================================  ====================================
answer                                         action
=============================================  ====================================
2xx, no errors                                 all points accepted
2xx, errors with an ``index``                  those points dead-lettered, counted
                                               by code; the others accepted
2xx, error 1004/2002/2003 without an index     rate limited: retry the whole batch
2xx, another error without an index            whole batch dead-lettered
429                                            retry after ``Retry-After`` (or backoff)
408, 5xx, no response (refused, reset,         retry with capped exponential
timeout)                                       backoff and jitter (``Retry-After``
                                               honoured when present)
400, 413                                       dead-lettered (``bad_request``)
401, 403                                       dead-lettered (``unauthorized``)
other statuses                                 dead-lettered (``client_error``)
=============================================  ====================================
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .client import AnodotClient, Response
from .deadletter import DeadLetter
from .metrics import BridgeMetrics
from .options import SendOptions, resolve
from .ratelimit import RateLimiter
from .retry import Backoff, parse_retry_after

__all__ = ["Sender", "SendResult", "RATE_LIMIT_CODES", "encode_batch"]

logger = logging.getLogger(__name__)

# Error codes Anodot reports, without an index, when an account limit is hit.
RATE_LIMIT_CODES = frozenset({"1004", "2002", "2003"})


def encode_batch(points: Sequence[Dict[str, Any]]) -> bytes:
    """Return the JSON body of a request carrying ``points``."""
    return json.dumps(list(points), separators=(",", ":"), allow_nan=False).encode("utf-8")


@dataclass(frozen=True)
class SendResult:
    """Outcome of one request.

    Attributes
    ----------
    kind : {"ok", "retry", "dead_letter"}
        ``ok``: answered with 2xx (some points may have been refused one by one);
        ``retry``: nothing accepted, send again later; ``dead_letter``: refused for good.
    accepted : int
        Points Anodot accepted.
    rejected : int
        Points refused and dead-lettered: one by one (``ok``) or the whole batch
        (``dead_letter``).
    reason : str
        For ``retry`` one of ``rate_limited``, ``server_error``, ``connection_error``;
        for ``dead_letter`` the dead-letter reason; ``""`` for ``ok``.
    retry_after : float or None
        Seconds the server asked to wait.
    status : int or None
        HTTP status (None without a response).
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
        Limits and retry timing.
    metrics : BridgeMetrics or None, default=None
        Where to count; None creates unregistered metrics.
    dead_letter : DeadLetter or None, default=None
        Where refused points go; None only logs them.
    random_state : None, int or random.Random, default=None
        Seed of the backoff jitter.
    redact : callable, default=None
        Hides the token in texts that are logged or dead-lettered; defaults to the
        client's own when ``client`` is an :class:`AnodotClient`.
    _clock : callable, default=time.time
        Current Unix time (last-success gauge, HTTP-date ``Retry-After``).
    _monotonic : callable, default=time.monotonic
        Clock of the rate limiter.
    """

    def __init__(
        self,
        client: Union[AnodotClient, Callable[[bytes], Response]],
        options: Optional[SendOptions] = None,
        metrics: Optional[BridgeMetrics] = None,
        dead_letter: Optional[DeadLetter] = None,
        random_state: Union[None, int, random.Random] = None,
        redact: Optional[Callable[[str], str]] = None,
        _clock: Callable[[], float] = time.time,
        _monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        options = resolve(options, SendOptions, "options")
        if isinstance(client, AnodotClient):
            self._post: Callable[[bytes], Response] = client.post
            self._redact: Callable[[str], str] = client.redact
        elif callable(client):
            self._post = client
            self._redact = _identity
        else:
            raise TypeError(f"client == {client!r}, must be an AnodotClient or a callable.")
        if redact is not None:
            self._redact = redact
        self.options = options
        self.metrics = metrics if metrics is not None else BridgeMetrics(registry=None)
        self.dead_letter = dead_letter
        self.limiter = RateLimiter(
            options.points_per_second, options.requests_per_minute, options.batch_size, _monotonic
        )
        self.backoff = Backoff(
            options.backoff_initial_seconds,
            options.backoff_max_seconds,
            options.backoff_multiplier,
            options.backoff_jitter,
            random_state,
        )
        self._clock = _clock

    # ------------------------------------------------------------------ one request
    def send_once(
        self, points: Sequence[Dict[str, Any]], body: Optional[bytes] = None
    ) -> SendResult:
        """Send ``points`` in one request (no waiting) and account for the answer.

        Parameters
        ----------
        points : sequence of dict
            At most ``options.batch_size`` points.
        body : bytes, optional
            Their JSON encoding, if already at hand.
        """
        if len(points) > self.options.batch_size:
            raise ValueError(
                f"len(points) == {len(points)}, must be <= batch_size ({self.options.batch_size})."
            )
        if body is None:
            body = encode_batch(points)
        response = self._post(body)
        status = response.status
        if status is None:
            self.metrics.connection_errors.inc()
            logger.warning("anodot: no response: %s", self._redact(str(response.error)))
            return SendResult("retry", reason="connection_error")
        self.metrics.responses.labels(str(status)).inc()
        retry_after = parse_retry_after(response.retry_after, self._clock())
        if retry_after is not None:
            retry_after = min(retry_after, self.options.max_retry_after_seconds)
        if 200 <= status < 300:
            return self._on_success(points, response)
        if status == 429:
            logger.warning("anodot: 429 rate limited (Retry-After %s)", response.retry_after)
            return SendResult("retry", reason="rate_limited", retry_after=retry_after,
                              status=status)
        if status == 408 or status >= 500:
            logger.warning("anodot: HTTP %d, will retry", status)
            return SendResult("retry", reason="server_error", retry_after=retry_after,
                              status=status)
        if status in (401, 403):
            reason = "unauthorized"
            logger.error("anodot: HTTP %d: the token was refused; check token_env/token_file",
                         status)
        elif status in (400, 413):
            reason = "bad_request"
        else:
            reason = "client_error"
        description = self._redact(response.body[:500].decode("utf-8", "replace"))
        logger.error(
            "anodot: HTTP %d (%s): %d points dead-lettered: %s",
            status, reason, len(points), description
        )
        self._dead_letter(points, reason, status, None, description)
        return SendResult("dead_letter", rejected=len(points), reason=reason, status=status)

    def _on_success(self, points: Sequence[Dict[str, Any]], response: Response) -> SendResult:
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
            self._dead_letter(points, "client_error", status, first.get("error"), description)
            return SendResult("dead_letter", rejected=len(points), reason="client_error",
                              status=status)
        for index, (code, description) in sorted(indexed.items()):
            self.metrics.rejected(code)
            self._dead_letter([points[index]], "rejected", status, code, self._redact(description))
        if indexed:
            logger.warning("anodot: %d of %d points refused (codes %s)", len(indexed), len(points),
                           sorted({str(c) for c, _ in indexed.values()}))
        accepted = len(points) - len(indexed)
        self.metrics.points_sent.inc(accepted)
        self.metrics.last_success.set(self._clock())
        return SendResult("ok", accepted=accepted, rejected=len(indexed), status=status)

    def _dead_letter(
        self,
        points: Sequence[Dict[str, Any]],
        reason: str,
        status: Optional[int],
        error: Any,
        description: Optional[str],
    ) -> None:
        self.metrics.points_dead_lettered.labels(reason).inc(len(points))
        if self.dead_letter is None:
            return
        try:
            self.dead_letter.write(points, reason, status, error, description)
        except OSError:
            logger.exception("anodot: could not write the dead-letter file")
            self.metrics.dead_letter_dropped(len(points))

    # ------------------------------------------------------------------ with retries
    def deliver(
        self,
        points: Sequence[Dict[str, Any]],
        body: Optional[bytes] = None,
        wait: Optional[Callable[[float], bool]] = None,
        max_attempts: Optional[int] = None,
    ) -> Optional[SendResult]:
        """Send ``points``, waiting for the rate limits and retrying transient failures.

        Parameters
        ----------
        points : sequence of dict
            One batch.
        body : bytes, optional
            Its JSON encoding.
        wait : callable, default=time.sleep
            ``wait(seconds)`` sleeps and returns False when the caller is stopping.
        max_attempts : int or None, default=None
            Give up after this many requests (None: retry until ``wait`` says stop).

        Returns
        -------
        SendResult or None
            The last result (``kind == "retry"`` if attempts ran out), or None when
            ``wait`` asked to stop before an answer was final.
        """
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts == {max_attempts!r}, must be >= 1 or None.")
        if body is None:
            body = encode_batch(points)
        if wait is None:
            wait = _sleep
        attempt = 0
        while True:
            delay = self.limiter.reserve(len(points))
            if delay > 0 and not wait(delay):
                return None
            result = self.send_once(points, body)
            if result.kind != "retry":
                return result
            attempt += 1
            if max_attempts is not None and attempt >= max_attempts:
                return result
            self.metrics.retries.labels(result.reason).inc()
            if result.retry_after is not None:
                delay = result.retry_after
            else:
                delay = self.backoff.delay(attempt - 1)
            if not wait(delay):
                return None


def _identity(text: str) -> str:
    return text


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return True


def _parse_errors(
    body: bytes, n_points: int
) -> Tuple[Dict[int, Tuple[Any, str]], List[Dict[str, Any]]]:
    """Split the ``errors`` of a 2xx body into per-point ones (by index) and the rest."""
    if not body.strip():
        return {}, []
    try:
        data = json.loads(body)
    except ValueError:
        logger.warning("anodot: 2xx body is not JSON; assuming every point was accepted")
        return {}, []
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return {}, []
    indexed: Dict[int, Tuple[Any, str]] = {}
    unindexed: List[Dict[str, Any]] = []
    for item in errors:
        if not isinstance(item, dict):
            continue
        index = item.get("index")
        try:
            position = int(index) if index is not None and index != "" else None
        except (TypeError, ValueError):
            position = None
        if position is not None and 0 <= position < n_points:
            indexed[position] = (item.get("error"), str(item.get("description", "")))
        else:
            unindexed.append(item)
    return indexed, unindexed
