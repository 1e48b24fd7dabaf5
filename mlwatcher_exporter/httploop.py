"""The event loop under the HTTP server: sockets accepted, watched, timed out, evicted.

One thread waits on every socket with ``selectors`` (epoll on Linux). This class owns
the connections' lifecycle (accept, TLS handshake, deadlines, the connection bound, the
pause when out of file descriptors); :class:`~.httpserver.HTTPServer` adds what is HTTP
(reading requests, answering them) through the hooks :meth:`EventLoop._on_event`,
:meth:`EventLoop._respond` and :meth:`EventLoop._expired`.
"""

from __future__ import annotations

import errno
import heapq
import logging
import queue
import selectors
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Optional, Tuple

from .httpconn import BUSY, CLOSED, HANDSHAKE, READING, WANT_READ, WANT_WRITE, Connection, bind
from .httptypes import ServerLimits
from .ratelog import RateLimitedLogger

__all__ = ["EventLoop"]

logger = logging.getLogger("mlwatcher_exporter.httpserver")

_SWEEP_SECONDS = 0.25
_PAUSE_SECONDS = 0.5  # accepting pauses this long when the process is out of descriptors


class EventLoop:
    """Connections of one listening socket, served from one thread.

    Subclasses implement :meth:`_on_event` (a connection's socket is ready),
    :meth:`_respond` (bytes from a worker to write) and :meth:`_expired` (a deadline
    passed).
    """

    def __init__(
        self,
        addr: str,
        port: int,
        limits: Optional[ServerLimits] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        check_peer: Optional[Callable[[ssl.SSLSocket], bool]] = None,
        _clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits or ServerLimits()
        self._ssl = ssl_context
        self._check_peer = check_peer
        self._clock = _clock
        self._listener = bind(addr, port)
        self.server_address: Tuple = self._listener.getsockname()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._done: "queue.SimpleQueue[Tuple[Connection, int, bytes, bool]]" = \
            queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(self.limits.workers, thread_name_prefix="mlwatcher-http")
        self._conns: Dict[int, Connection] = {}
        self._serial = 0
        self._accepting = False
        self._paused_until = 0.0
        self._stopping = False
        self._log = RateLimitedLogger(logger)
        self.pending_body_bytes = 0
        self.evicted = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._run, name="mlwatcher-http-loop",
                                        daemon=True)

    @property
    def thread(self) -> threading.Thread:
        """The event-loop thread."""
        return self._thread

    @property
    def connections(self) -> int:
        """Connections held now."""
        return len(self._conns)

    def start(self) -> "EventLoop":
        """Start the event loop in a daemon thread."""
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._set_accepting(True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop serving, close every connection and the listening socket."""
        self._stopping = True
        self._wake()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._pool.shutdown(wait=False)
        for conn in list(self._conns.values()):
            self._close(conn)
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    # -- the event loop -----------------------------------------------------------------

    def _run(self) -> None:
        next_sweep = 0.0
        while not self._stopping:
            idle = not self._conns and self._accepting
            try:
                events = self._selector.select(None if idle else _SWEEP_SECONDS)
            except OSError:  # pragma: no cover - the selector was closed under us
                break
            for key, _ in events:
                try:
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._on_event(key.data)
                except Exception:  # noqa: BLE001 - one connection never stops the loop
                    self._log.warning("loop", "mlwatcher: HTTP connection failed",
                                      exc_info=True)
                    if isinstance(key.data, Connection):
                        self._close(key.data)
            now = self._clock()
            if now >= next_sweep:
                next_sweep = now + _SWEEP_SECONDS
                self._sweep(now)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:  # full (a wake-up is pending anyway) or closed
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
        while True:
            try:
                conn, serial, data, close_after = self._done.get_nowait()
            except queue.Empty:
                return
            if conn.serial == serial and self._conns.get(id(conn)) is conn:
                self._respond(conn, data, close_after)

    def _set_accepting(self, on: bool) -> None:
        if on and not self._accepting:
            self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        elif not on and self._accepting:
            self._selector.unregister(self._listener)
        self._accepting = on

    def _sweep(self, now: float) -> None:
        for conn in [c for c in self._conns.values() if c.state != BUSY and c.deadline <= now]:
            self._expired(conn)
        if not self._accepting and now >= self._paused_until:
            self._set_accepting(True)

    # -- connections --------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    if not self._evict():
                        self._log.warning("fd", "mlwatcher: out of file descriptors; "
                                          f"accepting pauses {_PAUSE_SECONDS} s")
                        self._paused_until = self._clock() + _PAUSE_SECONDS
                        self._set_accepting(False)
                        return
                    continue
                raise
            if len(self._conns) >= self.limits.max_connections and not self._evict():
                self.refused += 1
                sock.close()
                continue
            self._admit(sock, peer)

    def _evict(self) -> bool:
        """Close the least recently active connection not being answered; False if none."""
        candidates = [c for c in self._conns.values() if c.state != BUSY]
        if not candidates:
            return False
        oldest = heapq.nsmallest(1, candidates, key=lambda c: c.active)[0]
        self.evicted += 1
        self._log.warning("evict", f"mlwatcher: {len(self._conns)} HTTP connections held, "
                          "closing the least active one")
        self._close(oldest)
        return True

    def _admit(self, sock: socket.socket, peer: Tuple) -> None:
        now = self._clock()
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        state = READING
        if self._ssl is not None:
            try:
                sock = self._ssl.wrap_socket(sock, server_side=True,
                                             do_handshake_on_connect=False)
            except (OSError, ValueError):
                sock.close()
                return
            state = HANDSHAKE
        self._serial += 1
        conn = Connection(sock, peer, state, now + self.limits.request_timeout, now,
                          self._serial)
        self._conns[id(conn)] = conn
        self._watch(conn, selectors.EVENT_READ)
        if state == HANDSHAKE:
            self._handshake(conn)

    def _watch(self, conn: Connection, events: int) -> None:
        if events == conn.events:
            return
        if conn.events == 0:
            self._selector.register(conn.sock, events, conn)
        elif events == 0:
            self._selector.unregister(conn.sock)
        else:
            self._selector.modify(conn.sock, events, conn)
        conn.events = events

    def _release(self, conn: Connection) -> None:
        self.pending_body_bytes -= conn.reserved
        conn.reserved = 0

    def _close(self, conn: Connection) -> None:
        if self._conns.pop(id(conn), None) is None:
            return
        conn.serial = -1
        self._release(conn)
        if conn.events:
            try:
                self._selector.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
            conn.events = 0
        conn.close()

    def _handshake(self, conn: Connection) -> None:
        outcome = conn.handshake()
        if outcome == WANT_READ or outcome == WANT_WRITE:
            self._watch(conn, selectors.EVENT_READ if outcome == WANT_READ
                        else selectors.EVENT_WRITE)
            return
        sock = conn.sock
        if outcome == CLOSED or (self._check_peer is not None
                                 and not self._check_peer(sock)):  # type: ignore[arg-type]
            self._close(conn)
            return
        conn.state = READING
        conn.active = self._clock()
        self._watch(conn, selectors.EVENT_READ)
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            self._read(conn)

    # -- hooks ------------------------------------------------------------------------------

    def _on_event(self, conn: Connection) -> None:
        raise NotImplementedError  # pragma: no cover - abstract

    def _respond(self, conn: Connection, data: bytes, close_after: bool) -> None:
        raise NotImplementedError  # pragma: no cover - abstract

    def _expired(self, conn: Connection) -> None:
        """A connection's deadline passed: close it."""
        self._close(conn)

    def _read(self, conn: Connection) -> None:
        raise NotImplementedError  # pragma: no cover - abstract
