"""A Waiter for tests: the worker runs one round at a time, when the test says."""

from __future__ import annotations

import threading
from typing import List


class SteppedWaiter:
    """Implements :class:`mlwatcher_exporter.worker.Waiter` without real time.

    ``notify`` is recorded but does not wake the worker: the test decides each step.
    After :meth:`open`, every wait returns at once (for a clean stop).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._permits = 0
        self._open = False
        self.timeouts: List[float] = []
        self.notified = 0

    def wait(self, timeout: float) -> None:
        with self._cond:
            self.timeouts.append(timeout)
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._permits > 0 or self._open)
            if self._permits:
                self._permits -= 1

    def notify(self) -> None:
        with self._cond:
            self.notified += 1

    def wait_for_waits(self, count: int) -> None:
        """Return once the worker has started its `count`-th wait (bounded)."""
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.timeouts) >= count, timeout=30), (
                "the worker did not come back to wait"
            )

    def step(self) -> None:
        """Let the worker do one round and return once it waits again."""
        with self._cond:
            waits = len(self.timeouts)
            self._permits += 1
            self._cond.notify_all()
        self.wait_for_waits(waits + 1)

    def open(self) -> None:
        """Let every wait return at once."""
        with self._cond:
            self._open = True
            self._cond.notify_all()
