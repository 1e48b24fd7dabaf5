"""Retry timing: capped exponential backoff with jitter, and ``Retry-After`` parsing."""

from __future__ import annotations

import email.utils
import math
import random
from typing import Optional, Union

__all__ = ["Backoff", "parse_retry_after"]


class Backoff:
    """Capped exponential backoff with jitter.

    The delay before retry ``attempt`` (0-based) is
    ``d = min(maximum, initial * multiplier ** attempt)`` of which a fraction ``jitter``
    is random: the result is uniform in ``[d * (1 - jitter), d]``.

    Parameters
    ----------
    initial : float
        First delay in seconds, >= 0.
    maximum : float
        Cap in seconds, >= initial.
    multiplier : float, default=2.0
        Growth factor, >= 1.
    jitter : float, default=0.5
        Randomised fraction, 0 to 1.
    random_state : None, int or random.Random, default=None
        Seed or generator of the jitter.

    Examples
    --------
    >>> b = Backoff(1.0, 8.0, jitter=0.0)
    >>> [b.delay(a) for a in range(5)]
    [1.0, 2.0, 4.0, 8.0, 8.0]
    """

    def __init__(
        self,
        initial: float,
        maximum: float,
        multiplier: float = 2.0,
        jitter: float = 0.5,
        random_state: Union[None, int, random.Random] = None,
    ) -> None:
        if not initial >= 0:
            raise ValueError(f"initial == {initial!r}, must be >= 0.")
        if not maximum >= initial:
            raise ValueError(f"maximum == {maximum!r}, must be >= initial ({initial!r}).")
        if not multiplier >= 1:
            raise ValueError(f"multiplier == {multiplier!r}, must be >= 1.")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter == {jitter!r}, must be between 0 and 1.")
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.multiplier = float(multiplier)
        self.jitter = float(jitter)
        if isinstance(random_state, random.Random):
            self._random = random_state
        else:
            self._random = random.Random(random_state)

    def delay(self, attempt: int) -> float:
        """Return the seconds to wait before retry number ``attempt`` (0 for the first)."""
        if attempt < 0:
            raise ValueError(f"attempt == {attempt!r}, must be >= 0.")
        # Avoid float overflow for long outages: the cap is reached long before.
        exponent = min(attempt, 1000)
        try:
            base = self.initial * self.multiplier ** exponent
        except OverflowError:
            base = math.inf
        base = min(self.maximum, base)
        if self.jitter == 0:
            return base
        return base * (1.0 - self.jitter * self._random.random())


def parse_retry_after(value: Optional[str], now: float) -> Optional[float]:
    """Return the seconds a ``Retry-After`` header asks to wait, or None if absent or invalid.

    Parameters
    ----------
    value : str or None
        The header: delay seconds (``"120"``, fractions accepted) or an HTTP date.
    now : float
        Current Unix time, for the HTTP-date form.

    Examples
    --------
    >>> parse_retry_after("3", now=0.0)
    3.0
    >>> parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=4.0)
    6.0
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:  # pragma: no cover - older Pythons
            return None
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
