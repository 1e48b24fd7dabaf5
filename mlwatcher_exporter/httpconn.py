"""One client connection of the HTTP server: its socket, buffers and non-blocking I/O.

The event loop of :mod:`.httpserver` decides what a connection does next; the methods
here only move bytes and say what the socket needs (read, write, or nothing more).
"""

from __future__ import annotations

import socket
import ssl
from typing import Optional, Tuple

from .httpparse import Head

__all__ = ["Connection", "bind", "HANDSHAKE", "READING", "BODY", "BUSY", "WRITING", "CLOSING",
           "OK", "WANT_READ", "WANT_WRITE", "CLOSED"]

# What a connection is doing.
HANDSHAKE, READING, BODY, BUSY, WRITING, CLOSING = range(6)
# What an I/O step ended with.
OK, WANT_READ, WANT_WRITE, CLOSED = range(4)

_RECV = 65536
_SEND = 262144


def bind(addr: str, port: int) -> socket.socket:
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


class Connection:
    """A client socket with its input and output buffers and its deadline."""

    __slots__ = ("sock", "peer", "state", "inbuf", "outbuf", "sent", "deadline", "active",
                 "close_after", "events", "keepalive_idle", "serial", "head", "reserved")

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
        self.head: Optional[Head] = None  # while its body is read
        self.reserved = 0  # body bytes counted against the server's pending bound

    @property
    def tls(self) -> bool:
        """Whether the socket speaks TLS."""
        return isinstance(self.sock, ssl.SSLSocket)

    def handshake(self) -> int:
        """One step of the TLS handshake: OK when done."""
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            return WANT_READ
        except ssl.SSLWantWriteError:
            return WANT_WRITE
        except (ssl.SSLError, OSError, ValueError):
            return CLOSED
        return OK

    def receive(self, cap: int) -> Tuple[int, bool]:
        """Read what the socket has into ``inbuf`` (up to about `cap` bytes held).

        Returns the outcome (OK, WANT_WRITE or CLOSED) and whether bytes arrived.
        """
        sock = self.sock
        got = False
        while True:
            try:
                data = sock.recv(_RECV)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                return OK, got
            except ssl.SSLWantWriteError:
                return WANT_WRITE, got
            except (OSError, ValueError):
                return CLOSED, got
            if not data:
                return CLOSED, got
            got = True
            self.inbuf += data
            if len(self.inbuf) > cap + _RECV:
                return OK, got  # the parser refuses it; read no further
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return OK, got

    def send(self) -> int:
        """Send what ``outbuf`` still holds: OK when all is sent."""
        while self.sent < len(self.outbuf):
            try:
                sent = self.sock.send(self.outbuf[self.sent:self.sent + _SEND])
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                return WANT_WRITE
            except ssl.SSLWantReadError:
                return WANT_READ
            except (OSError, ValueError):
                return CLOSED
            self.sent += sent
        self.outbuf, self.sent = b"", 0
        return OK

    def try_send(self, data: bytes) -> None:
        """Send a small interim answer (100 Continue) if the socket takes it now."""
        try:
            self.sock.send(data)
        except (OSError, ValueError):
            pass  # the client sends its body after its own short wait anyway

    def half_close(self) -> bool:
        """Stop writing (FIN), keep reading; False when the socket cannot."""
        if self.tls:
            return False
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return False
        self.inbuf.clear()
        return True

    def drained(self) -> bool:
        """Read and discard input; True once the client has closed its side."""
        try:
            data = self.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        return not data

    def close(self) -> None:
        """Close the socket."""
        try:
            self.sock.close()
        except OSError:
            pass
