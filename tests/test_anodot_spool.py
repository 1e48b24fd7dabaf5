"""Tests of mlwatcher_exporter.bridge.spool: the spool, dead letters, reading points back."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import ManualClock
from mlwatcher_exporter.bridge.spool import DeadLetter, Spool, read_points


def pts(start: int, n: int, ts: int = 1000) -> List[Dict[str, Any]]:
    return [{"properties": {"what": "x", "i": str(i)}, "timestamp": ts, "value": float(i)}
            for i in range(start, start + n)]


def values(batch: Any) -> List[float]:
    return [p["value"] for p in batch.points]


def make(path: Path, **kwargs: Any) -> Spool:
    kwargs.setdefault("_clock", ManualClock())
    return Spool(path, **kwargs)


def test_read_returns_oldest_first_and_ack_removes(tmp_path: Path) -> None:
    spool = make(tmp_path)
    spool.append(pts(0, 3))
    spool.append(pts(3, 3))
    first = spool.read(4)
    assert values(first) == [0, 1, 2, 3]
    assert values(spool.read(4)) == [0, 1, 2, 3], "unacknowledged points are read again"
    spool.ack(first)
    assert spool.pending_points == 2
    assert values(spool.read(10)) == [4, 5]


def test_unacknowledged_points_survive_a_restart_and_come_first(tmp_path: Path) -> None:
    spool = make(tmp_path)
    spool.append(pts(0, 5))
    spool.ack(spool.read(2))
    spool.close()  # or a crash: appends were fsync'd

    again = make(tmp_path)
    assert again.pending_points == 3
    again.append(pts(5, 2))
    assert values(again.read(100)) == [2, 3, 4, 5, 6]


def test_acknowledgement_is_not_lost_without_close(tmp_path: Path) -> None:
    spool = make(tmp_path)
    spool.append(pts(0, 4))
    spool.ack(spool.read(3))
    # No close(): reopen as after a SIGKILL.
    assert values(make(tmp_path).read(10)) == [3]


def test_a_torn_last_write_is_truncated_on_recovery(tmp_path: Path) -> None:
    spool = make(tmp_path)
    spool.append(pts(0, 2))
    spool.close()
    segment = sorted(tmp_path.glob("segment-*.jsonl"))[-1]
    with open(segment, "ab") as f:
        f.write(b'{"properties":{"what":"x"},"timest')  # crash mid-write
    again = make(tmp_path)
    assert again.pending_points == 2
    again.append(pts(2, 1))
    assert values(again.read(10)) == [0, 1, 2]


def test_corrupt_line_is_skipped_and_counted(tmp_path: Path) -> None:
    drops: List[tuple] = []
    spool = make(tmp_path)
    spool.append(pts(0, 1))
    spool.close()
    segment = sorted(tmp_path.glob("segment-*.jsonl"))[-1]
    with open(segment, "ab") as f:
        f.write(b"garbage\n")
    again = make(tmp_path, on_drop=lambda r, n: drops.append((r, n)))
    again.append(pts(1, 1))
    batch = again.read(10)
    assert values(batch) == [0, 1]
    assert values(again.read(10)) == [0, 1]
    assert drops == [], "counted once, when acknowledged"
    again.ack(batch)
    assert drops == [("corrupt", 1)]
    assert again.pending_points == 0


def test_segments_roll_and_fully_acknowledged_ones_are_deleted(tmp_path: Path) -> None:
    spool = make(tmp_path, segment_bytes=256, max_bytes=1 << 20)
    for i in range(20):
        spool.append(pts(i, 1))
    assert len(list(tmp_path.glob("segment-*.jsonl"))) > 3
    while True:
        batch = spool.read(3)
        if not batch.points:
            break
        spool.ack(batch)
    assert spool.pending_points == 0
    assert len(list(tmp_path.glob("segment-*.jsonl"))) == 1  # only the active one


def test_size_bound_drops_oldest_segments_and_counts_them(tmp_path: Path) -> None:
    drops: List[tuple] = []
    spool = make(tmp_path, segment_bytes=512, max_bytes=2048,
                 on_drop=lambda r, n: drops.append((r, n)))
    for i in range(100):
        spool.append(pts(i, 1))
    assert spool.bytes <= 2048 + 512
    remaining = values(spool.read(1000))
    dropped = sum(n for r, n in drops if r == "size")
    assert all(r == "size" for r, _ in drops)
    assert dropped + len(remaining) == 100
    assert remaining == [float(i) for i in range(100 - len(remaining), 100)], "oldest go first"
    assert spool.pending_points == len(remaining)


def test_size_bound_holds_across_restart(tmp_path: Path) -> None:
    spool = make(tmp_path, segment_bytes=512, max_bytes=2048)
    for i in range(100):
        spool.append(pts(i, 1))
    spool.close()
    again = make(tmp_path, segment_bytes=512, max_bytes=2048)
    batch = again.read(1000)
    assert len(batch.points) == again.pending_points
    assert values(batch) == sorted(values(batch))


def test_points_past_max_age_are_dropped_unsent(tmp_path: Path) -> None:
    clock = ManualClock(1000.0)
    drops: List[tuple] = []
    spool = Spool(tmp_path, max_age_seconds=60, _clock=clock,
                  on_drop=lambda r, n: drops.append((r, n)))
    spool.append(pts(0, 2, ts=900))
    spool.append(pts(2, 2, ts=990))
    assert spool.oldest_timestamp() == 900
    assert values(spool.read(10)) == [2, 3]
    assert drops == [("age", 2)]
    assert spool.pending_points == 2, "the expired points were acknowledged"
    assert spool.oldest_timestamp() == 990


def test_state_is_recovered_after_restart_even_when_segments_are_gone(tmp_path: Path) -> None:
    spool = make(tmp_path, segment_bytes=256, max_bytes=1 << 20)
    for i in range(10):
        spool.append(pts(i, 1), state={"n": i})
    while True:
        batch = spool.read(100)
        if not batch.points:
            break
        spool.ack(batch)
    spool.close()
    again = make(tmp_path)
    assert again.recovered_state == {"n": 9}
    assert again.pending_points == 0
    assert again.read(10).points == []
    again.close()
    assert make(tmp_path).recovered_state == {"n": 9}


def test_state_lines_are_not_points(tmp_path: Path) -> None:
    spool = make(tmp_path)
    spool.append([], state={"a": 1})
    spool.append(pts(0, 1), state={"a": 2})
    assert spool.pending_points == 1
    assert values(spool.read(10)) == [0]


def test_nan_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    spool = make(tmp_path)
    bad = pts(0, 2)
    bad[1]["value"] = float("nan")
    with pytest.raises(ValueError):
        spool.append(bad)
    assert spool.pending_points == 0


def test_corrupt_head_is_dropped_at_read(tmp_path: Path) -> None:
    drops: List[tuple] = []
    spool = make(tmp_path)
    spool.close()
    segment = sorted(tmp_path.glob("segment-*.jsonl"))[-1]
    segment.write_bytes(b"garbage\n")
    again = make(tmp_path, on_drop=lambda r, n: drops.append((r, n)))
    assert again.read(10).points == []
    assert drops == [("corrupt", 1)] and again.pending_points == 0


def test_stale_ack_is_ignored(tmp_path: Path) -> None:
    spool = make(tmp_path)
    spool.append(pts(0, 3))
    old = spool.read(1)
    spool.ack(spool.read(2))
    spool.ack(old)
    assert values(spool.read(10)) == [2]


def test_concurrent_append_and_drain_keep_order(tmp_path: Path) -> None:
    spool = make(tmp_path, segment_bytes=1024, max_bytes=1 << 22, fsync=False)
    got: List[float] = []
    done = threading.Event()

    def drain() -> None:
        while True:
            batch = spool.read(7)
            if not batch.points:
                if done.is_set() and not spool.read(1).points:
                    return
                continue
            got.extend(values(batch))
            spool.ack(batch)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        for i in range(0, 500, 5):
            spool.append(pts(i, 5))
    finally:
        done.set()
        reader.join(30)
    assert not reader.is_alive()
    assert got == [float(i) for i in range(500)]


def test_ack_file_is_replaced_atomically(tmp_path: Path) -> None:
    spool = make(tmp_path)
    spool.append(pts(0, 2))
    spool.ack(spool.read(1))
    data = json.loads((tmp_path / "ack.json").read_text())
    assert set(data) == {"segment", "offset", "points"} and data["points"] == 1
    assert not (tmp_path / "ack.json.tmp").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"max_bytes": 10}, "max_bytes == 10"),
    ({"segment_bytes": 10**9}, "segment_bytes == 1000000000"),
    ({"max_age_seconds": 0}, "max_age_seconds == 0"),
])
def test_invalid_arguments_are_named(tmp_path: Path, kwargs: Dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Spool(tmp_path, **kwargs)


def test_read_rejects_bad_max_points(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_points == 0"):
        make(tmp_path).read(0)


def test_directory_must_be_a_path() -> None:
    with pytest.raises(TypeError, match="directory == 3"):
        Spool(3)  # type: ignore[arg-type]


def test_files_are_private(tmp_path: Path) -> None:
    spool = make(tmp_path)
    spool.append(pts(0, 1))
    segment = sorted(tmp_path.glob("segment-*.jsonl"))[-1]
    assert os.stat(segment).st_mode & 0o077 == 0


def test_a_failed_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = make(tmp_path)
    spool.append(pts(0, 2))
    real_write = os.write

    def half_then_disk_full(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_disk_full)
    with pytest.raises(OSError):
        spool.append(pts(2, 3))
    monkeypatch.undo()
    spool.append(pts(5, 1))
    assert values(spool.read(10)) == [0, 1, 5]
    spool.close()
    assert values(make(tmp_path).read(10)) == [0, 1, 5], "and after a restart"


# ---------------------------------------------------------------------- dead letters
def dead_pts(n: int) -> List[dict]:
    return [{"properties": {"what": "x"}, "timestamp": 5, "value": float(i)} for i in range(n)]


def test_records_reason_and_point_and_is_replayable(tmp_path: Path) -> None:
    dead = DeadLetter(tmp_path / "sub" / "dead.jsonl")
    assert dead.write(dead_pts(2), "rejected", 200, 2004, "bad key") == 2
    lines = [json.loads(x) for x in (tmp_path / "sub" / "dead.jsonl").read_text().splitlines()]
    assert lines[0] == {"reason": "rejected", "status": 200, "error": 2004,
                        "description": "bad key", "point": dead_pts(1)[0]}
    assert [p["value"] for p in read_points(tmp_path / "sub" / "dead.jsonl").points] == [0.0, 1.0]


def test_size_bound_drops_and_reports(tmp_path: Path) -> None:
    dropped: List[int] = []
    dead = DeadLetter(tmp_path / "d.jsonl", max_bytes=300, on_drop=dropped.append)
    written = dead.write(dead_pts(10), "bad_request", 400)
    assert 0 < written < 10 and dropped == [10 - written]
    assert (tmp_path / "d.jsonl").stat().st_size <= 300


def test_unknown_reason_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reason == 'oops'"):
        DeadLetter(tmp_path / "d").write(dead_pts(1), "oops")


def test_bad_dead_letter_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="path == 1"):
        DeadLetter(1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_bytes == -5"):
        DeadLetter(tmp_path / "d", max_bytes=-5)


# ---------------------------------------------------------------------- reading points back
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


def test_a_spool_segment_is_a_points_file(tmp_path: Path) -> None:
    spool = make(tmp_path / "spool")
    spool.append(pts(0, 2), state={"counters": {}})
    spool.append(pts(2, 1), state={"counters": {}})
    spool.close()
    [segment] = sorted((tmp_path / "spool").glob("segment-*.jsonl"))
    out = read_points(segment)
    assert [p["value"] for p in out.points] == [0.0, 1.0, 2.0] and out.problems == []
