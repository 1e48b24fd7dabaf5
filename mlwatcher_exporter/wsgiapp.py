"""The exporter's WSGI application: ``/metrics``, the landing page, the windows API.

:func:`make_wsgi_app` answers GET and HEAD: ``/metrics`` in Prometheus' text format
(:mod:`.textformat`), gzip-compressed when the client's ``Accept-Encoding`` prefers it
(:func:`accepts_gzip`); ``/`` the landing page (:mod:`.landing`); and
``/api/v1/models/{model}/windows`` each monitor's last windows (:mod:`.windowsapi`).
:mod:`.exposition` serves it, and imports it all too.
"""

from __future__ import annotations

import gzip
import html
import re
from http import HTTPStatus
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import parse_qs

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from ._version import __version__
from .textformat import render_text

__all__ = ["make_wsgi_app", "accepts_gzip", "StartResponse"]

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

    Parameters
    ----------
    accept_encoding : str or None
        The header's value; None when the request has none.

    Returns
    -------
    bool
        True to answer with ``Content-Encoding: gzip``.

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


def _not_allowed(start_response: StartResponse, method: str) -> List[bytes]:
    return _text(start_response, "405 Method Not Allowed",
                 f"Method {method} not allowed: use GET or HEAD\n", [("Allow", _ALLOWED)])


def make_wsgi_app(registry: CollectorRegistry = REGISTRY) -> Callable[..., Iterable[bytes]]:
    """A WSGI app serving ``/metrics`` (and ``/metrics/``), a landing page at ``/`` and
    each monitor's last windows at ``/api/v1/models/{model}/windows`` (as ``serve``).

    GET and HEAD are answered (HEAD without a body); other methods get 405 with
    ``Allow: GET, HEAD``. ``/metrics`` is gzip-compressed when the client's
    ``Accept-Encoding`` prefers it (:func:`accepts_gzip`) and always says
    ``Vary: Accept-Encoding``. Mount it in an existing WSGI application, e.g. with
    werkzeug's DispatcherMiddleware.

    Parameters
    ----------
    registry : CollectorRegistry, default=prometheus_client.REGISTRY
        What ``/metrics`` serves (``?name[]=`` restricts it), and whose monitors the
        landing page and the windows API show.

    Returns
    -------
    callable
        The WSGI application ``app(environ, start_response)``.
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
                return _not_allowed(start_response, method)
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
                return _not_allowed(start_response, method)
            headers, body = metrics(environ)
        elif path == "/":
            if method not in ("GET", "HEAD"):
                return _not_allowed(start_response, method)
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
