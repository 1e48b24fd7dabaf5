"""Read points from a file for ``anodot-send``: the ancestor's files, JSON arrays, dead letters.

Accepted layouts:

* a JSON array of points;
* one point per line (JSON lines), optionally with a trailing comma and an opening
  ``[`` / closing ``]`` line, as the ancestor MLWatcher wrote them;
* the bridge's dead-letter file: one ``{"reason": ..., "point": {...}}`` per line.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

__all__ = ["read_points", "PointsFile"]


@dataclass
class PointsFile:
    """Points read from a file, and the lines that could not be used."""

    points: List[Dict[str, Any]] = field(default_factory=list)
    problems: List[Tuple[int, str]] = field(default_factory=list)


def _check(point: Any) -> str:
    if isinstance(point, dict) and isinstance(point.get("point"), dict) and "reason" in point:
        point = point["point"]
    if not isinstance(point, dict):
        return "not a JSON object"
    props = point.get("properties")
    if not isinstance(props, dict) or not props.get("what"):
        return "properties.what is missing"
    ts = point.get("timestamp")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return "timestamp is not a number"
    value = point.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "value is not a finite number"
    return ""


def _unwrap(point: Dict[str, Any]) -> Dict[str, Any]:
    if isinstance(point.get("point"), dict) and "reason" in point:
        point = point["point"]
    point = dict(point)
    point["timestamp"] = int(point["timestamp"])
    return point


def read_points(path: "str | os.PathLike[str]") -> PointsFile:
    """Read every point of the file at ``path``; report unusable lines with their number."""
    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    out = PointsFile()
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except ValueError:
            data = None
        if isinstance(data, list):
            for i, item in enumerate(data):
                problem = _check(item)
                if problem:
                    out.problems.append((i + 1, problem))
                else:
                    out.points.append(_unwrap(item))
            return out
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip().rstrip(",").strip()
        if line in ("", "[", "]"):
            continue
        line = line.lstrip("[").rstrip("]")
        try:
            item = json.loads(line)
        except ValueError:
            out.problems.append((number, "not valid JSON"))
            continue
        problem = _check(item)
        if problem:
            out.problems.append((number, problem))
        else:
            out.points.append(_unwrap(item))
    return out
