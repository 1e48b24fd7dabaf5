"""A bounded JSON-lines file of the points Anodot refused, kept for inspection and replay.

Each line is ``{"reason": ..., "status": ..., "error": ..., "description": ...,
"point": {...}}``; ``mlwatcher-exporter anodot-send FILE`` accepts the file as it is.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Callable, Dict, Optional, Sequence

__all__ = ["DeadLetter", "DEAD_LETTER_REASONS"]

# Why points end up here: refused one by one (indexed errors), or the whole request
# refused with 400, 401/403 or another status that retrying cannot fix.
DEAD_LETTER_REASONS = ("rejected", "bad_request", "unauthorized", "client_error", "undelivered")


class DeadLetter:
    """Append refused points to ``path``, up to ``max_bytes``.

    Parameters
    ----------
    path : str or os.PathLike
        The JSON-lines file; its directory is created if missing.
    max_bytes : int, default=67108864
        Past this size further points are dropped and reported through ``on_drop``.
    fsync : bool, default=True
        fsync after every write.
    on_drop : callable, default=None
        Called as ``on_drop(points)`` for points not written because the file is full.
    """

    def __init__(
        self,
        path: "str | os.PathLike[str]",
        max_bytes: int = 64 * 1024 * 1024,
        fsync: bool = True,
        on_drop: Optional[Callable[[int], None]] = None,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path == {path!r}, must be a path.")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes == {max_bytes!r}, must be an integer >= 0.")
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._on_drop = on_drop
        self._lock = threading.Lock()

    def write(
        self,
        points: Sequence[Dict[str, Any]],
        reason: str,
        status: Optional[int] = None,
        error: Optional[Any] = None,
        description: Optional[str] = None,
    ) -> int:
        """Append ``points`` with why they were refused; return how many were written."""
        if reason not in DEAD_LETTER_REASONS:
            raise ValueError(f"reason == {reason!r}, must be one of {list(DEAD_LETTER_REASONS)}.")
        if not points:
            return 0
        lines = [
            json.dumps(
                {
                    "reason": reason,
                    "status": status,
                    "error": error,
                    "description": None if description is None else str(description)[:500],
                    "point": point,
                },
                separators=(",", ":"),
                allow_nan=True,
            ).encode("utf-8")
            + b"\n"
            for point in points
        ]
        with self._lock:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            try:
                size = os.path.getsize(self.path)
            except FileNotFoundError:
                size = 0
            keep = []
            for line in lines:
                if size + len(line) > self.max_bytes:
                    break
                keep.append(line)
                size += len(line)
            if keep:
                with open(self.path, "ab") as f:
                    f.write(b"".join(keep))
                    if self.fsync:
                        f.flush()
                        os.fsync(f.fileno())
        dropped = len(lines) - len(keep)
        if dropped and self._on_drop is not None:
            self._on_drop(dropped)
        return len(keep)
