"""prometheus_client's multiprocess mode: every worker publishes every worker's rows.

When ``PROMETHEUS_MULTIPROC_DIR`` is set before a monitor is created, each process
(gunicorn's workers, and the master with ``--preload``) writes its state to per-process
files there (:mod:`.mpstate`): at each window close and every
``MLWATCHER_FLUSH_SECONDS`` (default 1 s) from a daemon thread, before each of its
scrapes, and at exit. Windows start on the wall-clock grid
(``floor(time / window_seconds) * window_seconds``), so all workers' windows of one
index cover the same time. :class:`MultiProcessCollector` reads every file and
publishes the merge (:mod:`.mpmerge`) under the usual ``mlwatcher_*`` families: add it
next to prometheus_client's, or serve :func:`make_wsgi_app`::

    from prometheus_client import CollectorRegistry, multiprocess
    import mlwatcher_exporter.multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    mlwatcher_exporter.multiprocess.MultiProcessCollector(registry)

Files of dead workers stay and keep counting (a recycled worker loses nothing); empty
the directory when the server (re)starts, as prometheus_client asks.

This module holds the process's side of it: its one writer (:mod:`.mpwriter`, set up by
:func:`attach` and again in a forked child by :func:`after_fork`, final at exit) and its
one registry (:func:`multiprocess_registry`); the reader is :mod:`.mpcollector`.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from prometheus_client import CollectorRegistry

from .mpcollector import MultiProcessCollector
from .mpwriter import WINDOWS_KEPT, ProcessWriter, flush_seconds, multiproc_dir

if TYPE_CHECKING:  # pragma: no cover
    from .monitor import ModelMonitor

__all__ = [
    "MultiProcessCollector",
    "ProcessWriter",
    "make_wsgi_app",
    "multiproc_dir",
    "multiprocess_registry",
    "flush_seconds",
    "WINDOWS_KEPT",
]

logger = logging.getLogger("mlwatcher_exporter")

# This process's one writer and one registry (reset in a forked child).
_WRITER: Optional[ProcessWriter] = None
_REGISTRY: Optional[CollectorRegistry] = None
_STATE_LOCK = threading.Lock()


def _writer() -> ProcessWriter:
    global _WRITER
    directory = multiproc_dir()
    assert directory is not None
    with _STATE_LOCK:
        if _WRITER is None or _WRITER.pid != os.getpid():
            _WRITER = ProcessWriter(directory, flush_seconds())
        return _WRITER


def attach(monitor: "ModelMonitor") -> None:
    """Write `monitor`'s state for the other workers (multiprocess mode)."""
    directory = multiproc_dir()
    if directory is None or not os.path.isdir(directory):
        logger.warning("mlwatcher: PROMETHEUS_MULTIPROC_DIR == %r, must be an existing "
                       "directory: model %r publishes this process's rows alone",
                       directory, monitor.model)
        return
    _writer().add(monitor)


def after_fork(monitors: Iterable["ModelMonitor"]) -> None:
    """In a child: a writer of its own (new files) for every monitor."""
    global _WRITER, _REGISTRY, _STATE_LOCK
    _STATE_LOCK = threading.Lock()
    _WRITER, _REGISTRY = None, None
    for monitor in monitors:
        attach(monitor)


@atexit.register
def _at_exit() -> None:
    writer = _WRITER
    if writer is not None and writer.pid == os.getpid():
        writer.stop()
        writer.write_all(final=True)


def multiprocess_registry() -> CollectorRegistry:
    """This process's registry of prometheus_client's multiprocess collector and ours."""
    global _REGISTRY
    with _STATE_LOCK:
        if _REGISTRY is None:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            MultiProcessCollector(registry)
            _REGISTRY = registry
        return _REGISTRY


def make_wsgi_app(registry: Optional[CollectorRegistry] = None) -> Callable[..., Any]:
    """:func:`.exposition.make_wsgi_app` of :func:`multiprocess_registry` (or
    `registry`): mount it at ``/metrics`` in every worker."""
    from .exposition import make_wsgi_app as make

    return make(registry if registry is not None else multiprocess_registry())
