"""HTTP exposition: ``/metrics`` in Prometheus' text format and a landing page at ``/``.

:func:`start_http_server` serves the application of :func:`make_wsgi_app`
(:mod:`.wsgiapp`; mount it anywhere) with the hardened server of :mod:`.httpserver`,
optionally with TLS and basic auth from a ``web.yml`` (:mod:`.webconfig`), one server per
registry, address and port. The text format is :mod:`.textformat`'s; both modules' names
are importable from here as well.
"""

from __future__ import annotations

import errno
import io
import os
import socket
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple, Union
from urllib.parse import unquote, urlsplit

from prometheus_client import REGISTRY, CollectorRegistry

from .httpserver import HTTPServer, Request, Response, ServerLimits, format_host
from .textformat import PRERENDERED, render_samples, render_text
from .wsgiapp import accepts_gzip, make_wsgi_app

if TYPE_CHECKING:  # pragma: no cover
    from .webconfig import WebConfig

__all__ = [
    "make_wsgi_app",
    "start_http_server",
    "MetricsServer",
    "render_text",
    "render_samples",
    "accepts_gzip",
    "ServerLimits",
    "PRERENDERED",
]


def _wsgi_handler(
    app: Callable[..., Iterable[bytes]], web_config: "Optional[WebConfig]"
) -> Callable[[Request], Response]:
    """Adapt a WSGI app to :class:`~.httpserver.HTTPServer`, with basic auth in front."""
    auth = web_config.basic_auth() if web_config is not None else None
    extra = list(web_config.headers.items()) if web_config is not None else []

    def handle(request: Request) -> Response:
        if auth is not None and not auth.check(request.headers.get("authorization")):
            return Response(401, [("Content-Type", "text/plain; charset=utf-8"),
                                  ("WWW-Authenticate", 'Basic realm="mlwatcher-exporter"'),
                                  *extra], b"Unauthorized\n")
        if "://" in request.target[:16]:  # absolute form, as sent to proxies
            parts = urlsplit(request.target)
            path, query = parts.path or "/", parts.query
        else:
            path, _, query = request.target.partition("?")
        environ: Dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, encoding="latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": str(request.server[0]) if request.server else "",
            "SERVER_PORT": str(request.server[1]) if request.server else "",
            "SERVER_PROTOCOL": request.version,
            "REMOTE_ADDR": str(request.peer[0]) if request.peer else "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": request.scheme,
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in request.headers.items():
            key = name.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            environ[key] = value
        captured: Dict[str, Any] = {}

        def start_response(status: str, headers: List[Tuple[str, str]],
                           exc_info: Any = None) -> None:
            captured["status"], captured["headers"] = status, headers

        chunks = app(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        headers = list(captured["headers"]) + extra
        return Response(int(captured["status"].split(" ", 1)[0]), headers, body)

    return handle


class _Running:
    """A server and the handles that share it."""

    def __init__(self, server: HTTPServer, registry: CollectorRegistry, options: tuple,
                 scheme: str) -> None:
        self.server = server
        self.registry = registry
        self.options = options
        self.scheme = scheme
        self.users = 0


_RUNNING: Dict[Tuple[str, int], _Running] = {}
_RUNNING_LOCK = threading.Lock()


class MetricsServer:
    """A handle on a running HTTP server; ``port`` is the bound port.

    Every :func:`start_http_server` call on the same registry, address and port returns
    a handle on the same server; ``shutdown()`` of the last handle stops it.
    """

    def __init__(self, running: _Running) -> None:
        self._running: Optional[_Running] = running
        self.thread = running.server.thread
        host, port = running.server.server_address[:2]
        self.addr: str = str(host)
        self.port: int = int(port)
        self.scheme: str = running.scheme

    @property
    def url(self) -> str:
        """The metrics URL."""
        return f"{self.scheme}://{format_host(self.addr)}:{self.port}/metrics"

    @property
    def connections(self) -> int:
        """Connections the server holds now."""
        running = self._running
        return running.server.connections if running is not None else 0

    def shutdown(self) -> None:
        """Release this handle; the last one stops serving and closes the socket."""
        with _RUNNING_LOCK:
            running, self._running = self._running, None
            if running is None:
                return
            running.users -= 1
            if running.users > 0:
                return
            key = (self.addr, self.port)
            if _RUNNING.get(key) is running:
                del _RUNNING[key]
        running.server.shutdown()

    def __repr__(self) -> str:
        return f"MetricsServer(url={self.url!r})"


def _numeric_host(addr: str, port: int) -> str:
    """`addr` as the numeric address a socket bound to it reports."""
    try:
        infos = socket.getaddrinfo(addr or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ValueError(f"addr == {addr!r}, must be an IPv4 or IPv6 address or a "
                         f"resolvable host name ({exc})") from None
    return str(infos[0][4][0])


def start_http_server(
    port: int,
    addr: str = "127.0.0.1",
    registry: Optional[CollectorRegistry] = REGISTRY,
    *,
    web_config: "Union[None, str, os.PathLike, WebConfig]" = None,
    limits: Optional[ServerLimits] = None,
) -> MetricsServer:
    """Serve `registry` on ``http://addr:port/metrics`` from a daemon thread.

    Parameters
    ----------
    port : int
        0 picks a free port (``.port`` of the result tells which).
    addr : str, default="127.0.0.1"
        Address to listen on: loopback unless told otherwise. IPv6 addresses such as
        ``::1`` work; ``0.0.0.0`` or ``::`` listen on every interface (then use
        `web_config` for TLS and basic auth, or a firewall).
    registry : CollectorRegistry, default=prometheus_client.REGISTRY
    web_config : str, path or WebConfig, optional
        A ``web.yml`` in the format of Prometheus' exporter-toolkit (TLS, basic auth,
        extra headers); see :func:`~.webconfig.load_web_config`.
    limits : ServerLimits, optional
        Timeouts and connection bounds (defaults: 10 s per request head, 90 s idle,
        128 connections).

    Returns
    -------
    MetricsServer
        With ``.port``, ``.url`` and ``.shutdown()``. A second call with the same
        registry, address and port (and the same options) returns a handle on the
        server already running rather than failing with "Address already in use".

    Raises
    ------
    ValueError
        A bad `port`, `addr` or `web_config`, or options that differ from those of the
        server already running on that registry, address and port.
    OSError
        The port is taken, by another process or by a server of another registry.
    """
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port == {port!r}, must be an int")
    if not 0 <= port <= 65535:
        raise ValueError(f"port == {port!r}, must be >= 0 and <= 65535")
    if not isinstance(addr, str):
        raise TypeError(f"addr == {addr!r}, must be a str")
    if registry is None:
        registry = REGISTRY
    config = None
    if web_config is not None:
        from .webconfig import WebConfig, load_web_config

        config = web_config if isinstance(web_config, WebConfig) else \
            load_web_config(web_config)
    limits = limits if limits is not None else ServerLimits()
    options = (config, limits)
    host = _numeric_host(addr, port)
    with _RUNNING_LOCK:
        running = _RUNNING.get((host, port)) if port else None
        if running is None:
            ssl_context = config.ssl_context() if config is not None else None
            check_peer = config.check_peer if config is not None else None
            server = HTTPServer(addr, port, _wsgi_handler(make_wsgi_app(registry), config),
                                limits, ssl_context, check_peer)
            bound_host, bound_port = server.server_address[:2]
            running = _Running(server, registry, options,
                               "https" if ssl_context is not None else "http")
            _RUNNING[(str(bound_host), int(bound_port))] = running
            server.start()
        elif running.registry is not registry:
            raise OSError(errno.EADDRINUSE,
                          f"{format_host(host)}:{port} is already served by mlwatcher-exporter "
                          "for another registry: give both monitors the same registry, or "
                          "another port")
        elif running.options != options:
            raise ValueError(f"{format_host(host)}:{port} is already served with another "
                             "web_config or limits; pass the same ones to share it")
        running.users += 1
        return MetricsServer(running)
