"""An HTTP/1.1 server that can face a network: one event loop, bounded everything.

One thread waits on every socket with ``selectors`` (epoll on Linux), so an idle or
half-written connection costs a file descriptor and a few kilobytes, never a thread, and
no CPU while it says nothing. Requests are read with a deadline, answered by a small pool
of worker threads and written back without blocking. Beyond ``max_connections``, the
connection that has shown no progress for longest is closed to make room (a scraper
reconnects; a client that only holds a socket open loses it), and when the process is out
of file descriptors the server stops accepting for a moment instead of spinning.
"""

from __future__ import annotations

import errno
import heapq
import logging
import queue
import re
import selectors
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from .ratelog import RateLimitedLogger

__all__ = ["ServerLimits", "Request", "Response", "HTTPServer", "reason_phrase"]

logger = logging.getLogger(__name__)

_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 414: "URI Too Long",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VERSION = re.compile(rb"^HTTP/(\d)\.(\d)$")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_MAX_HEADERS = 100
_RECV = 65536
_SEND = 262144
_SWEEP_SECONDS = 0.25
_PAUSE_SECONDS = 0.5  # accepting pauses this long when the process is out of descriptors
_LINGER_SECONDS = 2.0  # after an error answer, how long unread input is drained


def reason_phrase(status: int) -> str:
    """The reason phrase of an HTTP status code."""
    return _REASONS.get(status, "Unknown")


@dataclass(frozen=True)
class ServerLimits:
    """Timeouts and bounds of :class:`HTTPServer`.

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
    """

    request_timeout: float = 10.0
    idle_timeout: float = 90.0
    write_timeout: float = 30.0
    max_connections: int = 128
    max_request_bytes: int = 8192
    workers: int = 2

    def __post_init__(self) -> None:
        for name in ("request_timeout", "idle_timeout", "write_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} == {value!r}, must be a number of seconds")
            if not 0 < value <= 86400:
                raise ValueError(f"{name} == {value!r}, must be > 0 and <= 86400 seconds")
        for name, low, high in (("max_connections", 1, 65536),
                                ("max_request_bytes", 256, 1 << 20), ("workers", 1, 64)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} == {value!r}, must be an int")
            if not low <= value <= high:
                raise ValueError(f"{name} == {value!r}, must be >= {low} and <= {high}")


@dataclass
class Request:
    """A parsed request head. Header names are lower case; repeated headers are joined."""

    method: str
    target: str
    version: str
    headers: Dict[str, str]
    peer: Tuple
    scheme: str = "http"
    server: Tuple = ()
    peer_certificate: Optional[dict] = None


@dataclass
class Response:
    """What a handler answers; the server adds Content-Length, Date and Connection."""

    status: int
    headers: List[Tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


Handler = Callable[[Request], Response]

_HANDSHAKE, _READING, _BUSY, _WRITING, _CLOSING = range(5)


class _Connection:
    __slots__ = ("sock", "peer", "state", "inbuf", "outbuf", "sent", "deadline", "active",
                 "close_after", "events", "keepalive_idle", "serial")

    def __init__(self, sock: socket.socket, peer: Tuple, state: int, deadline: float,
                 now: float, serial: int) -> None:
        self.sock = sock
        self.peer = peer
        self.state = state
        self.inbuf = bytearray()
        self.outbuf = b""
        self.sent = 0
        self.deadline = deadline
        self.active = now
        self.close_after = False
        self.events = 0
        self.keepalive_idle = False
        self.serial = serial


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _bind(addr: str, port: int) -> socket.socket:
    """A listening non-blocking socket on `addr` (IPv4 or IPv6) and `port`."""
    infos = socket.getaddrinfo(addr or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class HTTPServer:
    """Serve `handler` on `addr`:`port` from one event-loop thread and a worker pool.

    Parameters
    ----------
    addr : str
        Address to bind, IPv4 (``127.0.0.1``, ``0.0.0.0``) or IPv6 (``::1``, ``::``).
    port : int
        0 picks a free port; :attr:`server_address` tells which.
    handler : callable
        ``handler(Request) -> Response``, called on a worker thread for each complete
        request; an exception answers 500.
    limits : ServerLimits, optional
    ssl_context : ssl.SSLContext, optional
        Serve HTTPS with it.
    check_peer : callable, optional
        ``check_peer(sslsocket) -> bool`` after a TLS handshake; False closes.
    """

    def __init__(
        self,
        addr: str,
        port: int,
        handler: Handler,
        limits: Optional[ServerLimits] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        check_peer: Optional[Callable[[ssl.SSLSocket], bool]] = None,
        _clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits or ServerLimits()
        self._handler = handler
        self._ssl = ssl_context
        self._check_peer = check_peer
        self._clock = _clock
        self._listener = _bind(addr, port)
        self.server_address: Tuple = self._listener.getsockname()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._done: "queue.SimpleQueue[Tuple[_Connection, int, bytes, bool]]" = \
            queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(self.limits.workers, thread_name_prefix="mlwatcher-http")
        self._conns: Dict[int, _Connection] = {}
        self._serial = 0
        self._accepting = False
        self._paused_until = 0.0
        self._stopping = False
        self._log = RateLimitedLogger(logger)
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

    def start(self) -> "HTTPServer":
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
            for key, mask in events:
                try:
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._on_event(key.data, mask)
                except Exception:  # noqa: BLE001 - one connection never stops the loop
                    self._log.warning("loop", "mlwatcher: HTTP connection failed",
                                      exc_info=True)
                    if isinstance(key.data, _Connection):
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
        for conn in [c for c in self._conns.values() if c.state != _BUSY and c.deadline <= now]:
            self._close(conn)
        if not self._accepting and now >= self._paused_until:
            self._set_accepting(True)

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
        candidates = [c for c in self._conns.values() if c.state != _BUSY]
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
        state = _READING
        if self._ssl is not None:
            try:
                sock = self._ssl.wrap_socket(sock, server_side=True,
                                             do_handshake_on_connect=False)
            except (OSError, ValueError):
                sock.close()
                return
            state = _HANDSHAKE
        self._serial += 1
        conn = _Connection(sock, peer, state, now + self.limits.request_timeout, now,
                           self._serial)
        self._conns[id(conn)] = conn
        self._watch(conn, selectors.EVENT_READ)
        if state == _HANDSHAKE:
            self._handshake(conn)

    def _watch(self, conn: _Connection, events: int) -> None:
        if events == conn.events:
            return
        if conn.events == 0:
            self._selector.register(conn.sock, events, conn)
        elif events == 0:
            self._selector.unregister(conn.sock)
        else:
            self._selector.modify(conn.sock, events, conn)
        conn.events = events

    def _close(self, conn: _Connection) -> None:
        if self._conns.pop(id(conn), None) is None:
            return
        conn.serial = -1
        if conn.events:
            try:
                self._selector.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
            conn.events = 0
        try:
            conn.sock.close()
        except OSError:
            pass

    def _on_event(self, conn: _Connection, mask: int) -> None:
        if conn.state == _HANDSHAKE:
            self._handshake(conn)
        elif conn.state == _READING:
            self._read(conn)
        elif conn.state == _WRITING:
            self._write(conn)
        elif conn.state == _CLOSING:
            self._linger(conn)

    # -- TLS ------------------------------------------------------------------------------

    def _handshake(self, conn: _Connection) -> None:
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(conn, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(conn, selectors.EVENT_WRITE)
            return
        except (ssl.SSLError, OSError, ValueError):
            self._close(conn)
            return
        if self._check_peer is not None and not self._check_peer(sock):
            self._close(conn)
            return
        conn.state = _READING
        conn.active = self._clock()
        self._watch(conn, selectors.EVENT_READ)
        if sock.pending():
            self._read(conn)

    # -- reading --------------------------------------------------------------------------

    def _read(self, conn: _Connection) -> None:
        sock = conn.sock
        while True:
            try:
                data = sock.recv(_RECV)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                self._watch(conn, selectors.EVENT_WRITE)
                return
            except (OSError, ValueError):
                self._close(conn)
                return
            if not data:
                self._close(conn)
                return
            now = self._clock()
            if conn.keepalive_idle:
                conn.keepalive_idle = False
                conn.deadline = now + self.limits.request_timeout
            conn.active = now
            conn.inbuf += data
            if len(conn.inbuf) > self.limits.max_request_bytes + _RECV:
                break  # _parse refuses it; read no further
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                break
        self._watch(conn, selectors.EVENT_READ)
        self._parse(conn)

    def _parse(self, conn: _Connection) -> None:
        if conn.state != _READING or not conn.inbuf:
            return
        try:
            request = self._parse_head(conn)
        except _BadRequest as bad:
            self._answer_error(conn, bad.status, str(bad))
            return
        if request is None:
            return
        conn.state = _BUSY
        self._watch(conn, 0)
        self._pool.submit(self._handle, conn, conn.serial, request)

    def _parse_head(self, conn: _Connection) -> Optional[Request]:
        """The request at the start of conn.inbuf, None while incomplete."""
        buf = conn.inbuf
        limit = self.limits.max_request_bytes
        while buf[:2] == b"\r\n" or buf[:1] == b"\n":  # RFC 9112 2.2: skip empty lines
            del buf[:2 if buf[:2] == b"\r\n" else 1]
        if not buf:
            return None
        line_end = buf.find(b"\n")
        if line_end < 0:
            if len(buf) > limit:
                raise _BadRequest(414, "request line too long")
            return None
        parts = bytes(buf[:line_end]).rstrip(b"\r").split(b" ")
        if len(parts) != 3:
            raise _BadRequest(400, "malformed request line (HTTP/1.0 or 1.1 expected)")
        method, target, version = parts
        match = _VERSION.match(version)
        if match is None or not _TOKEN.match(method) or not target:
            raise _BadRequest(400, "malformed request line")
        if match.group(1) != b"1":
            raise _BadRequest(505, "only HTTP/1.0 and HTTP/1.1 are served")
        end = _HEAD_END.search(buf, line_end - 1 if line_end else 0)
        if end is None:
            if len(buf) > limit:
                raise _BadRequest(431, "request head too large")
            return None
        if end.start() > limit:
            raise _BadRequest(431, "request head too large")
        head = bytes(buf[line_end + 1:end.start()])
        del buf[:end.end()]
        headers: Dict[str, str] = {}
        lines = head.split(b"\n") if head else []
        if len(lines) > _MAX_HEADERS:
            raise _BadRequest(431, "too many header fields")
        for raw in lines:
            raw = raw.rstrip(b"\r")
            name, colon, value = raw.partition(b":")
            if not colon or not _TOKEN.match(name):
                raise _BadRequest(400, "malformed header field")
            key = name.decode("ascii").lower()
            text = value.strip(b" \t").decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        request = Request(method.decode("ascii"), target.decode("latin-1"),
                          version.decode("ascii"), headers, conn.peer,
                          "https" if self._ssl is not None else "http",
                          self.server_address)
        if isinstance(conn.sock, ssl.SSLSocket):
            request.peer_certificate = conn.sock.getpeercert() or None
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        if version == b"HTTP/1.1":
            conn.close_after = "close" in tokens
        else:
            conn.close_after = "keep-alive" not in tokens
        # Bodies are not read: a request that has one is answered, then closed.
        length = headers.get("content-length", "0").strip()
        if "transfer-encoding" in headers:
            conn.close_after = True
        elif not length.isdigit():
            raise _BadRequest(400, "malformed Content-Length")
        elif int(length) > 0:
            conn.close_after = True
        return request

    # -- answering ------------------------------------------------------------------------

    def _handle(self, conn: _Connection, serial: int, request: Request) -> None:
        """On a worker thread: run the handler, queue the bytes for the loop."""
        try:
            response = self._handler(request)
        except Exception:  # noqa: BLE001 - a failing handler answers 500, never kills
            self._log.warning("handler", "mlwatcher: HTTP handler failed", exc_info=True)
            response = Response(500, [("Content-Type", "text/plain; charset=utf-8")],
                                b"Internal server error\n")
        data = self._serialize(response, request.method == "HEAD", conn.close_after,
                               request.version)
        self._done.put((conn, serial, data, conn.close_after))
        self._wake()

    @staticmethod
    def _serialize(response: Response, head_only: bool, close: bool,
                   version: Union[str, bytes] = "HTTP/1.1") -> bytes:
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

    def _answer_error(self, conn: _Connection, status: int, message: str) -> None:
        body = f"{reason_phrase(status)}: {message}\n".encode()
        response = Response(status, [("Content-Type", "text/plain; charset=utf-8")], body)
        self._respond(conn, self._serialize(response, False, True), True)

    def _respond(self, conn: _Connection, data: bytes, close_after: bool) -> None:
        conn.state = _WRITING
        conn.outbuf, conn.sent = data, 0
        conn.close_after = close_after
        conn.deadline = self._clock() + self.limits.write_timeout
        self._write(conn)

    def _write(self, conn: _Connection) -> None:
        while conn.sent < len(conn.outbuf):
            try:
                sent = conn.sock.send(conn.outbuf[conn.sent:conn.sent + _SEND])
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                self._watch(conn, selectors.EVENT_WRITE)
                return
            except ssl.SSLWantReadError:
                self._watch(conn, selectors.EVENT_READ)
                return
            except (OSError, ValueError):
                self._close(conn)
                return
            conn.sent += sent
            conn.active = self._clock()
        conn.outbuf, conn.sent = b"", 0
        if conn.close_after:
            self._start_closing(conn)
            return
        conn.state = _READING
        conn.keepalive_idle = True
        conn.deadline = self._clock() + self.limits.idle_timeout
        self._watch(conn, selectors.EVENT_READ)
        if conn.inbuf:  # a pipelined request
            conn.keepalive_idle = False
            conn.deadline = self._clock() + self.limits.request_timeout
            self._parse(conn)

    def _start_closing(self, conn: _Connection) -> None:
        """Half-close, then drain what the client still sends, so it reads our answer."""
        if isinstance(conn.sock, ssl.SSLSocket):
            self._close(conn)
            return
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.state = _CLOSING
        conn.inbuf.clear()
        conn.deadline = self._clock() + _LINGER_SECONDS
        self._watch(conn, selectors.EVENT_READ)

    def _linger(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)


def format_host(host: str) -> str:
    """`host` as it stands in a URL: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host


def peer_sans(certificate: Optional[dict]) -> Sequence[str]:
    """The subject alternative names of a peer certificate from ``getpeercert()``."""
    if not certificate:
        return ()
    return tuple(str(value) for _, value in certificate.get("subjectAltName", ()))
