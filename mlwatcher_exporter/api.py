"""The ingest API of ``serve``: routes, the bearer token, batches handed to their monitor.

``POST /api/v1/models/{model}/observations`` decodes a body (:mod:`.ingest`) and passes
it to that model's :meth:`ModelMonitor.observe`, which validates the whole batch before
it keeps any of it: an answer of 200 means every row was counted, any other answer means
none was. ``GET /api/v1/models`` lists the hosted models, ``GET /api/v1/openapi.json``
describes the API (:mod:`.openapi`), ``GET /api/v1/models/{model}/windows?limit=N``
returns the model's last closed windows (:mod:`.history`). Every other path goes to the
exposition app (``/metrics``, the landing page and whatever
:func:`~.exposition.make_wsgi_app` serves).
"""

from __future__ import annotations

import inspect
import json
import re
import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple
from urllib.parse import unquote

from .apimetrics import ApiMetrics
from .auth import BearerToken
from .errors import BatchError
from .httptypes import Handler, Request, Response
from .ingest import Batch, IngestError, decode_body
from .monitor import ModelMonitor
from .openapi import openapi_document
from .windowsapi import windows_response

__all__ = ["IngestAPI", "OBSERVATIONS_PATH", "OPENAPI_PATH", "MODELS_PATH", "WINDOWS_PATH"]

OBSERVATIONS_PATH = "/api/v1/models/{model}/observations"
OPENAPI_PATH = "/api/v1/openapi.json"
MODELS_PATH = "/api/v1/models"
WINDOWS_PATH = "/api/v1/models/{model}/windows"
_FIELD = re.compile(r"^(proba|features|labels|ids)\b")
_JSON = "application/json"


def _json(status: int, document: Any, *headers: Tuple[str, str]) -> Response:
    body = (json.dumps(document, separators=(",", ":")) + "\n").encode()
    return Response(status, [("Content-Type", _JSON), ("Cache-Control", "no-store"),
                             *headers], body)


def _error(status: int, field: str, problem: str, reason: str,
           *headers: Tuple[str, str]) -> Response:
    return _json(status, IngestError(status, field, problem, reason).document(), *headers)


def takes_ids(monitor: ModelMonitor) -> bool:
    """Whether this version's ``observe`` accepts ``ids`` (late labels)."""
    try:
        return "ids" in inspect.signature(monitor.observe).parameters
    except (TypeError, ValueError):  # pragma: no cover - a C-level signature
        return False


class IngestAPI:
    """The request handler of ``serve``.

    Parameters
    ----------
    monitors : mapping of str to ModelMonitor
        The hosted models by name.
    fallback : callable
        ``handler(Request) -> Response`` for every path the API does not own.
    metrics : ApiMetrics
    token : BearerToken, optional
        When set, every request (the fallback's too) must carry it.
    max_array_bytes : int, default=64 MiB
        Most bytes the arrays of one NumPy body may declare.
    """

    def __init__(self, monitors: Mapping[str, ModelMonitor], fallback: Handler,
                 metrics: ApiMetrics, token: Optional[BearerToken] = None,
                 max_array_bytes: int = 64 << 20,
                 _clock: Callable[[], float] = time.perf_counter) -> None:
        self.monitors = dict(monitors)
        self._fallback = fallback
        self.metrics = metrics
        self._token = token
        self._max_array_bytes = max_array_bytes
        self._clock = _clock
        document = openapi_document(sorted(self.monitors), token is not None)
        self._openapi = (json.dumps(document, indent=1) + "\n").encode()

    def __call__(self, request: Request) -> Response:
        """Answer one request; count it."""
        started = self._clock()
        handler, response = self._route(request)
        self.metrics.request(handler, response.status, self._clock() - started)
        return response

    def _route(self, request: Request) -> Tuple[str, Response]:
        path = request.target.split("?", 1)[0]
        if "://" in path[:16]:  # absolute form
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        parts = path.split("/")
        handler = "other"
        if len(parts) == 6 and parts[:4] == ["", "api", "v1", "models"] and \
                parts[5] == "observations":
            handler = "observations"
        elif len(parts) == 6 and parts[:4] == ["", "api", "v1", "models"] and \
                parts[5] == "windows":
            handler = "windows"
        elif path == OPENAPI_PATH:
            handler = "openapi"
        elif path in (MODELS_PATH, MODELS_PATH + "/"):
            handler = "models"
        if self._token is not None and not self._token.check(
                request.headers.get("authorization")):
            return handler, _error(401, "Authorization", "a bearer token is required "
                                   "(Authorization: Bearer <token>)", "unauthorized",
                                   ("WWW-Authenticate", 'Bearer realm="mlwatcher-exporter"'))
        if handler == "other":
            return handler, self._fallback(request)
        if handler == "observations":
            return handler, self._observations(request, unquote(parts[4]))
        if request.method not in ("GET", "HEAD"):
            return handler, _error(405, "method", f"{request.method} is not allowed, use "
                                   "GET or HEAD", "method", ("Allow", "GET, HEAD"))
        if handler == "windows":
            return handler, windows_response(self.monitors, unquote(parts[4]),
                                             request.target)
        if handler == "openapi":
            return handler, Response(200, [("Content-Type", _JSON)], self._openapi)
        return handler, _json(200, {"models": [self._describe(name, monitor) for name, monitor
                                               in sorted(self.monitors.items())]})

    @staticmethod
    def _describe(name: str, monitor: ModelMonitor) -> Dict[str, Any]:
        return {"model": name, "n_classes": monitor.n_classes,
                "class_names": [str(c) for c in monitor.class_labels] if monitor.n_classes
                else None,
                "feature_names": monitor.feature_names,
                "window_seconds": monitor.window_seconds,
                "accepts_ids": takes_ids(monitor)}

    def _observations(self, request: Request, model: str) -> Response:
        if request.method != "POST":
            return _error(405, "method", f"{request.method} is not allowed, use POST",
                          "method", ("Allow", "POST"))
        monitor = self.monitors.get(model)
        if monitor is None:
            return _error(404, "model", f"unknown model {model[:100]!r}, expected one of "
                          f"{sorted(self.monitors)[:20]}", "unknown_model")
        try:
            batch = decode_body(request.body, request.headers.get("content-type"),
                                self._max_array_bytes)
        except IngestError as error:
            return _json(error.status, error.document())
        return self._observe(monitor, model, batch)

    def _observe(self, monitor: ModelMonitor, model: str, batch: Batch) -> Response:
        if getattr(batch.proba, "size", 1) == 0 and batch.rows == 0:
            return _json(200, {"model": model, "accepted_rows": 0})  # nothing to record
        extra: Dict[str, Any] = {}
        if batch.ids is not None:
            if not takes_ids(monitor):
                return _error(422, "ids", "not accepted yet: this version's "
                              "ModelMonitor.observe takes no ids (late labels are not "
                              "supported); send the batch without ids", "unsupported")
            extra["ids"] = batch.ids
        try:
            monitor.observe(batch.proba, batch.features, batch.labels, **extra)
        except BatchError as error:
            message = str(error)
            match = _FIELD.match(message)
            return _error(422, match.group(1) if match else "batch", message, error.reason)
        except (TypeError, ValueError) as error:
            message = str(error)
            match = _FIELD.match(message)
            return _error(422, match.group(1) if match else "batch", message, "invalid")
        self.metrics.accepted(model, batch.format, batch.rows)
        return _json(200, {"model": model, "accepted_rows": batch.rows})
