"""An HTTP/1.1 server that can face a network: one event loop, bounded everything.

One thread waits on every socket (:mod:`.httploop`), so an idle or half-written
connection costs a file descriptor and a few kilobytes, never a thread, and no CPU while
it says nothing. Requests (and their bodies, when the server reads bodies) are read with
deadlines, answered by a small pool of worker threads and written back without
blocking. Beyond ``max_connections``, the connection that has shown no progress for
longest is closed to make room (a scraper reconnects; a client that only holds a socket
open loses it), and when the process is out of file descriptors the server stops
accepting for a moment instead of spinning.

Framing is in :mod:`.httpparse`, socket I/O in :mod:`.httpconn`, the types handlers
see in :mod:`.httptypes` (re-exported here).
"""

from __future__ import annotations

import selectors
import ssl
import time
from typing import Callable, Optional, Tuple

from .httpconn import (BODY, BUSY, CLOSED, CLOSING, HANDSHAKE, OK, READING, WANT_WRITE,
                       WRITING, Connection)
from .httploop import EventLoop
from .httpparse import BadRequest, Head, error_response, parse_head, serialize
from .httptypes import (Handler, Request, Response, ServerLimits, format_host, peer_sans,
                        reason_phrase)

__all__ = ["ServerLimits", "Request", "Response", "HTTPServer", "reason_phrase",
           "format_host", "peer_sans"]

_LINGER_SECONDS = 2.0  # after an error answer, how long unread input is drained
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class HTTPServer(EventLoop):
    """Serve `handler` on `addr`:`port` from one event-loop thread and a worker pool.

    Parameters
    ----------
    addr : str
        Address to bind, IPv4 (``127.0.0.1``, ``0.0.0.0``) or IPv6 (``::1``, ``::``).
    port : int
        0 picks a free port; :attr:`server_address` tells which.
    handler : callable
        ``handler(Request) -> Response``, called on a worker thread for each complete
        request (with its body when ``limits.max_body_bytes`` allows bodies); an
        exception answers 500.
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
        super().__init__(addr, port, limits, ssl_context, check_peer, _clock)
        self._handler = handler

    def start(self) -> "HTTPServer":
        """Start the event loop in a daemon thread."""
        super().start()
        return self

    def _on_event(self, conn: Connection) -> None:
        if conn.state == HANDSHAKE:
            self._handshake(conn)
        elif conn.state in (READING, BODY):
            self._read(conn)
        elif conn.state == WRITING:
            self._write(conn)
        elif conn.state == CLOSING and conn.drained():
            self._close(conn)

    def _expired(self, conn: Connection) -> None:
        if conn.state == BODY:
            self._answer_error(conn, 408, "the body did not arrive in time")
        else:
            self._close(conn)

    # -- reading --------------------------------------------------------------------------

    def _read(self, conn: Connection) -> None:
        want = conn.head.body_length if conn.head is not None else 0
        outcome, got = conn.receive(self.limits.max_request_bytes + want)
        if outcome == CLOSED:
            self._close(conn)
            return
        if outcome == WANT_WRITE:
            self._watch(conn, selectors.EVENT_WRITE)
            return
        if got:
            now = self._clock()
            if conn.keepalive_idle:
                conn.keepalive_idle = False
                conn.deadline = now + self.limits.request_timeout
            conn.active = now
        self._watch(conn, selectors.EVENT_READ)
        self._parse(conn)

    def _parse(self, conn: Connection) -> None:
        if conn.state == BODY:
            self._body(conn)
            return
        if conn.state != READING or not conn.inbuf:
            return
        scheme = "https" if self._ssl is not None else "http"
        try:
            head = parse_head(conn.inbuf, self.limits, conn.peer, scheme, self.server_address)
        except BadRequest as bad:
            self._answer_error(conn, bad.status, str(bad), bad.headers)
            return
        if head is None:
            return
        if head.body_length == 0:
            self._dispatch(conn, head)
            return
        if self.pending_body_bytes + head.body_length > self.limits.max_pending_body_bytes:
            self._answer_error(conn, 503, "too many request bodies in flight, retry",
                               (("Retry-After", "1"),))
            return
        self.pending_body_bytes += head.body_length
        conn.reserved = head.body_length
        conn.head, conn.state = head, BODY
        conn.deadline = self._clock() + self.limits.body_timeout
        if head.expect_continue and len(conn.inbuf) < head.body_length:
            conn.try_send(_CONTINUE)
        self._body(conn)

    def _body(self, conn: Connection) -> None:
        head = conn.head
        assert head is not None
        if len(conn.inbuf) < head.body_length:
            return
        head.request.body = bytes(conn.inbuf[:head.body_length])
        del conn.inbuf[:head.body_length]
        self._dispatch(conn, head)

    def _dispatch(self, conn: Connection, head: Head) -> None:
        conn.head = None
        conn.close_after = head.close_after
        if isinstance(conn.sock, ssl.SSLSocket):
            head.request.peer_certificate = conn.sock.getpeercert() or None
        conn.state = BUSY
        self._watch(conn, 0)
        self._pool.submit(self._handle, conn, conn.serial, head.request, head.close_after)

    # -- answering ------------------------------------------------------------------------

    def _handle(self, conn: Connection, serial: int, request: Request, close: bool) -> None:
        """On a worker thread: run the handler, queue the bytes for the loop."""
        try:
            response = self._handler(request)
        except Exception:  # noqa: BLE001 - a failing handler answers 500, never kills
            self._log.warning("handler", "mlwatcher: HTTP handler failed", exc_info=True)
            response = Response(500, [("Content-Type", "text/plain; charset=utf-8")],
                                b"Internal server error\n")
        data = serialize(response, request.method == "HEAD", close, request.version)
        self._done.put((conn, serial, data, close))
        self._wake()

    def _answer_error(self, conn: Connection, status: int, message: str,
                      headers: Tuple[Tuple[str, str], ...] = ()) -> None:
        conn.head = None
        self._respond(conn, error_response(status, message, headers), True)

    def _respond(self, conn: Connection, data: bytes, close_after: bool) -> None:
        self._release(conn)
        conn.state = WRITING
        conn.outbuf, conn.sent = data, 0
        conn.close_after = close_after
        conn.deadline = self._clock() + self.limits.write_timeout
        self._write(conn)

    def _write(self, conn: Connection) -> None:
        outcome = conn.send()
        if outcome == CLOSED:
            self._close(conn)
            return
        if outcome != OK:
            conn.active = self._clock()
            self._watch(conn, selectors.EVENT_WRITE if outcome == WANT_WRITE
                        else selectors.EVENT_READ)
            return
        now = conn.active = self._clock()
        if conn.close_after:
            # Half-close, then drain what the client still sends, so it reads our answer.
            if not conn.half_close():
                self._close(conn)
                return
            conn.state = CLOSING
            conn.deadline = now + _LINGER_SECONDS
            self._watch(conn, selectors.EVENT_READ)
            return
        conn.state = READING
        conn.keepalive_idle = True
        conn.deadline = now + self.limits.idle_timeout
        self._watch(conn, selectors.EVENT_READ)
        if conn.inbuf:  # a pipelined request
            conn.keepalive_idle = False
            conn.deadline = now + self.limits.request_timeout
            self._parse(conn)
