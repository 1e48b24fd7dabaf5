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

    def add(self, number: int, item: Any) -> None:
        """Keep the point ``item`` (or a dead letter's point), else note why it is unusable."""
        if isinstance(item, dict) and isinstance(item.get("point"), dict) and "reason" in item:
            item = item["point"]
        problem = _check(item)
        if problem:
            self.problems.append((number, problem))
        else:
            self.points.append(dict(item, timestamp=int(item["timestamp"])))


def _check(point: Any) -> str:
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
            for number, item in enumerate(data, start=1):
                out.add(number, item)
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
        out.add(number, item)
    return out
