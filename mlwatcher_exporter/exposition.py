"""HTTP exposition: ``/metrics`` in Prometheus' text format and a landing page at ``/``.

:func:`make_wsgi_app` is the application (mount it anywhere); :func:`start_http_server`
serves it with the hardened server of :mod:`.httpserver`, optionally with TLS and basic
auth from a ``web.yml`` (:mod:`.webconfig`), one server per registry, address and port.
"""

from __future__ import annotations

import errno
import gzip
import html
import io
import os
import re
import socket
import threading
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple, Union
from urllib.parse import parse_qs, unquote, urlsplit

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from ._version import __version__
from .httpserver import HTTPServer, Request, Response, ServerLimits, format_host

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

# Attribute of a metric family holding text chunks that render its samples, in order.
# Collectors whose samples repeat between scrapes set it to skip formatting them again.
PRERENDERED = "_mlwatcher_prerendered"

_LEGACY_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LEGACY_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_OPENMETRICS_SUFFIXES = ("_created", "_gsum", "_gcount")


class _UnusualName(Exception):
    """A name outside the legacy character set: prometheus_client must escape it."""


def _escape_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
    return value


def _check_name(name: str, pattern: "re.Pattern[str]", checked: Dict[str, bool]) -> None:
    """Raise _UnusualName unless `name` matches `pattern` (memoised per render)."""
    valid = checked.get(name)
    if valid is None:
        valid = checked[name] = bool(pattern.match(name))
    if not valid:
        raise _UnusualName(name)


def _sample_line(
    sample: Sample, names: Dict[str, bool], label_names: Dict[str, bool]
) -> str:
    labels = sample.labels
    _check_name(sample.name, _LEGACY_METRIC_NAME, names)
    if labels:
        parts = []
        for key, value in sorted(labels.items()):
            _check_name(key, _LEGACY_LABEL_NAME, label_names)
            parts.append(f'{key}="{_escape_value(value)}"')
        head = f"{sample.name}{{{','.join(parts)}}}"
    else:
        head = sample.name
    timestamp = ""
    if sample.timestamp is not None:
        timestamp = f" {int(float(sample.timestamp) * 1000):d}"
    return f"{head} {floatToGoString(sample.value)}{timestamp}\n"


def render_samples(samples: Iterable[Sample]) -> Optional[str]:
    """Sample lines as :func:`render_text` writes them; None for unusual names."""
    try:
        return "".join(_sample_line(sample, {}, {}) for sample in samples)
    except _UnusualName:
        return None


def render_text(registry: Collector = REGISTRY) -> bytes:
    """The registry in Prometheus' text format 0.0.4.

    Byte for byte what ``prometheus_client.generate_latest`` writes, several times faster
    on thousands of series: names in the usual character set need no per-character
    escaping, and families that carry :data:`PRERENDERED` text are not formatted again.
    A registry with any other name is handed to ``generate_latest``.
    """
    output: List[str] = []
    # Names seen in this render, and whether they are in the usual character set.
    names: Dict[str, bool] = {}
    label_names: Dict[str, bool] = {}
    try:
        for metric in registry.collect():
            name, kind = metric.name, metric.type
            if kind == "counter":
                name += "_total"
            elif kind == "info":
                name, kind = name + "_info", "gauge"
            elif kind == "stateset":
                kind = "gauge"
            elif kind == "gaugehistogram":
                kind = "histogram"
            elif kind == "unknown":
                kind = "untyped"
            if not _LEGACY_METRIC_NAME.match(name):
                raise _UnusualName(name)
            documentation = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
            output.append(f"# HELP {name} {documentation}\n# TYPE {name} {kind}\n")
            prerendered = getattr(metric, PRERENDERED, None)
            if prerendered is not None:
                output.extend(prerendered)
                continue
            extra: Dict[str, List[str]] = {}
            for sample in metric.samples:
                for suffix in _OPENMETRICS_SUFFIXES:
                    if sample.name == metric.name + suffix:
                        extra.setdefault(suffix, []).append(
                            _sample_line(sample, names, label_names)
                        )
                        break
                else:
                    output.append(_sample_line(sample, names, label_names))
            for suffix, lines in sorted(extra.items()):
                output.append(
                    f"# HELP {metric.name}{suffix} {documentation}\n"
                    f"# TYPE {metric.name}{suffix} gauge\n"
                )
                output.extend(lines)
    except _UnusualName:
        return generate_latest(registry)
    return "".join(output).encode("utf-8")


_LANDING = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>mlwatcher-exporter</title></head>
<body><h1>mlwatcher-exporter {version}</h1>
<p>Statistics of machine-learning classifiers in production, for Prometheus.</p>
<p><a href="{prefix}metrics">Metrics</a></p></body></html>
"""

StartResponse = Callable[[str, List[Tuple[str, str]]], Any]
_QVALUE = re.compile(r"^(0(\.[0-9]{0,3})?|1(\.0{0,3})?)$")
_ALLOWED = "GET, HEAD"
# GET /api/v1/models/{model}/windows (windowsapi.py): a model name may hold "/".
_WINDOWS_PATH = re.compile(r"/api/v1/models/(.+)/windows/?")


def accepts_gzip(accept_encoding: Optional[str]) -> bool:
    """Whether an ``Accept-Encoding`` header value prefers gzip to no encoding.

    Codings are case-insensitive and weighed by their q-values (RFC 9110 12.5.3):
    ``gzip;q=0`` refuses gzip, ``*`` stands for codings not named, and gzip is chosen
    when its weight is above 0 and at least that of ``identity`` where the client names
    ``identity`` (or ``*``).

    Examples
    --------
    >>> accepts_gzip("GZIP"), accepts_gzip("gzip;q=0"), accepts_gzip("br, *;q=0.5")
    (True, False, True)
    >>> accepts_gzip("gzip;q=0.5, identity"), accepts_gzip(None)
    (False, False)
    """
    if not accept_encoding:
        return False
    weights: Dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        weight = 1.0
        for param in params.split(";") if params else ():
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                value = value.strip()
                weight = float(value) if _QVALUE.match(value) else 0.0
        weights[coding] = max(weight, weights.get(coding, 0.0))
    wildcard = weights.get("*")
    gzip_weight = weights.get("gzip", weights.get("x-gzip", wildcard or 0.0))
    identity = weights.get("identity", 0.0 if wildcard is None else wildcard)
    return gzip_weight > 0 and gzip_weight >= identity


def _text(start_response: StartResponse, status: str, message: str,
          headers: Iterable[Tuple[str, str]] = ()) -> List[bytes]:
    body = message.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body))), *headers])
    return [body]


def make_wsgi_app(registry: CollectorRegistry = REGISTRY) -> Callable[..., Iterable[bytes]]:
    """A WSGI app serving ``/metrics`` (and ``/metrics/``), a landing page at ``/`` and
    each monitor's last windows at ``/api/v1/models/{model}/windows`` (as ``serve``).

    GET and HEAD are answered (HEAD without a body); other methods get 405 with
    ``Allow: GET, HEAD``. ``/metrics`` is gzip-compressed when the client's
    ``Accept-Encoding`` prefers it (:func:`accepts_gzip`) and always says
    ``Vary: Accept-Encoding``. Mount it in an existing WSGI application, e.g. with
    werkzeug's DispatcherMiddleware.
    """

    def metrics(environ: dict) -> Tuple[List[Tuple[str, str]], bytes]:
        params = parse_qs(environ.get("QUERY_STRING", ""))
        source: Collector = registry
        if "name[]" in params:
            source = registry.restricted_registry(params["name[]"])
        body = render_text(source)
        headers = [("Content-Type", CONTENT_TYPE_LATEST), ("Vary", "Accept-Encoding")]
        if accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING")):
            # Level 1: a tenth of the default's time for most of its gain on this text.
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        return headers, body

    def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        windows = _WINDOWS_PATH.fullmatch(path)
        if windows is not None:
            if method not in ("GET", "HEAD"):
                return _text(start_response, "405 Method Not Allowed",
                             f"Method {method} not allowed: use GET or HEAD\n",
                             [("Allow", _ALLOWED)])
            from .collector import registered_monitors
            from .windowsapi import windows_response

            monitors = {m.model: m for m in registered_monitors(registry)
                        if hasattr(m, "history")}
            answer = windows_response(monitors, windows.group(1),
                                      "?" + environ.get("QUERY_STRING", ""))
            headers = [*answer.headers, ("Content-Length", str(len(answer.body)))]
            start_response(f"{answer.status} {HTTPStatus(answer.status).phrase}", headers)
            return [b""] if method == "HEAD" else [answer.body]
        if path in ("/metrics", "/metrics/"):
            if method not in ("GET", "HEAD"):
                return _text(start_response, "405 Method Not Allowed",
                             f"Method {method} not allowed: use GET or HEAD\n",
                             [("Allow", _ALLOWED)])
            headers, body = metrics(environ)
        elif path == "/":
            if method not in ("GET", "HEAD"):
                return _text(start_response, "405 Method Not Allowed",
                             f"Method {method} not allowed: use GET or HEAD\n",
                             [("Allow", _ALLOWED)])
            prefix = environ.get("SCRIPT_NAME", "").rstrip("/") + "/"
            # The models' latest windows and charts (landing.py); the plain page if that
            # fails, so that / always answers.
            try:
                from .landing import render_landing

                body = render_landing(registry, prefix)
            except Exception:  # noqa: BLE001
                body = _LANDING.format(version=__version__,
                                       prefix=html.escape(prefix)).encode()
            headers = [("Content-Type", "text/html; charset=utf-8")]
        else:
            return _text(start_response, "404 Not Found", "Not found: try /metrics\n")
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [b""] if method == "HEAD" else [body]

    return app


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
