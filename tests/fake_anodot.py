"""A fake Anodot metrics API on 127.0.0.1 for the bridge's tests and benchmark.

It implements what the bridge relies on, from Anodot's public documentation and its
open-source clients:

* ``POST /api/v1/metrics?token=...&protocol=anodot20`` with a JSON array of at most
  1000 points; a wrong or missing token gives 401, another protocol or a body that is
  not a JSON array 400.
* Per-point validation; every invalid point is refused by index in a 200 answer,
  ``{"errors": [{"index": "3", "error": 2001, "description": "..."}]}``, and the other
  points of the request are accepted.
* Faults, injected at random (``fault_rate``, seeded) or queued with :meth:`fail_next`:
  ``"500"``, ``"503"`` (with Retry-After), ``"429"`` (with Retry-After),
  ``"rate_limit_body"`` (200 with the un-indexed error 1004), ``"drop"`` (connection
  closed before answering, nothing accepted), ``"drop_after_accept"`` (points accepted,
  then the connection is closed: the client cannot know), ``"slow"`` (answer delayed by
  ``slow_seconds``).
* :meth:`hold` makes every request wait until :meth:`release` (to show that nothing on
  the model side waits for the API).

Accepted points are recorded in :attr:`FakeAnodot.accepted`, in order. A point that is
an exact copy of one accepted before (same series, timestamp and value) is also listed
in :attr:`FakeAnodot.duplicates`; any other point older than the newest accepted point
of its series is listed in :attr:`FakeAnodot.order_violations`.

Error codes used for per-point errors (the fake's own; the bridge only reads them):
2001 bad ``what``/properties, 2004 bad property key or value, 2005 too many
properties, 2006 bad timestamp, 2007 bad value, 2008 bad tags.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["FakeAnodot", "SequenceExporter", "FAULTS", "series_key", "wait_until"]

FAULTS = ("500", "503", "429", "rate_limit_body", "drop", "drop_after_accept", "slow")
_BAD_CHARS = re.compile(r"[.=\s]")


def series_key(point: Dict[str, Any]) -> Tuple[Tuple[str, str], ...]:
    """Identity of a point's series: its sorted properties."""
    return tuple(sorted(point["properties"].items()))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition``; fail after ``timeout`` (a guard against hanging, not a timing check)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.005)


def _validate(point: Any, now: float) -> Optional[Tuple[int, str]]:
    """Return ``(code, description)`` if Anodot would refuse ``point``, else None."""
    if not isinstance(point, dict):
        return 2001, "point is not an object"
    props = point.get("properties")
    if not isinstance(props, dict) or not props.get("what"):
        return 2001, "properties.what is required"
    if not 1 <= len(props) <= 20:
        return 2005, "1 to 20 properties are allowed"
    for key, value in props.items():
        if not isinstance(key, str) or not key or len(key) > 50 or _BAD_CHARS.search(key):
            return 2004, f"invalid property key {key!r}"
        if not isinstance(value, str) or not value or len(value) > 150 or _BAD_CHARS.search(value):
            return 2004, f"invalid value of property {key}"
    if props.get("target_type", "gauge") not in ("gauge", "counter"):
        return 2004, "target_type must be gauge or counter"
    tags = point.get("tags", {})
    if not isinstance(tags, dict) or any(
        not isinstance(v, list) or not all(isinstance(x, str) and x for x in v)
        for v in tags.values()
    ):
        return 2008, "tags must map keys to lists of strings"
    timestamp = point.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        return 2006, "timestamp must be integer Unix seconds"
    if timestamp > now + 3600:
        return 2006, "timestamp more than 1 h in the future"
    value = point.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 2007, "value must be a finite number"
    return None


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 with a free port; subclasses give the handler."""

    def __init__(self) -> None:
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    def _handler(self) -> type:
        raise NotImplementedError

    def start(self) -> Any:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"


class FakeAnodot(LoopbackServer):
    """A real HTTP server imitating Anodot's metrics API.

    Parameters
    ----------
    token : str, default="fake-token-0123456789"
        The only token accepted.
    fault_rate : float, default=0.0
        Probability that a request gets a random fault from ``faults``.
    faults : sequence of str, default=FAULTS
        Faults drawn at random.
    seed : int, default=0
        Seed of the fault draws.
    retry_after : str, default="1"
        Retry-After sent with 429 and 503.
    slow_seconds : float, default=0.05
        Delay of the ``slow`` fault.
    clock : callable, default=time.time
        Current Unix time (future-timestamp check).
    """

    def __init__(
        self,
        token: str = "fake-token-0123456789",
        fault_rate: float = 0.0,
        faults: Sequence[str] = FAULTS,
        seed: int = 0,
        retry_after: str = "1",
        slow_seconds: float = 0.05,
        clock: Any = time.time,
    ) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"faults == {sorted(unknown)!r}, must be among {FAULTS}.")
        self.token = token
        self.fault_rate = fault_rate
        self.faults = tuple(faults)
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.clock = clock
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._queued: List[str] = []
        self._released = threading.Event()
        self._released.set()
        self.accepted: List[Dict[str, Any]] = []
        self.rejected: List[Tuple[Dict[str, Any], int]] = []
        self.requests: Counter[str] = Counter()
        self.order_violations: List[Dict[str, Any]] = []
        self.duplicates: List[Dict[str, Any]] = []
        self._seen: set = set()
        self.waiting = 0
        self._last_ts: Dict[Tuple[Tuple[str, str], ...], int] = {}
        super().__init__()

    # ------------------------------------------------------------------ control
    def _handler(self) -> type:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                fake._handle(self)

        return Handler

    def stop(self) -> None:
        self._released.set()  # let held (slow) responses finish before shutting down
        super().stop()

    @property
    def url(self) -> str:
        return self.base_url

    def fail_next(self, fault: str, count: int = 1) -> None:
        """Answer the next ``count`` requests with ``fault``."""
        if fault not in FAULTS:
            raise ValueError(f"fault == {fault!r}, must be one of {FAULTS}.")
        with self._lock:
            self._queued.extend([fault] * count)

    def hold(self) -> None:
        """Make requests wait (without answering) until :meth:`release`."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def accepted_values(self, what: str, **properties: str) -> List[float]:
        """Values accepted for the series matching ``what`` and ``properties``, in order."""
        with self._lock:
            return [
                p["value"] for p in self.accepted
                if p["properties"].get("what") == what
                and all(p["properties"].get(k) == v for k, v in properties.items())
            ]

    # ------------------------------------------------------------------ serving
    def _draw_fault(self) -> Optional[str]:
        with self._lock:
            if self._queued:
                return self._queued.pop(0)
            if self.fault_rate and self._random.random() < self.fault_rate:
                return self._random.choice(self.faults)
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        with self._lock:
            self.waiting += 1
        self._released.wait()
        with self._lock:
            self.waiting -= 1
        parts = urllib.parse.urlsplit(handler.path)
        query = urllib.parse.parse_qs(parts.query)
        if parts.path != "/api/v1/metrics":
            return self._answer(handler, 404, {"errors": [{"description": "not found"}]})
        if query.get("token") != [self.token]:
            return self._answer(handler, 401, {"errors": [{"description": "invalid token"}]})
        if query.get("protocol") != ["anodot20"]:
            return self._answer(handler, 400, {"errors": [{"description": "unknown protocol"}]})
        try:
            points = json.loads(body, parse_constant=lambda c: float(c))
        except ValueError:
            return self._answer(handler, 400, {"errors": [{"description": "body is not JSON"}]})
        if not isinstance(points, list):
            return self._answer(handler, 400, {"errors": [{"description": "expected an array"}]})
        if len(points) > 1000:
            return self._answer(handler, 400, {"errors": [{"description": "over 1000 points"}]})

        fault = self._draw_fault()
        with self._lock:
            self.requests[fault or "ok"] += 1
        if fault == "500":
            return self._answer(handler, 500, {"errors": [{"description": "internal error"}]})
        if fault in ("503", "429"):
            return self._answer(handler, int(fault), {"errors": [{"description": "busy"}]},
                                {"Retry-After": self.retry_after})
        if fault == "rate_limit_body":
            return self._answer(handler, 200, {"errors": [
                {"error": 1004, "description": "requests per minute limit exceeded"}]})
        if fault == "drop":
            handler.close_connection = True
            return
        if fault == "slow":
            time.sleep(self.slow_seconds)

        errors = []
        now = self.clock()
        with self._lock:
            for index, point in enumerate(points):
                problem = _validate(point, now)
                if problem is not None:
                    errors.append({"index": str(index), "error": problem[0],
                                   "description": problem[1]})
                    self.rejected.append((point, problem[0]))
                    continue
                key = series_key(point)
                identity = (key, point["timestamp"], point["value"])
                last = self._last_ts.get(key)
                if identity in self._seen:
                    self.duplicates.append(point)  # expected from at-least-once re-sends
                elif last is not None and point["timestamp"] < last:
                    self.order_violations.append(point)
                self._seen.add(identity)
                self._last_ts[key] = max(point["timestamp"], last or point["timestamp"])
                self.accepted.append(point)
        if fault == "drop_after_accept":
            handler.close_connection = True
            return
        self._answer(handler, 200, {"errors": errors})

    @staticmethod
    def _answer(
        handler: BaseHTTPRequestHandler,
        status: int,
        payload: Dict[str, Any],
        headers: Optional[Dict[str, str]] = None,
    ) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)


class SequenceExporter(LoopbackServer):
    """A ``/metrics`` page on 127.0.0.1 whose values advance by one step per scrape.

    Scrape number ``n`` (from 1) serves, for each model ``m``::

        mlwatcher_test_sequence{model="m"} n
        mlwatcher_test_events_total{model="m"} total(n)

    so every point the bridge forwards can be traced back to the scrape that produced it,
    and the counter's increases add up to a known total. The counter grows by ``3n + 1``
    at scrape ``n``: an increase over one scrape (``= 1 mod 3``) never equals an increase
    over two (``6n - 1 = 2 mod 3``), so no two counter points of a series are equal and
    exact duplicates can be told from distinct points. While :attr:`paused`, scrapes get
    503 and produce nothing.
    """

    def __init__(self, models: Sequence[str] = ("m0", "m1", "m2")) -> None:
        self.models = tuple(models)
        self.served = 0
        self.paused = False
        self._lock = threading.Lock()
        super().__init__()

    @staticmethod
    def total(n: int) -> float:
        """Counter value at scrape ``n``: the sum of ``3i + 1`` for i = 1..n."""
        return 3 * n * (n + 1) / 2 + n

    def page(self, n: int) -> str:
        lines = ["# TYPE mlwatcher_test_sequence gauge"]
        lines += [f'mlwatcher_test_sequence{{model="{m}"}} {n}' for m in self.models]
        lines.append("# TYPE mlwatcher_test_events_total counter")
        lines += [f'mlwatcher_test_events_total{{model="{m}"}} {self.total(n)}'
                  for m in self.models]
        return "\n".join(lines) + "\n"

    def _handler(self) -> type:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                with exporter._lock:
                    if exporter.paused:
                        body, status = b"paused\n", 503
                    else:
                        exporter.served += 1
                        body, status = exporter.page(exporter.served).encode(), 200
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    @property
    def url(self) -> str:
        return self.base_url + "/metrics"

    def pause(self) -> int:
        """Stop producing; return the number of the last scrape served."""
        with self._lock:
            self.paused = True
            return self.served
