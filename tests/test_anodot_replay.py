"""Tests of mlwatcher_exporter.bridge.replay: the file formats anodot-send reads."""

from __future__ import annotations

import json
from pathlib import Path

from mlwatcher_exporter.bridge.replay import read_points

P = {"properties": {"what": "cpu", "server_id": "5", "target_type": "gauge"}, "tags": {},
     "timestamp": 1475260200, "value": 64.0}


def test_json_array(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps([P, P]))
    assert read_points(path).points == [P, P]


def test_ancestor_lines_with_commas_and_brackets(tmp_path: Path) -> None:
    path = tmp_path / "MLmetrics.json"
    path.write_text("[\n" + json.dumps(P) + ",\n" + json.dumps(P) + "\n]\n")
    out = read_points(path)
    assert out.points == [P, P] and out.problems == []


def test_problems_are_reported_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    nan = dict(P, value=float("nan"))
    path.write_text("\n".join([
        json.dumps(P), "nope", json.dumps({"properties": {}}), json.dumps(nan),
        json.dumps(dict(P, timestamp="x")), json.dumps([1]),
    ]))
    out = read_points(path)
    assert out.points == [P]
    assert out.problems == [(2, "not valid JSON"), (3, "properties.what is missing"),
                            (4, "value is not a finite number"), (5, "timestamp is not a number"),
                            (6, "not a JSON object")]


def test_float_timestamps_become_integers(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(dict(P, timestamp=1475260200.7)))
    assert read_points(path).points[0]["timestamp"] == 1475260200
