"""The OpenAPI 3.0 document of the service, served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

from ._version import __version__

__all__ = ["openapi_document"]

_NUMBER_OR_NULL = {"type": "number", "nullable": True}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["field", "problem", "reason"],
        "properties": {
            "field": {"type": "string", "description": "The field at fault (proba, "
                      "features, labels, ids, body, model, Content-Type...)."},
            "problem": {"type": "string", "description": "What is wrong and what was "
                        "expected."},
            "reason": {"type": "string", "description": "A short machine-readable reason "
                       "(type, shape, n_classes, non_finite, unknown_model...)."},
        },
    }},
}
_BATCH = {
    "type": "object",
    "required": ["proba"],
    "additionalProperties": False,
    "properties": {
        "proba": {"type": "array", "items": {"type": "array", "items": _NUMBER_OR_NULL},
                  "description": "predict_proba rows: one probability per class, each row "
                  "summing to 1."},
        "features": {
            "description": ("The model's input: rows of numbers (null: missing), or an "
                            "object of columns by feature name (numbers or text)."),
            "oneOf": [
                {"type": "array", "items": {"type": "array", "items": _NUMBER_OR_NULL}},
                {"type": "object", "additionalProperties": {"type": "array", "items": {
                    "nullable": True,
                    "oneOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]}}},
            ]},
        "labels": {"type": "array", "description": "True class per row (a class value or "
                   "index, or a one-hot row); null: no label.",
                   "items": {"nullable": True, "oneOf": [
                       {"type": "string"}, {"type": "number"}, {"type": "boolean"},
                       {"type": "array", "items": {"type": "number"}}]}},
        "ids": {"type": "array", "items": {"oneOf": [{"type": "string"},
                                                     {"type": "integer"}]},
                "description": "Prediction ids, for labels sent later; refused (422) while "
                "the server's monitors take none."},
    },
}

# --- the windows endpoint (windowsapi.py, history.py) ---
_LIMIT = {"name": "limit", "in": "query", "required": False,
          "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
          "description": "How many of the newest windows to return."}
_STATS = {"type": "object", "nullable": True, "additionalProperties": _NUMBER_OR_NULL}
_WINDOW = {
    "type": "object",
    "required": ["timestamp", "model", "window_end", "window_seconds", "rows",
                 "sampled_rows", "class_rows", "labeled_rows"],
    "properties": {
        "timestamp": {"type": "string", "description": "Window end, ISO 8601 UTC."},
        "model": {"type": "string"},
        "version": {"type": "string"},
        "window_end": {"type": "number", "description": "Window end, Unix seconds."},
        "window_seconds": {"type": "number"},
        "rows": {"type": "integer", "minimum": 0},
        "sampled_rows": {"type": "integer", "minimum": 0},
        "pred1": _STATS, "spread12": _STATS,
        "class_rows": {"type": "object", "additionalProperties": {"type": "integer"}},
        "class_ratio": _STATS,
        "features": {"type": "object", "additionalProperties": _STATS},
        "missing_ratio": _STATS,
        "value_ratios": {"type": "object", "additionalProperties": _STATS},
        "labeled_rows": {"type": "integer", "minimum": 0},
        "accuracy": _NUMBER_OR_NULL, "f1_macro": _NUMBER_OR_NULL,
        "class_accuracy": _STATS, "precision": _STATS, "recall": _STATS, "f1": _STATS,
        "compute_seconds": _NUMBER_OR_NULL,
        "drift": {**_STATS, "description": "Drift score per feature, when computed."},
    },
}
_WINDOWS = {"type": "object", "required": ["model", "window_seconds", "windows"],
            "properties": {"model": {"type": "string"},
                           "window_seconds": {"type": "number"},
                           "windows": {"type": "array", "items": _WINDOW}}}
# --- end of the windows endpoint ---


def _errors(*codes: int) -> Dict[str, Any]:
    meaning = {400: "The body is not valid JSON or NumPy data.",
               401: "The bearer token is missing or wrong.",
               404: "No such model.", 405: "Method not allowed.",
               408: "The body did not arrive within the body timeout.",
               413: "The body, or the arrays it declares, are too large.",
               415: "Unsupported Content-Type.",
               422: "A field has the wrong type, shape or values; nothing of the batch was "
                    "kept.",
               503: "Too many bodies in flight; retry after Retry-After seconds."}
    out: Dict[str, Any] = {}
    for code in codes:
        content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        if code in (408, 413, 503):
            content = {"text/plain": {"schema": {"type": "string"}}, **content}
        out[str(code)] = {"description": meaning[code], "content": content}
    return out


def openapi_document(models: Sequence[str], token: bool) -> Dict[str, Any]:
    """The API description for a service hosting `models` (with a bearer token or not)."""
    auth: List[int] = [401] if token else []
    model = {"name": "model", "in": "path", "required": True,
             "schema": {"type": "string", "enum": list(models)},
             "description": "A hosted model (another name is answered 404)."}
    document: Dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "mlwatcher-exporter ingest API", "version": __version__,
                 "description": "Batches of predictions posted by producers in other "
                 "processes, monitored as if observed in process; /metrics for Prometheus."},
        "paths": {
            "/api/v1/models/{model}/observations": {"post": {
                "operationId": "postObservations",
                "summary": "Record one batch of predictions of a model.",
                "parameters": [model],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Batch"}},
                    "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
                    "application/x-npz": {"schema": {"type": "string", "format": "binary"}},
                }},
                "responses": {
                    "200": {"description": "Every row of the batch was recorded.",
                            "content": {"application/json": {"schema": {
                                "$ref": "#/components/schemas/Accepted"}}}},
                    **_errors(400, *auth, 404, 408, 413, 415, 422, 503),
                },
            }},
            "/api/v1/models": {"get": {
                "operationId": "listModels", "summary": "The hosted models.",
                "responses": {"200": {"description": "The models and what they expect.",
                                      "content": {"application/json": {"schema": {
                                          "$ref": "#/components/schemas/Models"}}}},
                              **_errors(*auth)},
            }},
            "/api/v1/models/{model}/windows": {"get": {
                "operationId": "listWindows",
                "summary": "The last closed windows of a model, oldest first.",
                "parameters": [model, _LIMIT],
                "responses": {
                    "200": {"description": "The newest `limit` windows kept (all of them "
                            "without `limit`); the records of docs/history.md.",
                            "content": {"application/json": {"schema": {
                                "$ref": "#/components/schemas/Windows"}}}},
                    "400": {"description": "`limit` is not one integer from 1 to 10000.",
                            "content": {"application/json": {"schema": {
                                "$ref": "#/components/schemas/Error"}}}},
                    **_errors(*auth, 404),
                },
            }},
            "/api/v1/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document.",
                "responses": {"200": {"description": "OpenAPI 3.0 document.",
                                      "content": {"application/json": {"schema": {
                                          "type": "object"}}}}, **_errors(*auth)},
            }},
            "/metrics": {"get": {
                "operationId": "metrics", "summary": "Prometheus text format 0.0.4.",
                "responses": {"200": {"description": "Every metric of the hosted models.",
                                      "content": {"text/plain": {"schema": {
                                          "type": "string"}}}}, **_errors(*auth)},
            }},
        },
        "components": {"schemas": {
            "Batch": _BATCH,
            "Accepted": {"type": "object", "required": ["model", "accepted_rows"],
                         "properties": {"model": {"type": "string"},
                                        "accepted_rows": {"type": "integer", "minimum": 0}}},
            "Error": _ERROR,
            "Windows": _WINDOWS,
            "Models": {"type": "object", "required": ["models"], "properties": {"models": {
                "type": "array", "items": {"type": "object", "required": ["model"],
                                           "properties": {"model": {"type": "string"}}}}}},
        }},
    }
    if token:
        schemes = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["components"]["securitySchemes"] = schemes
        document["security"] = [{"bearer": []}]
    return document
