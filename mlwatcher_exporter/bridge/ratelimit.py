"""Client-side rate limiting: token buckets for points per second and requests per minute."""

from __future__ import annotations

import threading
import time
from typing import Callable

__all__ = ["TokenBucket", "RateLimiter"]


class TokenBucket:
    """A token bucket that lets callers reserve tokens ahead and tells them how long to wait.

    Parameters
    ----------
    rate : float
        Tokens added per second, > 0.
    capacity : float
        Most tokens the bucket holds (the largest burst), > 0.
    _clock : callable, default=time.monotonic
        Returns the current time in seconds.

    Examples
    --------
    >>> bucket = TokenBucket(rate=10.0, capacity=10.0, _clock=lambda: 0.0)
    >>> bucket.reserve(10)
    0.0
    >>> bucket.reserve(5)
    0.5
    """

    def __init__(
        self, rate: float, capacity: float, _clock: Callable[[], float] = time.monotonic
    ) -> None:
        for name, value in (("rate", rate), ("capacity", capacity)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} == {value!r}, must be a number.")
            if not value > 0:
                raise ValueError(f"{name} == {value!r}, must be > 0.")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._clock = _clock
        self._tokens = self.capacity
        self._last = _clock()
        self._lock = threading.Lock()

    def reserve(self, tokens: float) -> float:
        """Take ``tokens`` now (the balance may go negative) and return the seconds to wait."""
        if tokens < 0:
            raise ValueError(f"tokens == {tokens!r}, must be >= 0.")
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= tokens
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.rate


class RateLimiter:
    """Both limits of an Anodot account: points per second and requests per minute.

    Parameters
    ----------
    points_per_second : float
        Sustained points per second.
    requests_per_minute : float
        Sustained requests per minute.
    batch_size : int, default=1000
        Largest request; the points bucket holds at least one full batch.
    _clock : callable, default=time.monotonic
        Returns the current time in seconds.
    """

    def __init__(
        self,
        points_per_second: float,
        requests_per_minute: float,
        batch_size: int = 1000,
        _clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.points = TokenBucket(
            points_per_second, max(float(points_per_second), float(batch_size)), _clock
        )
        per_second = requests_per_minute / 60.0
        self.requests = TokenBucket(per_second, max(1.0, per_second), _clock)

    def reserve(self, points: int) -> float:
        """Reserve one request of ``points`` points; return the seconds to wait before sending."""
        return max(self.points.reserve(points), self.requests.reserve(1))
