"""``GET /api/v1/models/{model}/windows?limit=N``: a model's last closed windows as JSON.

The records are those of :mod:`.history` (format in ``docs/history.md``), oldest first;
``limit`` (an integer from 1 to :data:`~.history.MAX_KEEP`) keeps the newest N. The
answer holds at most the monitor's ``history.keep`` windows.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional
from urllib.parse import parse_qs

from .history import MAX_KEEP
from .httptypes import Response
from .ingest import IngestError

__all__ = ["windows_response", "parse_limit"]


def _json(status: int, document: Any) -> Response:
    body = (json.dumps(document, separators=(",", ":"), allow_nan=False) + "\n").encode()
    return Response(status, [("Content-Type", "application/json"),
                             ("Cache-Control", "no-store")], body)


def parse_limit(target: str) -> Optional[int]:
    """The ``limit`` of a request target, or None when absent.

    Raises
    ------
    IngestError
        400 when ``limit`` is given twice or is not an integer from 1 to MAX_KEEP.
    """
    query = target.partition("?")[2]
    try:
        values = parse_qs(query, keep_blank_values=True, strict_parsing=False,
                          max_num_fields=20).get("limit")
    except ValueError:
        raise IngestError(400, "limit", "the query has too many fields", "limit") from None
    if values is None:
        return None
    expected = f"must be one integer from 1 to {MAX_KEEP}"
    if len(values) != 1:
        raise IngestError(400, "limit", f"given {len(values)} times, {expected}", "limit")
    text = values[0].strip()
    if not text.isdigit() or not text.isascii() or not 1 <= int(text) <= MAX_KEEP:
        raise IngestError(400, "limit", f"limit == {values[0][:40]!r}, {expected}", "limit")
    return int(text)


def windows_response(monitors: Mapping[str, Any], model: str, target: str) -> Response:
    """The answer to a windows request for `model` (404 unknown, 400 bad limit)."""
    monitor = monitors.get(model)
    if monitor is None:
        return _json(404, IngestError(404, "model", f"unknown model {model[:100]!r}, "
                                      f"expected one of {sorted(monitors)[:20]}",
                                      "unknown_model").document())
    try:
        limit = parse_limit(target)
    except IngestError as error:
        return _json(error.status, error.document())
    monitor.tick()  # as a scrape does: a due window is closed and recorded first
    windows = monitor.history.records(limit)
    return _json(200, {"model": model, "window_seconds": monitor.window_seconds,
                       "windows": windows})
