"""Tests of mlwatcher_exporter.bridge.deadletter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest

from mlwatcher_exporter.bridge.deadletter import DeadLetter
from mlwatcher_exporter.bridge.replay import read_points


def pts(n: int) -> List[dict]:
    return [{"properties": {"what": "x"}, "timestamp": 5, "value": float(i)} for i in range(n)]


def test_records_reason_and_point_and_is_replayable(tmp_path: Path) -> None:
    dead = DeadLetter(tmp_path / "sub" / "dead.jsonl")
    assert dead.write(pts(2), "rejected", 200, 2004, "bad key") == 2
    lines = [json.loads(x) for x in (tmp_path / "sub" / "dead.jsonl").read_text().splitlines()]
    assert lines[0] == {"reason": "rejected", "status": 200, "error": 2004,
                        "description": "bad key", "point": pts(1)[0]}
    assert [p["value"] for p in read_points(tmp_path / "sub" / "dead.jsonl").points] == [0.0, 1.0]


def test_size_bound_drops_and_reports(tmp_path: Path) -> None:
    dropped: List[int] = []
    dead = DeadLetter(tmp_path / "d.jsonl", max_bytes=300, on_drop=dropped.append)
    written = dead.write(pts(10), "bad_request", 400)
    assert 0 < written < 10 and dropped == [10 - written]
    assert (tmp_path / "d.jsonl").stat().st_size <= 300


def test_unknown_reason_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reason == 'oops'"):
        DeadLetter(tmp_path / "d").write(pts(1), "oops")


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="path == 1"):
        DeadLetter(1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_bytes == -5"):
        DeadLetter(tmp_path / "d", max_bytes=-5)
