"""A durable, bounded, append-only spool of Anodot points on disk.

Layout of the spool directory::

    segment-00000000000000000001.jsonl   one JSON point per line, append-only
    segment-00000000000000000002.jsonl   the active segment (written by this process)
    ack.json                             {"segment": 1, "offset": 5120, "points": 40}

``append()`` writes every point of one snapshot with a single ``write`` and fsyncs the
file before returning, so a point that ``append()`` returned for survives a crash.
``read()`` returns the oldest unacknowledged points; ``ack()`` records, atomically
(write, fsync, rename, fsync of the directory), that they were accepted, and deletes
segments that are fully acknowledged. After a restart the spool continues from
``ack.json``, so points written before the crash are sent before newer ones.

Bounds: past ``max_bytes`` the oldest segments are deleted; points older than
``max_age_seconds`` are skipped when read. Both are counted through ``on_drop``.

The spool can also carry a small JSON *state* (the bridge's last counter values) in the
same write as the points it belongs to, so the two can never disagree after a crash;
the last state is copied to the start of every new segment and is available after a
restart as :attr:`Spool.recovered_state`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

__all__ = ["Spool", "SpoolBatch", "encode_point"]

logger = logging.getLogger(__name__)

_SEGMENT_RE = re.compile(r"^segment-(\d{20})\.jsonl$")
_ACK_FILE = "ack.json"
_STATE_PREFIX = b'{"__state__":'


def encode_point(point: Dict[str, Any]) -> bytes:
    """Return ``point`` as one compact JSON line (NaN and infinities are refused)."""
    return json.dumps(point, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"


@dataclass
class _Segment:
    seq: int
    path: str
    size: int
    points: int


@dataclass(frozen=True)
class SpoolBatch:
    """Oldest unacknowledged points, and where to acknowledge up to once they are sent.

    Attributes
    ----------
    points : list of dict
        The points, oldest first.
    lines : list of bytes
        The same points as stored (JSON, newline-terminated).
    cursor : tuple of int
        ``(segment, offset)`` just past the last line read.
    cursor_points : int
        Points stored in the cursor's segment before ``cursor``.
    corrupt : int
        Unreadable lines among them (counted as dropped when acknowledged).
    """

    points: List[Dict[str, Any]]
    lines: List[bytes]
    cursor: Tuple[int, int]
    cursor_points: int
    corrupt: int = 0


class Spool:
    """Durable FIFO of points with acknowledgement, size and age bounds.

    Parameters
    ----------
    directory : str or os.PathLike
        Directory of the segments; created if missing. One process at a time.
    max_bytes : int, default=268435456
        Bound on the segments' total size; the oldest segments are dropped beyond it.
    max_age_seconds : float, default=86400.0
        Points whose ``timestamp`` is older than this when read are dropped unsent.
    segment_bytes : int, default=4194304
        Size past which the active segment is closed and a new one started.
    fsync : bool, default=True
        fsync appends and acknowledgements.
    on_drop : callable, default=None
        Called as ``on_drop(reason, points)`` when points are dropped; reason is
        ``"size"``, ``"age"`` or ``"corrupt"``.
    _clock : callable, default=time.time
        Returns the current Unix time.

    Examples
    --------
    >>> import tempfile
    >>> spool = Spool(tempfile.mkdtemp(), _clock=lambda: 100.0)
    >>> spool.append([{"properties": {"what": "x"}, "timestamp": 99, "value": 1.0}])
    >>> batch = spool.read(1000)
    >>> [p["value"] for p in batch.points]
    [1.0]
    >>> spool.ack(batch)
    >>> spool.pending_points
    0
    """

    def __init__(
        self,
        directory: "str | os.PathLike[str]",
        max_bytes: int = 256 * 1024 * 1024,
        max_age_seconds: float = 86400.0,
        segment_bytes: int = 4 * 1024 * 1024,
        fsync: bool = True,
        on_drop: Optional[Callable[[str, int], None]] = None,
        _clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"directory == {directory!r}, must be a path.")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1024:
            raise ValueError(f"max_bytes == {max_bytes!r}, must be an integer >= 1024.")
        if not isinstance(segment_bytes, int) or not 256 <= segment_bytes <= max_bytes // 2:
            raise ValueError(
                f"segment_bytes == {segment_bytes!r}, must be an integer from 256 to "
                f"max_bytes / 2 ({max_bytes // 2})."
            )
        if not isinstance(max_age_seconds, (int, float)) or not max_age_seconds > 0:
            raise ValueError(f"max_age_seconds == {max_age_seconds!r}, must be > 0.")
        self.directory = os.fspath(directory)
        self.max_bytes = max_bytes
        self.max_age_seconds = float(max_age_seconds)
        self.segment_bytes = segment_bytes
        self.fsync = bool(fsync)
        self._on_drop = on_drop
        self._clock = _clock
        self._lock = threading.Lock()
        self._segments: List[_Segment] = []
        self._ack: Tuple[int, int] = (0, 0)
        self._ack_points = 0
        self._fd: Optional[int] = None
        self._state_line: Optional[bytes] = None
        self._oldest: Optional[float] = None
        self._oldest_known = False
        self.recovered_state: Optional[Dict[str, Any]] = None
        os.makedirs(self.directory, exist_ok=True)
        self._recover()

    # ------------------------------------------------------------------ recovery
    def _recover(self) -> None:
        ack = self._load_ack()
        found: List[Tuple[int, str]] = []
        for name in os.listdir(self.directory):
            match = _SEGMENT_RE.match(name)
            if match:
                found.append((int(match.group(1)), os.path.join(self.directory, name)))
        found.sort()
        last_state: Optional[bytes] = None
        for seq, path in found:
            if seq < ack[0]:
                _unlink(path)  # fully acknowledged before a crash
                continue
            with open(path, "rb") as f:
                data = f.read()
            cut = data.rfind(b"\n") + 1
            if cut != len(data):
                logger.warning("spool: truncating %d bytes of an unfinished write in %s",
                               len(data) - cut, path)
                with open(path, "r+b") as f:
                    f.truncate(cut)
                    f.flush()
                    os.fsync(f.fileno())
                data = data[:cut]
            points = 0
            points_before_ack = 0
            pos = 0
            for line in data.splitlines(keepends=True):
                if line.startswith(_STATE_PREFIX):
                    last_state = line
                else:
                    points += 1
                    if seq == ack[0] and pos < ack[1]:
                        points_before_ack += 1
                pos += len(line)
            self._segments.append(_Segment(seq, path, len(data), points))
            if seq == ack[0]:
                self._ack_points = points_before_ack
        if self._segments and self._segments[0].seq != ack[0]:
            # The acknowledged segment was dropped (size bound) before the crash.
            ack = (self._segments[0].seq, 0)
            self._ack_points = 0
        self._ack = ack
        if last_state is not None:
            try:
                self.recovered_state = json.loads(last_state)["__state__"]
                self._state_line = last_state
            except (ValueError, KeyError, TypeError):
                logger.warning("spool: ignoring an unreadable state record")
        self._open_new_segment()

    def _load_ack(self) -> Tuple[int, int]:
        path = os.path.join(self.directory, _ACK_FILE)
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read())
            return int(data["segment"]), int(data["offset"])
        except FileNotFoundError:
            return (0, 0)
        except (ValueError, KeyError, TypeError):
            logger.warning("spool: %s is unreadable, replaying every segment", path)
            return (0, 0)

    # ------------------------------------------------------------------ writing
    def _open_new_segment(self) -> None:
        if self._fd is not None:
            if self.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
        seq = (self._segments[-1].seq if self._segments else self._ack[0]) + 1
        path = os.path.join(self.directory, f"segment-{seq:020d}.jsonl")
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        segment = _Segment(seq, path, 0, 0)
        if not self._segments:
            self._ack = (seq, 0)
            self._ack_points = 0
        self._segments.append(segment)
        if self._state_line is not None:
            self._write(self._state_line, 0)
        if self.fsync:
            _fsync_dir(self.directory)

    def _write(self, data: bytes, points: int) -> None:
        assert self._fd is not None
        segment = self._segments[-1]
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self.fsync:
                os.fsync(self._fd)
        except OSError:
            # Cut a partial write off, so the file keeps matching ``segment.size``
            # (reads use it as their bound) and the next append starts on a line.
            os.ftruncate(self._fd, segment.size)
            raise
        segment.size += len(data)
        segment.points += points

    def append(
        self, points: Sequence[Dict[str, Any]], state: Optional[Dict[str, Any]] = None
    ) -> None:
        """Durably append ``points`` (and ``state``, if given) in one write.

        Raises
        ------
        ValueError
            If a point holds NaN or an infinity (nothing is written then).
        OSError
            If the disk write fails.
        """
        blob = b"".join(encode_point(p) for p in points)
        state_line = None
        if state is not None:
            state_line = json.dumps({"__state__": state}, separators=(",", ":")).encode() + b"\n"
            blob += state_line
        if not blob:
            return
        with self._lock:
            if self._fd is None:
                raise ValueError("the spool is closed")
            if self._segments[-1].size >= self.segment_bytes:
                self._open_new_segment()
            self._write(blob, len(points))
            if state_line is not None:
                self._state_line = state_line
            if points and self._oldest is None:
                self._oldest_known = False  # was empty: the oldest point is new
            self._enforce_size()

    def _enforce_size(self) -> None:
        while self.bytes > self.max_bytes and len(self._segments) > 1:
            victim = self._segments.pop(0)
            lost = victim.points - (self._ack_points if victim.seq == self._ack[0] else 0)
            _unlink(victim.path)
            self._ack = (self._segments[0].seq, 0)
            self._ack_points = 0
            self._write_ack()
            self._oldest_known = False
            if lost:
                logger.warning("spool: over %d bytes, dropped %d oldest points",
                               self.max_bytes, lost)
                self._dropped("size", lost)
        if self.bytes > self.max_bytes and self._segments[-1].size > 0:
            # The active segment alone is too big: start a new one, drop it next time.
            self._open_new_segment()

    # ------------------------------------------------------------------ reading
    def read(self, max_points: int) -> SpoolBatch:
        """Return up to ``max_points`` of the oldest unacknowledged points.

        Points older than ``max_age_seconds`` (and unreadable lines) at the head of the
        spool are dropped (acknowledged and counted) instead of returned.
        """
        if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
            raise ValueError(f"max_points == {max_points!r}, must be an integer >= 1.")
        with self._lock:
            oldest_allowed = self._clock() - self.max_age_seconds
            batch, prefix, expired, corrupt = self._read_locked(max_points, oldest_allowed)
            if prefix is not None:
                # Drop what precedes the first point to return, for good.
                self._ack_locked(SpoolBatch([], [], prefix[0], prefix[1]))
                if expired:
                    self._dropped("age", expired)
                if corrupt:
                    self._dropped("corrupt", corrupt)
            return batch

    def _read_locked(
        self, max_points: int, oldest_allowed: float
    ) -> Tuple[SpoolBatch, Optional[Tuple[Tuple[int, int], int]], int, int]:
        """Read from the acknowledgement point.

        Returns the batch, the position just before its first point when lines to drop
        precede it (else None), and how many of those were expired or unreadable.
        """
        points: List[Dict[str, Any]] = []
        lines: List[bytes] = []
        expired = corrupt = corrupt_inside = 0
        cursor = self._ack
        cursor_points = self._ack_points
        prefix: Optional[Tuple[Tuple[int, int], int]] = None
        for segment in self._segments:
            if segment.seq < self._ack[0]:
                continue
            start = self._ack[1] if segment.seq == self._ack[0] else 0
            counted = self._ack_points if segment.seq == self._ack[0] else 0
            if start >= segment.size:
                cursor, cursor_points = (segment.seq, segment.size), counted
                continue
            pos = start
            for line in _lines(segment.path, start, segment.size):
                if len(points) >= max_points:
                    break
                before = (segment.seq, pos), counted
                pos += len(line)
                if line.startswith(_STATE_PREFIX):
                    cursor, cursor_points = (segment.seq, pos), counted
                    continue
                counted += 1
                cursor, cursor_points = (segment.seq, pos), counted
                try:
                    point = json.loads(line)
                    timestamp = float(point["timestamp"])
                except (ValueError, KeyError, TypeError):
                    if points:
                        corrupt_inside += 1
                    else:
                        corrupt += 1
                    continue
                if timestamp < oldest_allowed and not points:
                    expired += 1
                    continue
                if not points and (expired or corrupt):
                    prefix = before
                points.append(point)
                lines.append(line)
            if len(points) >= max_points:
                break
        if not points and (expired or corrupt):
            prefix = (cursor, cursor_points)
        batch = SpoolBatch(points, lines, cursor, cursor_points, corrupt_inside)
        return batch, prefix, expired, corrupt

    # ------------------------------------------------------------------ acknowledging
    def ack(self, batch: SpoolBatch) -> None:
        """Record that every point of ``batch`` (and all before it) was delivered."""
        with self._lock:
            self._ack_locked(batch)

    def _ack_locked(self, batch: SpoolBatch) -> None:
        if batch.cursor <= self._ack:
            return  # already acknowledged, or its segment was dropped meanwhile
        if not any(s.seq == batch.cursor[0] for s in self._segments):
            return
        if batch.corrupt:
            self._dropped("corrupt", batch.corrupt)
        self._ack = batch.cursor
        self._ack_points = batch.cursor_points
        # Step over a fully read segment that is no longer written to.
        done: List[str] = []
        while len(self._segments) > 1 and self._segments[0].seq <= self._ack[0]:
            first = self._segments[0]
            if first.seq < self._ack[0] or self._ack[1] >= first.size:
                if first.seq == self._ack[0]:
                    self._ack = (self._segments[1].seq, 0)
                    self._ack_points = 0
                self._segments.pop(0)
                done.append(first.path)
            else:
                break
        self._write_ack()
        for path in done:
            _unlink(path)
        self._oldest_known = False

    def _write_ack(self) -> None:
        path = os.path.join(self.directory, _ACK_FILE)
        tmp = path + ".tmp"
        data = json.dumps(
            {"segment": self._ack[0], "offset": self._ack[1], "points": self._ack_points}
        ).encode()
        with open(tmp, "wb") as f:
            f.write(data)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if self.fsync:
            _fsync_dir(self.directory)

    def _dropped(self, reason: str, points: int) -> None:
        if self._on_drop is not None:
            try:
                self._on_drop(reason, points)
            except Exception:  # pragma: no cover - a metrics bug must not break the spool
                logger.exception("spool: on_drop failed")

    # ------------------------------------------------------------------ introspection
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
            if not self._oldest_known:
                batch = self._read_locked(1, float("-inf"))[0]
                self._oldest = float(batch.points[0]["timestamp"]) if batch.points else None
                self._oldest_known = True
            return self._oldest

    def close(self) -> None:
        """Close the active segment (idempotent)."""
        with self._lock:
            if self._fd is not None:
                if self.fsync:
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lines(path: str, start: int, end: int, chunk: int = 1 << 16) -> Iterator[bytes]:
    """Yield the newline-terminated lines of ``path`` between ``start`` and ``end``, lazily."""
    with open(path, "rb") as f:
        f.seek(start)
        remaining = end - start
        tail = b""
        while remaining > 0:
            data = f.read(min(chunk, remaining))
            if not data:
                break
            remaining -= len(data)
            parts = (tail + data).split(b"\n")
            tail = parts.pop()
            for part in parts:
                yield part + b"\n"
        # Bytes after the last newline belong to no complete line (cannot happen
        # below ``end``, which only ever counts whole appends).


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
