"""Rotating JSON-lines files of window records, written by their own thread.

The thread that closes a window only puts its record on a bounded queue; a daemon
thread appends it to ``<directory>/<model>.jsonl``. When a line would take the file
past ``max_bytes``, the files shift (``.jsonl`` -> ``.jsonl.1`` -> ... ) and the oldest
beyond ``max_files`` is deleted, as ``logging.handlers.RotatingFileHandler`` does.
Failures (an unwritable directory, a full disk, a full queue) are counted in
``mlwatcher_history_write_failures_total{model,reason}``, logged at a bounded rate, and
never raised.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from typing import Any, Dict, Iterable, List, Optional
from urllib.parse import quote

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from . import naming as n
from .ratelog import RateLimitedLogger

__all__ = ["HistoryFile", "history_path", "WRITE_FAILURE_REASONS", "QUEUE_SIZE"]

logger = logging.getLogger("mlwatcher_exporter")

#: Why a record was not written: the file system refused it (``io``), the writer was
#: behind by ``QUEUE_SIZE`` records (``queue_full``), or it could not be encoded.
WRITE_FAILURE_REASONS = ("io", "queue_full", "encode")
#: Records waiting for the writer at most.
QUEUE_SIZE = 1000
_ATTRIBUTE = "_mlwatcher_history_collector"
_LOCK = threading.Lock()
_STOP = object()


def history_path(directory: str, model: str) -> str:
    """The current file of `model` in `directory` (the name percent-encoded)."""
    return os.path.join(directory, quote(model, safe="") + ".jsonl")


class HistoryFile:
    """Appends records to a rotating JSON-lines file off the caller's thread.

    Parameters
    ----------
    path : str
        The current file; rotated ones get ``.1`` (newest) to ``.{max_files - 1}``.
    model : str
        The ``model`` label of the failure counter.
    max_bytes : int
        Most bytes of one file (a single longer line is written alone in its file).
    max_files : int
        Files kept, the current one included.
    registry : CollectorRegistry, optional
        Where the failure counter is published.
    """

    def __init__(self, path: str, model: str, max_bytes: int, max_files: int,
                 registry: Optional[CollectorRegistry] = None,
                 _log: Optional[RateLimitedLogger] = None) -> None:
        self.path = path
        self.model = model
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.failures: Dict[str, int] = {reason: 0 for reason in WRITE_FAILURE_REASONS}
        self.written = 0
        self._log = _log or RateLimitedLogger(logger)
        self._queue: "queue.Queue[Any]" = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._registry = registry
        if registry is not None:
            _register(registry, self)

    # ------------------------------------------------------------------ the caller's side
    def put(self, record: Dict[str, Any]) -> None:
        """Queue `record` for writing; never blocks, never raises."""
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name=f"mlwatcher-history-{self.model}")
                self._thread.start()
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.failed("queue_full", f"history writer is {QUEUE_SIZE} records behind, a "
                        "window was not written")

    def after_fork(self) -> None:
        """A forked child's writer: no thread yet (the parent's did not come along), an
        empty queue and fresh locks; it appends to the same file (docs/deploying.md)."""
        self._lock = threading.Lock()
        self._log._lock = threading.Lock()
        self._queue = queue.Queue(QUEUE_SIZE)
        self._thread = None
        self.failures = {reason: 0 for reason in WRITE_FAILURE_REASONS}
        self.written = 0

    def failed(self, reason: str, text: str, exc_info: bool = False) -> None:
        """Count one record not written, and log it at a bounded rate."""
        with self._lock:
            self.failures[reason] += 1
        self._log.warning(f"history-{reason}", f"mlwatcher: model {self.model!r}: {text} "
                          f"({self.path})", exc_info=exc_info)

    def flush(self) -> None:
        """Wait until every queued record was written (or failed)."""
        self._queue.join()

    def close(self) -> None:
        """Write what is queued, stop the thread, unpublish the counter."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout=10)
        if self._registry is not None:
            _unregister(self._registry, self)

    # ------------------------------------------------------------------ the writer
    def _run(self) -> None:
        while True:
            record = self._queue.get()
            try:
                if record is _STOP:
                    return
                self.write(record)
            finally:
                self._queue.task_done()

    def write(self, record: Dict[str, Any]) -> bool:
        """Append `record` now (the writer thread calls this); False if it failed."""
        try:
            line = (json.dumps(record, separators=(",", ":"), allow_nan=False)
                    + "\n").encode("utf-8")
        except (TypeError, ValueError):
            self.failed("encode", "could not encode a window record", True)
            return False
        try:
            self._rotate_for(len(line))
            with open(self.path, "ab") as handle:
                handle.write(line)
        except OSError as error:
            self.failed("io", f"could not write the window history ({error})")
            return False
        self.written += 1
        return True

    def _rotate_for(self, size: int) -> None:
        try:
            current = os.path.getsize(self.path)
        except FileNotFoundError:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            return
        if current == 0 or current + size <= self.max_bytes:
            return
        if self.max_files == 1:
            os.remove(self.path)
            return
        oldest = f"{self.path}.{self.max_files - 1}"
        if os.path.exists(oldest):
            os.remove(oldest)
        for index in range(self.max_files - 2, 0, -1):
            source = f"{self.path}.{index}"
            if os.path.exists(source):
                os.replace(source, f"{self.path}.{index + 1}")
        os.replace(self.path, self.path + ".1")

    def files(self) -> List[str]:
        """The files that exist now, oldest first (read them in this order)."""
        names = [f"{self.path}.{i}" for i in range(self.max_files - 1, 0, -1)] + [self.path]
        return [name for name in names if os.path.exists(name)]


class _HistoryCollector(Collector):
    def __init__(self) -> None:
        self.files: List[HistoryFile] = []

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            n.HISTORY_WRITE_FAILURES, "Window records not written to the history files, "
            "by reason.", labels=["model", "reason"])
        for file in list(self.files):
            with file._lock:
                failures = dict(file.failures)
            for reason, count in failures.items():
                family.add_metric([file.model, reason], count)
        yield family


def _register(registry: CollectorRegistry, file: HistoryFile) -> None:
    with _LOCK:
        collector = getattr(registry, _ATTRIBUTE, None)
        if collector is None:
            collector = _HistoryCollector()
            registry.register(collector)
            setattr(registry, _ATTRIBUTE, collector)
        collector.files = collector.files + [file]


def _unregister(registry: CollectorRegistry, file: HistoryFile) -> None:
    with _LOCK:
        collector = getattr(registry, _ATTRIBUTE, None)
        if collector is not None:
            collector.files = [f for f in collector.files if f is not file]
