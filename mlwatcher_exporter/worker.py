"""The background worker: one daemon thread per monitor that processes staged batches
and closes windows on time, off the model's threads.

The thread holds its monitor only weakly, so a monitor dropped without ``close()`` is
collected and its thread ends. How the thread waits is a :class:`Waiter`, so that tests
drive the worker step by step without real time.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Optional, Protocol

__all__ = ["Waiter", "EventWaiter", "Worker"]


class Waiter(Protocol):
    """How the worker sleeps between steps."""

    def wait(self, timeout: float) -> None:
        """Return after `timeout` seconds, or earlier once :meth:`notify` was called."""

    def notify(self) -> None:
        """Wake the waiting worker (cheap; called from the request path)."""


class EventWaiter:
    """A :class:`Waiter` on a :class:`threading.Event`."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wait(self, timeout: float) -> None:
        """Sleep until notified or `timeout`."""
        self._event.wait(timeout)
        self._event.clear()

    def notify(self) -> None:
        """Wake the worker."""
        self._event.set()


class Worker:
    """Runs ``step(target)`` whenever woken, and at the times ``step`` returns.

    Parameters
    ----------
    target : object
        Held weakly; the thread ends when it is collected.
    step : callable(target) -> float
        One round of work; returns the seconds until the next one is due. A plain
        function, not a bound method of `target` (which would keep it alive).
    name : str
        The thread's name.
    waiter : Waiter
    on_error : callable(BaseException)
        Called when a step raises; the worker goes on.
    """

    def __init__(
        self,
        target: Any,
        step: Callable[[Any], float],
        name: str,
        waiter: Waiter,
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._target = weakref.ref(target)
        self._step = step
        self._waiter = waiter
        self._on_error = on_error
        self._stopped = False
        self._thread: Optional[threading.Thread] = None
        self._name = name
        self._lock = threading.Lock()
        # Stop when the target goes away without close().
        weakref.finalize(target, self.stop, False)

    def start(self) -> None:
        """Start the thread (once)."""
        with self._lock:
            if self._thread is not None or self._stopped:
                return
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopped:
            target = self._target()
            if target is None:
                return
            try:
                delay = self._step(target)
            except Exception as error:  # noqa: BLE001 - the worker must survive a bad step
                self._on_error(error)
                delay = 1.0
            del target  # never hold the target while sleeping
            if self._stopped:
                return
            self._waiter.wait(min(max(delay, 0.001), 1.0))

    def stop(self, join: bool = True) -> None:
        """Stop the thread; with `join`, wait for it (up to 5 s)."""
        self._stopped = True
        self._waiter.notify()
        thread = self._thread
        if join and thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
