"""Files of Anodot points, all JSON lines of one format: the durable spool, the dead letters.

A line is a point (``{"properties": {...}, "timestamp": ..., "value": ...}``), a dead
letter (``{"reason": ..., "status": ..., "error": ..., "description": ..., "point": {...}}``)
or a spool state record (``{"__state__": {...}}``). :func:`read_points` reads any of them
(JSON arrays and the ancestor MLWatcher's files too), so ``anodot-send`` replays dead
letters and spool segments. The spool directory holds append-only
``segment-<20 digits>.jsonl`` files and ``ack.json`` (``{"segment": 1, "offset": 5120,
"points": 40}``); ``docs/anodot.md`` ("Delivery guarantee") says how they are used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import math
import os
import re
import threading
import time
from collections import Counter as _Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .config import DeadLetterOptions, SpoolOptions, resolve

__all__ = ["Spool", "SpoolBatch", "DeadLetter", "DEAD_LETTER_REASONS", "PointsFile",
           "read_points", "encode_point"]

logger = logging.getLogger(__name__)

_SEGMENT_RE = re.compile(r"^segment-(\d{20})\.jsonl$")
_ACK_FILE = "ack.json"
_STATE_PREFIX = b'{"__state__":'
# Why points become dead letters: refused one by one (indexed errors), the whole request
# refused with 400, 401/403 or another status retrying cannot fix, or given up on.
DEAD_LETTER_REASONS = ("rejected", "bad_request", "unauthorized", "client_error", "undelivered")
_Position = Tuple[Tuple[int, int], int]  # (segment, offset), points of the segment before it


def encode_point(point: Dict[str, Any], allow_nan: bool = False) -> bytes:
    """Return ``point`` as one compact JSON line (NaN and infinities refused by default)."""
    return json.dumps(point, separators=(",", ":"), allow_nan=allow_nan).encode("utf-8") + b"\n"


@dataclass
class _Segment:
    seq: int
    path: str
    size: int
    points: int


@dataclass(frozen=True)
class SpoolBatch:
    """Oldest unacknowledged ``points`` (``lines``: as stored), the ``cursor`` ``(segment,
    offset)`` just past them with the ``cursor_points`` of that segment before it, and the
    ``corrupt`` lines among them (counted as dropped when acknowledged)."""

    points: List[Dict[str, Any]]
    lines: List[bytes]
    cursor: Tuple[int, int]
    cursor_points: int
    corrupt: int = 0


class Spool:
    """Durable FIFO of points with acknowledgement, size and age bounds.

    :meth:`append` writes the points of one snapshot, and the bridge's state (counter
    baselines) if given, in a single fsync'd write; a state also starts every new segment
    and is :attr:`recovered_state` after a restart. :meth:`ack` records atomically that
    points were accepted. Past ``max_bytes`` the oldest segments are deleted, and points
    older than ``max_age_seconds`` are dropped when read, both counted through ``on_drop``.

    Parameters
    ----------
    directory : str or os.PathLike
        Directory of the segments; created if missing. One process at a time.
    options : SpoolOptions, default=SpoolOptions()
        Bounds and fsync; ``**overrides`` replace some of its fields (``max_bytes=2048``).
    on_drop : callable, default=None
        Called as ``on_drop(reason, points)``, reason ``"size"``, ``"age"`` or ``"corrupt"``.
    _clock : callable, default=time.time
        The current Unix time.

    Examples
    --------
    >>> import tempfile
    >>> spool = Spool(tempfile.mkdtemp(), _clock=lambda: 100.0)
    >>> spool.append([{"properties": {"what": "x"}, "timestamp": 99, "value": 1.0}])
    >>> batch = spool.read(1000)
    >>> [p["value"] for p in batch.points], spool.ack(batch), spool.pending_points
    ([1.0], None, 0)
    """

    def __init__(self, directory: "str | os.PathLike[str]", options: Optional[SpoolOptions] = None,
                 on_drop: Optional[Callable[[str, int], None]] = None,
                 _clock: Callable[[], float] = time.time, **overrides: Any) -> None:
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"directory == {directory!r}, must be a path.")
        self.options = dataclasses.replace(resolve(options, SpoolOptions, "options"), **overrides)
        self.directory = os.fspath(directory)
        self._ack_path = os.path.join(self.directory, _ACK_FILE)
        self._on_drop = on_drop
        self._clock = _clock
        self._lock = threading.Lock()
        self._segments: List[_Segment] = []
        self._fd: Optional[int] = None
        self._state_line: Optional[bytes] = None
        self.recovered_state: Optional[Dict[str, Any]] = None
        os.makedirs(self.directory, exist_ok=True)
        self._recover()

    def _recover(self) -> None:
        ack = (0, 0)
        try:
            with open(self._ack_path, "rb") as f:
                data = json.loads(f.read())
            ack = (int(data["segment"]), int(data["offset"]))
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError):
            logger.warning("spool: %s is unreadable, replaying every segment", _ACK_FILE)
        self._ack, self._ack_points = ack, 0
        for seq, path in sorted((int(m.group(1)), os.path.join(self.directory, m.group(0)))
                                for m in map(_SEGMENT_RE.match, os.listdir(self.directory)) if m):
            if seq < ack[0]:
                _unlink(path)  # fully acknowledged before a crash
                continue
            segment, size = _Segment(seq, path, 0, 0), os.path.getsize(path)
            for line in _lines(path, 0, size):
                if line.startswith(_STATE_PREFIX):
                    self._state_line = line
                else:
                    segment.points += 1
                    self._ack_points += seq == ack[0] and segment.size < ack[1]
                segment.size += len(line)
            if segment.size != size:
                logger.warning("spool: truncating %d bytes of an unfinished write in %s",
                               size - segment.size, path)
                with open(path, "r+b") as f:
                    f.truncate(segment.size)
                    os.fsync(f.fileno())
            self._segments.append(segment)
        if self._segments and self._segments[0].seq != ack[0]:
            # The acknowledged segment was dropped (size bound) before the crash.
            self._ack, self._ack_points = (self._segments[0].seq, 0), 0
        if self._state_line is not None:
            try:
                self.recovered_state = json.loads(self._state_line)["__state__"]
            except (ValueError, KeyError, TypeError):
                logger.warning("spool: ignoring an unreadable state record")
                self._state_line = None
        self._open_new_segment()

    def _open_new_segment(self) -> None:
        self._close_fd()
        seq = (self._segments[-1].seq if self._segments else self._ack[0]) + 1
        path = os.path.join(self.directory, f"segment-{seq:020d}.jsonl")
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if not self._segments:
            self._ack, self._ack_points = (seq, 0), 0
        self._segments.append(_Segment(seq, path, 0, 0))
        if self._state_line is not None:
            self._write(self._state_line, 0)
        if self.options.fsync:
            _fsync_dir(self.directory)

    def _write(self, data: bytes, points: int) -> None:
        assert self._fd is not None
        segment = self._segments[-1]
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
            if self.options.fsync:
                os.fsync(self._fd)
        except OSError:
            # Cut a partial write off, so the file keeps matching ``segment.size``
            # (reads use it as their bound) and the next append starts on a line.
            os.ftruncate(self._fd, segment.size)
            raise
        segment.size += len(data)
        segment.points += points

    def append(self, points: Sequence[Dict[str, Any]],
               state: Optional[Dict[str, Any]] = None) -> None:
        """Durably append ``points`` (and ``state``, if given) in one write.

        Raises ValueError if a point holds NaN or an infinity (nothing is written then),
        OSError if the disk write fails.
        """
        state_line = None if state is None else encode_point({"__state__": state})
        blob = b"".join(encode_point(p) for p in points) + (state_line or b"")
        if not blob:
            return
        with self._lock:
            if self._fd is None:
                raise ValueError("the spool is closed")
            if self._segments[-1].size >= self.options.segment_bytes:
                self._open_new_segment()
            self._write(blob, len(points))
            self._state_line = state_line or self._state_line
            max_bytes = self.options.max_bytes
            while self.bytes > max_bytes and len(self._segments) > 1:
                victim = self._segments.pop(0)
                lost = victim.points - (self._ack_points if victim.seq == self._ack[0] else 0)
                _unlink(victim.path)
                self._ack, self._ack_points = (self._segments[0].seq, 0), 0
                self._write_ack()
                if lost:
                    logger.warning("spool: over %d bytes, dropped %d oldest points",
                                   max_bytes, lost)
                    self._dropped("size", lost)
            if self.bytes > max_bytes and self._segments[-1].size > 0:
                # The active segment alone is too big: start a new one, drop it next time.
                self._open_new_segment()

    def read(self, max_points: int) -> SpoolBatch:
        """Return up to ``max_points`` of the oldest unacknowledged points.

        Points older than ``max_age_seconds`` (and unreadable lines) at the head of the
        spool are dropped (acknowledged and counted) instead of returned.
        """
        if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
            raise ValueError(f"max_points == {max_points!r}, must be an integer >= 1.")
        with self._lock:
            return self._read_locked(max_points, self._clock() - self.options.max_age_seconds)

    def _read_locked(self, max_points: int, oldest_allowed: float,
                     drop: bool = True) -> SpoolBatch:
        """The batch from the acknowledgement point; ``drop``: the expired or unreadable lines
        before its first point are dropped for good (acknowledged and counted)."""
        points: List[Dict[str, Any]] = []
        lines: List[bytes] = []
        dropped: _Counter[str] = _Counter()
        corrupt = 0
        position: _Position = (self._ack, self._ack_points)
        skip_to: Optional[_Position] = None
        for position, line in self._scan():
            if line.startswith(_STATE_PREFIX):
                continue
            try:
                point = json.loads(line)
                reason = "age" if float(point["timestamp"]) < oldest_allowed else ""
            except (ValueError, KeyError, TypeError):
                reason = "corrupt"
            if reason and not points:  # at the head: dropped for good
                dropped[reason] += 1
                skip_to = position
            elif reason == "corrupt":
                corrupt += 1
            else:
                points.append(point)
                lines.append(line)
                if len(points) >= max_points:
                    break
        if drop and skip_to is not None:
            self._ack_locked(SpoolBatch([], [], *skip_to))
            for reason, count in sorted(dropped.items()):  # "age" before "corrupt"
                self._dropped(reason, count)
        return SpoolBatch(points, lines, *position, corrupt)

    def _scan(self) -> Iterator[Tuple[_Position, bytes]]:
        """Yield each line after the acknowledgement point with the position just past it."""
        for segment in self._segments:
            if segment.seq < self._ack[0]:
                continue
            pos, counted = (self._ack[1], self._ack_points) if segment.seq == self._ack[0] \
                else (0, 0)
            for line in _lines(segment.path, pos, segment.size):
                pos += len(line)
                counted += not line.startswith(_STATE_PREFIX)
                yield ((segment.seq, pos), counted), line

    def ack(self, batch: SpoolBatch) -> None:
        """Record that every point of ``batch`` (and all before it) was delivered."""
        with self._lock:
            self._ack_locked(batch)

    def _ack_locked(self, batch: SpoolBatch) -> None:
        if batch.cursor <= self._ack or not any(s.seq == batch.cursor[0] for s in self._segments):
            return  # already acknowledged, or its segment was dropped meanwhile
        if batch.corrupt:
            self._dropped("corrupt", batch.corrupt)
        self._ack, self._ack_points = batch.cursor, batch.cursor_points
        # Step over fully read segments ((seq, size) <= the ack) that are no longer written to.
        done: List[str] = []
        segments = self._segments
        while len(segments) > 1 and (segments[0].seq, segments[0].size) <= self._ack:
            if segments[0].seq == self._ack[0]:
                self._ack, self._ack_points = (segments[1].seq, 0), 0
            done.append(segments.pop(0).path)
        self._write_ack()
        for path in done:
            _unlink(path)

    def _write_ack(self) -> None:
        path = self._ack_path
        data = {"segment": self._ack[0], "offset": self._ack[1], "points": self._ack_points}
        _write_file(path + ".tmp", json.dumps(data).encode(), "wb", self.options.fsync)
        os.replace(path + ".tmp", path)
        if self.options.fsync:
            _fsync_dir(self.directory)

    def _dropped(self, reason: str, points: int) -> None:
        if self._on_drop is not None:
            try:
                self._on_drop(reason, points)
            except Exception:  # pragma: no cover - a metrics bug must not break the spool
                logger.exception("spool: on_drop failed")

    @property
    def bytes(self) -> int:
        """Total size of the segment files."""
        return sum(s.size for s in self._segments)

    @property
    def pending_points(self) -> int:
        """Points written and not yet acknowledged or dropped."""
        with self._lock:
            return sum(s.points for s in self._segments) - self._ack_points

    def oldest_timestamp(self) -> Optional[float]:
        """Timestamp of the oldest unacknowledged point, or None when empty."""
        with self._lock:
            batch = self._read_locked(1, -math.inf, drop=False)
        return float(batch.points[0]["timestamp"]) if batch.points else None

    def _close_fd(self) -> None:
        if self._fd is not None:
            if self.options.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Close the active segment (idempotent)."""
        with self._lock:
            self._close_fd()

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DeadLetter:
    """Append refused points to the JSON-lines file ``path`` (its directory created if
    missing), fsync'd if ``fsync``, up to ``max_bytes``: past it, further points are
    dropped and reported as ``on_drop(points)``."""

    def __init__(self, path: "str | os.PathLike[str]", max_bytes: int = 64 * 1024 * 1024,
                 fsync: bool = True, on_drop: Optional[Callable[[int], None]] = None) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path == {path!r}, must be a path.")
        self.path = os.fspath(path)
        self.max_bytes = DeadLetterOptions(max_bytes=max_bytes).max_bytes
        self.fsync = fsync
        self._on_drop = on_drop
        self._lock = threading.Lock()

    def write(self, points: Sequence[Dict[str, Any]], reason: str, status: Optional[int] = None,
              error: Optional[Any] = None, description: Optional[str] = None) -> int:
        """Append ``points`` with why they were refused; return how many were written."""
        if reason not in DEAD_LETTER_REASONS:
            raise ValueError(f"reason == {reason!r}, must be one of {list(DEAD_LETTER_REASONS)}.")
        description = None if description is None else str(description)[:500]
        lines = [encode_point({"reason": reason, "status": status, "error": error,
                               "description": description, "point": point}, allow_nan=True)
                 for point in points]
        with self._lock:
            if lines and os.path.dirname(self.path):
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
            size = os.path.getsize(self.path) if lines and os.path.exists(self.path) else 0
            ends = itertools.accumulate(len(line) for line in lines)
            kept = sum(size + end <= self.max_bytes for end in ends)  # the lines that fit
            if kept:
                _write_file(self.path, b"".join(lines[:kept]), "ab", self.fsync)
        if len(lines) > kept and self._on_drop is not None:
            self._on_drop(len(lines) - kept)
        return kept


@dataclass
class PointsFile:
    """Points read from a file, and the ``(line number, problem)`` of lines left out."""

    points: List[Dict[str, Any]] = field(default_factory=list)
    problems: List[Tuple[int, str]] = field(default_factory=list)

    def add(self, number: int, item: Any) -> None:
        """Keep the point ``item`` (or a dead letter's point), else note why it is unusable."""
        if isinstance(item, dict) and isinstance(item.get("point"), dict) and "reason" in item:
            item = item["point"]
        if isinstance(item, dict) and "__state__" in item:
            return  # a spool's state record
        if not isinstance(item, dict):
            problem = "not a JSON object"
        elif not isinstance(item.get("properties"), dict) or not item["properties"].get("what"):
            problem = "properties.what is missing"
        elif not _is_finite(item.get("timestamp")):
            problem = "timestamp is not a number"
        elif not _is_finite(item.get("value")):
            problem = "value is not a finite number"
        else:
            self.points.append(dict(item, timestamp=int(item["timestamp"])))
            return
        self.problems.append((number, problem))


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_points(path: "str | os.PathLike[str]") -> PointsFile:
    """Read every point of the file at ``path``; report unusable lines with their number.

    The file is a JSON array of points, or JSON lines of points, dead letters or spool
    state records; as the ancestor wrote them, lines may end with a comma and the
    file may open with ``[`` and close with ``]``.
    """
    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    out = PointsFile()
    try:
        data = json.loads(text) if text.strip().startswith("[") else None
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
        try:
            item = json.loads(line.lstrip("[").rstrip("]"))
        except ValueError:
            out.problems.append((number, "not valid JSON"))
            continue
        out.add(number, item)
    return out


def _lines(path: str, start: int, end: int) -> Iterator[bytes]:
    """Yield the newline-terminated lines of ``path`` between ``start`` and ``end``, lazily."""
    with open(path, "rb") as f:
        f.seek(start)
        while start < end:
            line = f.readline(end - start)
            if not line.endswith(b"\n"):
                return
            start += len(line)
            yield line


def _write_file(path: str, data: bytes, mode: str, fsync: bool) -> None:
    with open(path, mode) as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _fsync_dir(directory: str) -> None:
    with contextlib.suppress(OSError):  # platforms without directory fds
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
