"""Observe from another process: batches posted to ``mlwatcher-exporter serve``.

:class:`RemoteMonitor` has the decorator of :class:`~.monitor.ModelMonitor`
(``watch``, ``wrap``, ``labels``) with the same promise: the model's call returns its
own value and exceptions, and never waits for the network. The model's thread only
copies its batch into a bounded buffer; a background thread coalesces buffered batches
into requests, posts them with retries and capped exponential backoff, and counts every
row it had to drop (``mlwatcher_client_dropped_rows_total``) instead of blocking or
growing without bound.
"""

from __future__ import annotations

import atexit
import collections
import http.client
import logging
import random
import ssl
import threading
import time
import weakref
from typing import Any, Callable, Deque, List, Optional, Sequence
from urllib.parse import quote, urlsplit

from prometheus_client import REGISTRY, CollectorRegistry

from ._version import __version__
from .clientcodec import Item, coalescable, copy_batch, encode
from .clientmetrics import DROP_REASONS, ClientCounts, register_client, unregister_client
from .decorator import WatchCount, WatchMixin, new_labels_var
from .ratelog import RateLimitedLogger

__all__ = ["RemoteMonitor", "DROP_REASONS"]

logger = logging.getLogger("mlwatcher_exporter")

_RETRY_STATUSES = (408, 429, 502, 503, 504)


def _positive(name: str, value: Any, kind: type = float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise TypeError(f"{name} == {value!r}, must be {'a number' if kind is float else 'an int'}")
    if not value > 0:
        raise ValueError(f"{name} == {value!r}, must be > 0")


class RemoteMonitor(WatchMixin):
    """A monitor whose batches are posted to a ``serve`` process.

    Parameters
    ----------
    url : str
        The server's base URL, ``http://host:port`` (or ``https://``, optionally with
        a path prefix).
    model : str, default="default"
        A model configured on the server (an unknown one is answered 404: its rows are
        dropped as ``rejected``).
    token : str, optional
        Bearer token of the server; prefer `token_file` or an environment variable
        read by your own code to writing it in source.
    token_file : str, optional
        File holding the token.
    registry : CollectorRegistry or None, default=prometheus_client.REGISTRY
        Where the client's own counters are published.
    max_buffered_rows : int, default=100000
        Rows held while the server is slow or down; beyond, the oldest are dropped.
    max_batch_rows : int, default=10000
        Most rows in one request.
    timeout : float, default=10.0
        Seconds per request.
    max_attempts : int, default=5
        Attempts for a request answered with a server error (5xx other than 502, 503,
        504); refused connections and 502/503/504/429 are retried as long as the buffer
        holds.
    max_backoff : float, default=5.0
        Longest pause between retries (exponential from 50 ms, with jitter).
    ssl_context : ssl.SSLContext, optional
        For ``https://`` URLs (e.g. ``ssl.create_default_context(cafile=...)``).
    flush_at_exit : float, default=2.0
        Seconds spent at interpreter exit sending what is buffered (0: none).
    """

    def __init__(self, url: str, model: str = "default", *, token: Optional[str] = None,
                 token_file: Optional[str] = None,
                 registry: Optional[CollectorRegistry] = REGISTRY,
                 max_buffered_rows: int = 100_000, max_batch_rows: int = 10_000,
                 timeout: float = 10.0, max_attempts: int = 5, max_backoff: float = 5.0,
                 ssl_context: Optional[ssl.SSLContext] = None, flush_at_exit: float = 2.0,
                 _sleep: Callable[[float], Any] = time.sleep) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url == {url!r}, must be a str such as 'http://127.0.0.1:10150'")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url == {url!r}, must be http://host:port or https://host:port")
        if not isinstance(model, str) or not model.strip():
            raise TypeError(f"model == {model!r}, must be a non-empty string")
        for name, value in (("max_buffered_rows", max_buffered_rows),
                            ("max_batch_rows", max_batch_rows), ("max_attempts", max_attempts)):
            _positive(name, value, int)
        for name, seconds in (("timeout", timeout), ("max_backoff", max_backoff)):
            _positive(name, seconds)
        if token_file is not None:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        self.url = url.rstrip("/")
        self.model = model
        self.registry = registry
        self.max_buffered_rows = max_buffered_rows
        self.max_batch_rows = max_batch_rows
        self.timeout: float = float(timeout)
        self.max_attempts = max_attempts
        self.max_backoff = float(max_backoff)
        self._parts = parts
        self._path = f"{parts.path.rstrip('/')}/api/v1/models/{quote(model, safe='')}/observations"
        self._headers = {"User-Agent": f"mlwatcher-exporter/{__version__}"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._ssl = ssl_context
        self._sleep = _sleep
        self._labels_var = new_labels_var(model)
        self.watchers = WatchCount()
        self._log = RateLimitedLogger(logger)
        self.counts = ClientCounts(model)
        self._buffer: Deque[Item] = collections.deque()
        self._cond = threading.Condition()
        self._inflight = 0
        self._closing = False
        self._thread: Optional[threading.Thread] = None
        self._conn: Optional[http.client.HTTPConnection] = None
        if registry is not None:
            register_client(registry, self.counts)
        if flush_at_exit > 0:
            atexit.register(_close_at_exit, weakref.ref(self), float(flush_at_exit))

    # ------------------------------------------------------------------ the model's side
    def observe_quietly(self, proba: Any, features: Any = None, labels: Any = None,
                        threshold: Optional[float] = None, ids: Any = None) -> bool:
        """Copy a batch into the buffer; never raise, never wait for the network.

        `threshold` is accepted for :class:`~.agent.MonitoringAgent` and unused: the
        server's configured threshold applies. `ids` (one string or integer per row)
        travel with the batch, for labels the server joins later. Returns whether the
        batch was buffered.
        """
        try:
            item = copy_batch(proba, features, labels, ids)
        except Exception as error:  # noqa: BLE001 - never hurt the model
            self.counts.drop("invalid", _rows(proba))
            self._log.warning("invalid", f"mlwatcher: model {self.model!r}: batch not sent "
                              f"({error})")
            return False
        if item.rows == 0:
            return True
        with self._cond:
            if self._closing:
                self.counts.drop("closed", item.rows)
                return False
            if item.rows > self.max_buffered_rows:
                self.counts.drop("buffer_full", item.rows)
                return False
            while self.counts.buffered_rows + item.rows > self.max_buffered_rows:
                oldest = self._buffer.popleft()
                self.counts.buffered(-oldest.rows)
                self.counts.drop("buffer_full", oldest.rows)
            self._buffer.append(item)
            self.counts.buffered(item.rows)
            self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name=f"mlwatcher-client-{self.model}")
                self._thread.start()
        return True

    def observe_common(self, proba: Any, features: Any, labels: Any) -> bool:
        """Never taken: every batch goes through :meth:`observe_quietly` (a copy)."""
        return False

    def observe(self, proba: Any, features: Any = None, labels: Any = None,
                ids: Any = None) -> None:
        """Buffer one batch to send (the server validates it; see :meth:`flush`)."""
        self.observe_quietly(proba, features, labels, ids=ids)

    def adopt_classes(self, classes: Sequence[Any]) -> None:
        """Accepted for :meth:`wrap`; the server's configuration names the classes."""

    # ------------------------------------------------------------------ lifecycle
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every buffered row was sent or dropped; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._buffer or self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Send what is buffered (for up to `timeout` seconds), drop the rest, stop."""
        self.flush(timeout)
        with self._cond:
            self._closing = True
            while self._buffer:
                item = self._buffer.popleft()
                self.counts.buffered(-item.rows)
                self.counts.drop("closed", item.rows)
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.timeout + 1)
        if self.registry is not None:
            unregister_client(self.registry, self.counts)
            self.registry = None

    def __enter__(self) -> "RemoteMonitor":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteMonitor(url={self.url!r}, model={self.model!r})"

    # ------------------------------------------------------------------ the sender
    def _take(self) -> Optional[List[Item]]:
        with self._cond:
            while not self._buffer:
                if self._closing:
                    return None
                self._cond.wait(1.0)
            items = [self._buffer.popleft()]
            rows = items[0].rows
            while self._buffer and rows + self._buffer[0].rows <= self.max_batch_rows and \
                    coalescable(items[0], self._buffer[0]):
                rows += self._buffer[0].rows
                items.append(self._buffer.popleft())
            self.counts.buffered(-rows)
            self._inflight = rows
            return items

    def _run(self) -> None:
        while True:
            items = self._take()
            if items is None:
                break
            try:
                self._deliver(items)
            except Exception:  # noqa: BLE001 - the sender never dies
                self.counts.drop("invalid", sum(i.rows for i in items))
                self._log.warning("sender", f"mlwatcher: model {self.model!r}: sending "
                                  "failed", exc_info=True)
            with self._cond:
                self._inflight = 0
                self._cond.notify_all()
        self._disconnect()

    def _deliver(self, items: List[Item]) -> None:
        rows = sum(i.rows for i in items)
        body, content_type = encode(items)
        status, text = self._post_with_retries(body, content_type, rows)
        if status == 200:
            self.counts.sent(rows)
        elif status in (400, 404, 413, 415, 422) and len(items) > 1:
            for item in items:  # find the bad batch; send the others
                self._deliver([item])
        elif status is not None:
            reason = "rejected" if status < 500 else "server_error"
            self.counts.drop(reason, rows)
            self._log.warning(f"status{status}", f"mlwatcher: model {self.model!r}: "
                              f"{rows} rows refused by {self.url} ({status}: {text[:300]})")

    def _post_with_retries(self, body: bytes, content_type: str, rows: int
                           ) -> "tuple[Optional[int], str]":
        attempts, pause = 0, 0.05
        while True:
            try:
                status, text = self._post(body, content_type)
            except (OSError, http.client.HTTPException) as error:
                self._disconnect()
                status, text = None, str(error)
            if status is not None and status not in _RETRY_STATUSES and status < 500:
                return status, text
            if status is not None and status not in _RETRY_STATUSES:
                attempts += 1
                if attempts >= self.max_attempts:
                    return status, text
            with self._cond:
                if self._closing:
                    self.counts.drop("closed", rows)
                    return None, "closed"
            self.counts.retry()
            self._log.warning("retry", f"mlwatcher: model {self.model!r}: {self.url} "
                              f"unavailable ({status or text}); retrying")
            self._sleep(pause * (0.5 + random.random() / 2))
            pause = min(pause * 2, self.max_backoff)

    def _post(self, body: bytes, content_type: str) -> "tuple[int, str]":
        if self._conn is None:
            host, port = self._parts.hostname or "", self._parts.port
            if self._parts.scheme == "https":
                self._conn = http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                                         context=self._ssl)
            else:
                self._conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        headers = dict(self._headers, **{"Content-Type": content_type})
        self._conn.request("POST", self._path, body, headers)
        response = self._conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        if response.getheader("connection", "").lower() == "close":
            self._disconnect()
        return response.status, text

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _rows(value: Any) -> int:
    try:
        return int(len(value))
    except Exception:  # noqa: BLE001
        return 1


def _close_at_exit(ref: "weakref.ref[RemoteMonitor]", timeout: float) -> None:
    monitor = ref()
    if monitor is not None and not monitor._closing:
        monitor.close(timeout)
