"""HTTP exposition: ``/metrics`` from prometheus_client and a landing page at ``/``."""

from __future__ import annotations

import gzip
import html
import re
import threading
from socketserver import ThreadingMixIn
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from ._version import __version__

__all__ = [
    "make_wsgi_app",
    "start_http_server",
    "MetricsServer",
    "render_text",
    "render_samples",
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


def make_wsgi_app(registry: CollectorRegistry = REGISTRY) -> Callable[..., Iterable[bytes]]:
    """A WSGI app serving ``/metrics`` (and ``/metrics/``) and a landing page at ``/``.

    Mount it in an existing WSGI application, e.g. with werkzeug's DispatcherMiddleware.
    """

    def metrics(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        params = parse_qs(environ.get("QUERY_STRING", ""))
        source: Collector = registry
        if "name[]" in params:
            source = registry.restricted_registry(params["name[]"])
        body = render_text(source)
        headers = [("Content-Type", CONTENT_TYPE_LATEST)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            # Level 1: a tenth of the default's time for most of its gain on this text.
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

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
