"""Logging at a bounded rate, so that a flood of bad batches cannot flood the logs."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Dict

__all__ = ["RateLimitedLogger"]


class RateLimitedLogger:
    """Logs at most one message per key per `interval` seconds, then says how many
    were suppressed in between.

    Parameters
    ----------
    logger : logging.Logger
    interval : float, default=60.0
        Seconds between two messages of the same key.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        _clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = _clock
        self._last: Dict[str, float] = {}
        self._suppressed: Dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, key: str, message: str, exc_info: bool = False) -> bool:
        """Log `message` unless `key` was logged less than `interval` ago; return whether
        it was logged."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += f" ({suppressed} similar message(s) suppressed)"
        self._logger.warning(message, exc_info=exc_info)
        return True
