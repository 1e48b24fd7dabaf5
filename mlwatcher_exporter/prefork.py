"""Pre-fork servers: monitors that survive ``os.fork`` and a port several workers want.

gunicorn, uvicorn's workers and friends fork worker processes, often after the
application was imported (``--preload``). Two things go wrong without care:

- **State created before the fork.** A child inherits the parent's staged rows,
  counters and window, and locks that another thread may have held at the fork. With
  ``os.register_at_fork``, every live monitor of a child starts again **empty**: fresh
  staging, counters, window, worker thread and locks, and a reservoir seeded afresh
  (seeded monitors: from their seed and the child's pid). Rows observed before the fork
  (a warm-up prediction at import) stay counted in the parent alone, once. The parent
  is unaffected. Learned inputs (classes, feature names) are kept.
- **One port, several workers.** :meth:`ModelMonitor.start_http_server` on a port that
  is taken logs once and returns a :class:`NotServing` handle (``serving`` is False);
  the monitor keeps working. When a monitor sees that it runs in one of several worker
  processes without ``PROMETHEUS_MULTIPROC_DIR`` (its parent process is a pre-fork
  server, or it was created before a fork), it warns, once, with the fix.

In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set), see :mod:`.multiprocess`.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from .httpserver import format_host

if TYPE_CHECKING:  # pragma: no cover
    from .monitor import ModelMonitor

__all__ = ["attach", "reset_after_fork", "serve_quietly", "NotServing", "server_parent",
           "PREFORK_SERVERS"]

logger = logging.getLogger("mlwatcher_exporter")

# Process names of pre-fork servers, as they appear in the parent's command line.
PREFORK_SERVERS = ("gunicorn", "uvicorn", "hypercorn", "uwsgi", "waitress")

_MONITORS: "weakref.WeakSet[ModelMonitor]" = weakref.WeakSet()
_warned = {"workers": False, "port": False}

_FIX = (
    "each worker then publishes only its own rows and every scrape reaches one worker at "
    "random. Set PROMETHEUS_MULTIPROC_DIR to an empty directory before the server starts "
    "and serve mlwatcher_exporter.multiprocess.make_wsgi_app() (see docs/deploying.md)"
)


def server_parent(ppid: Optional[int] = None) -> Optional[str]:
    """The pre-fork server that is this process's parent, from its command line, or None
    (also where ``/proc`` is not available)."""
    try:
        with open(f"/proc/{os.getppid() if ppid is None else ppid}/cmdline", "rb") as file:
            command = file.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return None
    for name in PREFORK_SERVERS:
        if name in command:
            return name
    return None


def _multiprocess() -> bool:
    from .multiprocess import multiproc_dir

    return multiproc_dir() is not None


def _warn_workers(reason: str) -> None:
    if _warned["workers"]:
        return
    _warned["workers"] = True
    logger.warning("mlwatcher: %s without PROMETHEUS_MULTIPROC_DIR: %s", reason, _FIX)


def attach(monitor: "ModelMonitor") -> None:
    """Called by each new monitor: kept (weakly) for the fork hook; in multiprocess mode
    handed to :mod:`.multiprocess`; otherwise warned about several workers."""
    _MONITORS.add(monitor)
    if _multiprocess():
        from . import multiprocess

        multiprocess.attach(monitor)
        return
    parent = server_parent()
    if parent is not None:
        _warn_workers(f"model {monitor.model!r} runs in a worker process of {parent}")


def reset_after_fork(monitor: "ModelMonitor") -> None:
    """Give `monitor` empty state, a new worker thread and new locks (in a child)."""
    from .worker import EventWaiter

    if isinstance(monitor._waiter, EventWaiter):
        monitor._waiter = EventWaiter()
    # Locks another thread may have held at the fork would stay held forever.
    monitor._log._lock = threading.Lock()
    monitor._schema._lock = threading.Lock()
    seed = np.random.SeedSequence(monitor.random_state, spawn_key=(os.getpid(),))
    old = monitor._pipeline
    monitor._build(old._wall_clock, np.random.default_rng(seed))
    monitor.history.after_fork()
    collector = getattr(monitor.registry, "_mlwatcher_collector", None)
    if collector is not None:
        collector._lock = threading.Lock()
        collector._parts.clear()


def _after_fork_in_child() -> None:
    from . import collector, exposition

    collector._COLLECTORS_LOCK = threading.Lock()
    # The parent's servers have no thread here; their sockets are the parent's.
    exposition._RUNNING_LOCK = threading.Lock()
    exposition._RUNNING.clear()
    _warned["port"] = False
    _warned["workers"] = False
    monitors = [monitor for monitor in list(_MONITORS) if not monitor._closed]
    for monitor in monitors:
        try:
            reset_after_fork(monitor)
        except Exception:  # noqa: BLE001 - a fork must never fail because of us
            logger.warning("mlwatcher: model %r: reset after fork failed", monitor.model,
                           exc_info=True)
    multiprocess = _multiprocess()
    if multiprocess:
        from . import multiprocess as module

        module.after_fork(monitors)
    elif monitors:
        _warn_workers(f"{len(monitors)} monitor(s) were created before this process was "
                      "forked (gunicorn --preload?)")


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


class NotServing:
    """What :meth:`ModelMonitor.start_http_server` returns when the port is taken.

    ``serving`` is False, ``reason`` says why; :meth:`shutdown` does nothing.
    """

    serving = False

    def __init__(self, addr: str, port: int, reason: str) -> None:
        self.addr = addr
        self.port = port
        self.reason = reason
        self.thread = None
        self.connections = 0

    @property
    def url(self) -> str:
        """The metrics URL that another server holds."""
        return f"http://{format_host(self.addr)}:{self.port}/metrics"

    def shutdown(self) -> None:
        """Nothing to stop."""

    def __repr__(self) -> str:
        return f"NotServing(url={self.url!r}, reason={self.reason!r})"


def serve_quietly(start: Callable[..., Any], port: int, addr: str, registry: Any,
                  web_config: Any, limits: Any) -> Any:
    """``start(port, addr, registry=..., ...)``, but a taken port logs once and returns
    a :class:`NotServing` handle instead of raising into the application. In
    multiprocess mode, the served registry merges every worker (:mod:`.multiprocess`)."""
    if _multiprocess():
        from .multiprocess import multiprocess_registry

        registry = multiprocess_registry()
    try:
        server = start(port, addr, registry=registry, web_config=web_config, limits=limits)
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        if not _warned["port"]:
            _warned["port"] = True
            hint = (" In multiprocess mode another worker serves every worker's metrics."
                    if _multiprocess() else f" If several workers call it: {_FIX}.")
            logger.warning("mlwatcher: %s:%s is taken (%s): this process does not serve "
                           "/metrics; the monitor keeps working.%s", addr, port, error, hint)
        return NotServing(addr, port, str(error))
    if not hasattr(server, "serving"):
        server.serving = True
    return server
