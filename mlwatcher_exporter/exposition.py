"""HTTP exposition: ``/metrics`` from prometheus_client and a landing page at ``/``."""

from __future__ import annotations

import html
import threading
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterable, List, Optional, Tuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client import make_wsgi_app as make_metrics_app

from ._version import __version__

__all__ = ["make_wsgi_app", "start_http_server", "MetricsServer"]

_LANDING = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>mlwatcher-exporter</title></head>
<body><h1>mlwatcher-exporter {version}</h1>
<p>Statistics of machine-learning classifiers in production, for Prometheus.</p>
<p><a href="{prefix}metrics">Metrics</a></p></body></html>
"""

StartResponse = Callable[[str, List[Tuple[str, str]]], Any]


def make_wsgi_app(registry: CollectorRegistry = REGISTRY) -> Callable[..., Iterable[bytes]]:
    """A WSGI app serving ``/metrics`` (and ``/metrics/``) and a landing page at ``/``.

    Mount it in an existing WSGI application, e.g. with werkzeug's DispatcherMiddleware.
    """
    metrics = make_metrics_app(registry)

    def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/") or "/"
        if path in ("/metrics", "/metrics/"):
            return metrics(environ, start_response)
        if path == "/":
            prefix = html.escape(environ.get("SCRIPT_NAME", "").rstrip("/") + "/")
            body = _LANDING.format(version=__version__, prefix=prefix).encode()
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not found: try /metrics\n"]

    return app


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per request, so a slow scrape never blocks another."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: scrapes every few seconds would drown real messages."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


class MetricsServer:
    """A running HTTP server; ``port`` is the bound port, ``shutdown()`` stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self.thread = thread
        host, port = server.server_address[:2]
        self.addr: str = host.decode() if isinstance(host, bytes) else str(host)
        self.port: int = int(port)

    @property
    def url(self) -> str:
        """The metrics URL."""
        return f"http://{self.addr}:{self.port}/metrics"

    def shutdown(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self.thread.join(timeout=5.0)


def start_http_server(
    port: int, addr: str = "127.0.0.1", registry: Optional[CollectorRegistry] = REGISTRY
) -> MetricsServer:
    """Serve `registry` on ``http://addr:port/metrics`` from a daemon thread.

    Binds 127.0.0.1 unless told otherwise; ``port=0`` picks a free port.
    """
    app = make_wsgi_app(registry if registry is not None else REGISTRY)
    server = make_server(addr, port, app, _ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, name="mlwatcher-http", daemon=True
    )
    thread.start()
    return MetricsServer(server, thread)
