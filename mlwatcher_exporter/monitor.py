"""ModelMonitor: the in-process collector of one model's predictions.

The request path (:meth:`ModelMonitor.observe`) validates a batch, counts it and copies
the rows the reservoir keeps, holding the lock only for the copy; small batches are
staged and counted together, and the rows of large ones are counted by the worker
(:mod:`.deferred`). Windows are tumbling
on a monotonic clock; when one ends, its buffer is swapped for an empty one in O(1) and
its statistics are computed later, by the background worker or by the next scrape,
never on the thread that called ``observe``.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
import time
from dataclasses import replace
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Literal,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Union,
)

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry

from . import naming
from .buffer import RowStage, WindowBuffer
from .config import DEFAULT_PORT, MonitorSettings, check_settings, load_config, parse_config
from .deferred import CountQueue
from .ratelog import RateLimitedLogger
from .validation import (
    PROBA_TOLERANCE,
    BatchError,
    BatchValueError,
    ClassIndex,
    check_features,
    check_proba,
    count_rows,
)
from .window import WindowStats, compute_window_stats, predicted_classes

__all__ = ["ModelMonitor", "LifetimeCounts", "MonitorSnapshot"]

logger = logging.getLogger("mlwatcher_exporter")

_PRED1_EDGES = np.asarray(naming.PRED1_BUCKETS)
_LOW = -PROBA_TOLERANCE
_HIGH = 1.0 + PROBA_TOLERANCE
# Single rows staged before they are recorded together (see RowStage).
_STAGE_ROWS = 256
# Batches of at least this many rows are counted off the request path (see _drain).
_DEFER_ROWS = 1024


def _yield_gil() -> None:
    """Let other threads (the model's) take the GIL between steps of the statistics."""
    time.sleep(0)


class _Tally(NamedTuple):
    """The counts of one batch, computed outside the lock."""

    predicted: np.ndarray
    class_rows: np.ndarray
    buckets: np.ndarray
    pred1_sum: float
    labeled: Optional[np.ndarray]
    correct: Optional[np.ndarray]


def _tally(proba: np.ndarray, threshold: float, labels: Optional[np.ndarray]) -> _Tally:
    """Predicted classes and every per-class count of a batch, vectorised.

    `labels` may hold -1 for unlabeled rows (staged single rows).
    """
    n_rows, n_classes = proba.shape
    predicted = predicted_classes(proba, threshold)
    class_rows = np.bincount(predicted, minlength=n_classes)
    if n_classes > 2:
        # The top probability of each row: a flat take beats proba[arange, predicted].
        index = np.arange(0, n_rows * n_classes, n_classes)
        index += predicted
        pred1 = proba.reshape(-1).take(index)
    else:
        pred1 = np.maximum(proba[:, 0], proba[:, 1])
    buckets = np.bincount(
        np.searchsorted(_PRED1_EDGES, pred1, side="left"), minlength=len(_PRED1_EDGES) + 1
    )
    labeled = correct = None
    if labels is not None:
        hits = labels[labels == predicted]
        if labels.size and labels.min() < 0:
            labels = labels[labels >= 0]
        labeled = np.bincount(labels, minlength=n_classes)
        correct = np.bincount(hits, minlength=n_classes)
    return _Tally(predicted, class_rows, buckets, float(pred1.sum()), labeled, correct)


class LifetimeCounts:
    """Counters over the whole life of a monitor: every row, never sampled."""

    def __init__(self, n_classes: int) -> None:
        self.predictions = np.zeros(n_classes, dtype=np.int64)
        self.labeled = np.zeros(n_classes, dtype=np.int64)
        self.correct = np.zeros(n_classes, dtype=np.int64)
        # Per bucket (non-cumulative); the last bucket is everything above the top edge.
        self.pred1_buckets = np.zeros(len(_PRED1_EDGES) + 1, dtype=np.int64)
        self.pred1_sum = 0.0
        self.last_prediction: Optional[float] = None

    def copy(self) -> "LifetimeCounts":
        """A snapshot that later observations do not change."""
        other = LifetimeCounts.__new__(LifetimeCounts)
        other.predictions = self.predictions.copy()
        other.labeled = self.labeled.copy()
        other.correct = self.correct.copy()
        other.pred1_buckets = self.pred1_buckets.copy()
        other.pred1_sum = self.pred1_sum
        other.last_prediction = self.last_prediction
        return other


class _LabelsBlock(contextlib.ContextDecorator):
    """The context manager of :meth:`ModelMonitor.labels`: a class, because a generator
    based one costs a microsecond more on every monitored call."""

    __slots__ = ("_var", "_labels", "_token")

    def __init__(self, var: "contextvars.ContextVar[Any]", labels: Any) -> None:
        self._var = var
        self._labels = labels
        self._token: Any = None

    def _recreate_cm(self) -> "_LabelsBlock":
        return _LabelsBlock(self._var, self._labels)

    def __enter__(self) -> None:
        self._token = self._var.set(self._labels)

    def __exit__(self, *exc_info: Any) -> Literal[False]:
        self._var.reset(self._token)
        return False


class MonitorSnapshot(NamedTuple):
    """What one scrape publishes of a monitor."""

    window: Optional[WindowStats]
    counts: Optional[LifetimeCounts]
    rejected: Dict[str, int]
    class_labels: List[str]


class ModelMonitor:
    """Watches one classifier and publishes per-window statistics as Prometheus metrics.

    Parameters
    ----------
    model : str, default="default"
        Value of the ``model`` label; several monitors can share one registry.
    n_classes : int, optional
        Probability columns. Taken from `class_names`, from ``estimator.classes_`` in
        :meth:`wrap`, or from the first batch when not given.
    class_names : sequence, optional
        Class values in predict_proba column order (like ``estimator.classes_``); their
        string form is the ``class`` label. Labels are matched against these values.
    window_seconds : float, default=60.0
        Length of the tumbling windows.
    reservoir_size : int, default=10000
        Rows sampled per window, uniformly among all rows of the window.
    threshold : float, default=0.5
        With two classes, a row predicts class 1 iff ``p[1] > threshold``.
    feature_names : sequence of str, optional
        Default ``f0`` .. ``fN-1``, or the columns of the first DataFrame.
    categorical_features : sequence of str or int, default=()
        Features (by name or column index) described by value ratios instead of
        statistics. Every other feature is continuous, whatever its dtype.
    max_categories : int, default=10
        Values published per categorical feature; the rest are folded into ``__other__``.
    registry : CollectorRegistry or None, default=prometheus_client.REGISTRY
        Where the metrics are registered; None keeps them unregistered.
    random_state : int, optional
        Seed of the reservoir sampling.
    background : bool, default=True
        Start a daemon thread at the first batch that closes windows on time and computes
        their statistics. Without it, windows close and are computed at the next
        ``observe``, scrape or :meth:`close_window`.

    Examples
    --------
    >>> from prometheus_client import CollectorRegistry
    >>> monitor = ModelMonitor(model="iris", n_classes=3, registry=CollectorRegistry(),
    ...                        background=False)
    >>> monitor.observe([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], labels=[0, 2])
    >>> monitor.close_window().scores.accuracy
    1.0
    """

    def __init__(
        self,
        model: str = "default",
        n_classes: Optional[int] = None,
        class_names: Optional[Sequence[Any]] = None,
        window_seconds: float = 60.0,
        reservoir_size: int = 10_000,
        threshold: float = 0.5,
        feature_names: Optional[Sequence[str]] = None,
        categorical_features: Sequence[Union[str, int]] = (),
        max_categories: int = 10,
        registry: Optional[CollectorRegistry] = REGISTRY,
        random_state: Optional[int] = None,
        background: bool = True,
        _clock: Callable[[], float] = time.monotonic,
        _wall_clock: Callable[[], float] = time.time,
    ) -> None:
        problems = check_settings(
            model=model,
            n_classes=n_classes,
            class_names=None if class_names is None else list(class_names),
            window_seconds=window_seconds,
            reservoir_size=reservoir_size,
            threshold=threshold,
            feature_names=None if feature_names is None else list(feature_names),
            categorical_features=list(categorical_features),
            max_categories=max_categories,
            random_state=random_state,
        )
        if problems:
            raise ValueError("; ".join(problems))
        self.model = model
        self.n_classes = n_classes
        self.class_names = None if class_names is None else list(class_names)
        self.window_seconds = float(window_seconds)
        self.reservoir_size = reservoir_size
        self.threshold = threshold
        self.feature_names = None if feature_names is None else [str(f) for f in feature_names]
        self.categorical_features = tuple(categorical_features)
        self.max_categories = max_categories
        self.random_state = random_state
        self.background = background
        self.registry = registry
        self.http_addr = "127.0.0.1"
        self.http_port = DEFAULT_PORT
        self._clock = _clock
        self._wall_clock = _wall_clock
        self._rng = np.random.default_rng(random_state)
        self._log = RateLimitedLogger(logger)
        self._labels_var: contextvars.ContextVar[Any] = contextvars.ContextVar(
            f"mlwatcher_labels_{model}", default=None
        )

        # Guarded by _lock: the active window, the pending closed one, counters.
        self._lock = threading.Lock()
        self._classes: Optional[ClassIndex] = None
        self._categorical_mask: Optional[np.ndarray] = None
        self._active: Optional[WindowBuffer] = None
        self._pending: Optional[WindowBuffer] = None
        self._pending_end: Optional[float] = None
        self._spare: List[WindowBuffer] = []
        self._counts: Optional[LifetimeCounts] = None
        self._stage: Optional[RowStage] = None
        # Large batches whose rows are counted off the request path (see _drain).
        self._deferred: Optional[CountQueue] = None
        self._drain_lock = threading.Lock()
        self._stage_rows = max(1, min(_STAGE_ROWS, reservoir_size // 16))
        self._rejected: Dict[str, int] = {reason: 0 for reason in naming.REJECT_REASONS}
        self._window_start = _clock()
        self._window_end = self._window_start + self.window_seconds
        # Serialises statistics so that a scrape and the worker never compute twice.
        self._compute_lock = threading.Lock()
        self._published: Optional[WindowStats] = None
        self._closed = False
        self._worker: Optional[threading.Thread] = None
        self._wakeup = threading.Event()

        if class_names is not None:
            self._set_classes(list(class_names))
        elif n_classes is not None:
            self._set_classes(list(range(n_classes)))
        if registry is not None:
            from .collector import register_monitor

            register_monitor(registry, self)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls,
        config: Union[str, "os.PathLike[str]", Mapping[str, Any], MonitorSettings],
        registry: Optional[CollectorRegistry] = REGISTRY,
        **overrides: Any,
    ) -> "ModelMonitor":
        """Build a monitor from a YAML file, a mapping or :class:`MonitorSettings`.

        Every problem of the file is reported at once in a
        :class:`~mlwatcher_exporter.config.ConfigError`. `overrides` are keyword
        arguments of the constructor that win over the file (e.g. ``background``).
        """
        if isinstance(config, MonitorSettings):
            settings = config
        elif isinstance(config, Mapping):
            settings = parse_config(config)
        else:
            settings = load_config(config)
        kwargs = {
            name: getattr(settings, name)
            for name in MonitorSettings.__dataclass_fields__
            if name != "http"
        }
        kwargs.update(overrides)
        monitor = cls(registry=registry, **kwargs)
        monitor.http_addr = settings.http.addr
        monitor.http_port = settings.http.port
        return monitor

    def _set_classes(self, classes: Sequence[Any]) -> None:
        """Fix the class values and everything sized by them (before any batch)."""
        self._classes = ClassIndex(classes)
        self.n_classes = self._classes.n_classes
        self._counts = LifetimeCounts(self.n_classes)
        self._stage = None
        # Two reservoirs' worth of rows per arena: memory scales with what users size.
        self._deferred = CountQueue(
            self.n_classes, max(2 * self.reservoir_size, 4 * _DEFER_ROWS)
        )

    @property
    def class_labels(self) -> List[str]:
        """The ``class`` label values, in predict_proba column order."""
        if self._classes is None:
            return []
        return [str(value) for value in self._classes.classes.tolist()]

    def adopt_classes(self, classes: Sequence[Any]) -> None:
        """Take class values from an estimator's ``classes_`` (used by :meth:`wrap`).

        Explicit ``class_names`` win, and so do the classes of data already counted;
        otherwise the estimator's values become the ``class`` labels.

        Raises
        ------
        ValueError
            When the number of classes differs from the declared one.
        """
        classes = list(classes)
        with self._lock:
            if self._classes is not None:
                if len(classes) != self.n_classes:
                    raise ValueError(
                        f"estimator.classes_ has {len(classes)} classes, must match "
                        f"n_classes == {self.n_classes} of monitor {self.model!r}"
                    )
                seen = self._counts is not None and self._counts.last_prediction is not None
                if self.class_names is not None or seen:
                    return  # explicit names win; counted data keeps its classes
            self._set_classes(classes)

    def _ensure_classes(self, n_classes: int) -> None:
        """Default classes 0..n-1 from the first batch, unless another thread won."""
        with self._lock:
            if self._classes is None:
                self._set_classes(list(range(n_classes)))

    # ------------------------------------------------------------------ request path
    def observe(self, proba: Any, features: Any = None, labels: Any = None) -> None:
        """Record one batch of predictions.

        Parameters
        ----------
        proba : array-like of shape (n_rows, n_classes)
            predict_proba output: numpy array (float32 or float64), nested lists, or a
            pandas DataFrame.
        features : array-like of shape (n_rows, n_features), optional
            The model's input. A DataFrame's columns name the features.
        labels : array-like, optional
            True classes: class values (as in ``class_names``, class indices by
            default), or one-hot rows of shape (n_rows, n_classes).

        Raises
        ------
        ValueError, TypeError
            On a bad batch, naming the argument, the value and what was expected. The
            batch is counted in ``mlwatcher_rejected_rows_total`` first.
        """
        self._observe(proba, features, labels, self.threshold)

    def _observe(self, proba: Any, features: Any, labels: Any, threshold: float) -> None:
        if (
            type(proba) is np.ndarray
            and proba.ndim == 2
            and proba.shape[0] == 1
            and self._observe_row(proba, features, labels, threshold)
        ):
            return
        try:
            probabilities = check_proba(proba, self.n_classes)
            n_rows = probabilities.shape[0]
            if self._classes is None:
                self._ensure_classes(probabilities.shape[1])
            table = None
            if features is not None:
                table = self._check_features(features, n_rows)
            label_index = None
            if labels is not None:
                assert self._classes is not None
                label_index = self._classes.indices(labels, n_rows)
        except BatchError as error:
            self._count_rejected(error.reason, error.rows)
            raise
        if 1 < n_rows <= self._stage_rows:
            # A small batch: staged like single rows, counted with the stage.
            pred1_sum = float(probabilities.max(axis=1).sum())
            self._stage_rows_now(
                probabilities, table, -1 if label_index is None else label_index,
                threshold, pred1_sum,
            )
        elif n_rows:
            self._record(probabilities, table, label_index, threshold)

    def _observe_row(
        self, proba: np.ndarray, features: Any, labels: Any, threshold: float
    ) -> bool:
        """Fast path of a single row: checks with Python scalars, then stages the row.

        Accepts only what the general path accepts; anything else (an error, a
        DataFrame, class names, the first batch) returns False untouched, and the general
        path validates, counts the rejection and raises as usual.
        """
        classes = self._classes
        if classes is None or proba.shape[1] != self.n_classes or proba.dtype.kind != "f":
            return False
        row = proba.tolist()[0]
        high = max(row)
        total = sum(row)
        # NaN propagates through the sum; infinities and out-of-range values fail the bounds.
        if not (min(row) >= _LOW and high <= _HIGH) or total != total:
            return False
        if features is not None:
            names = self.feature_names
            if (
                type(features) is not np.ndarray
                or features.ndim != 2
                or features.shape[0] != 1
                or features.dtype.kind not in "fiub"
                or names is None
                or self._categorical_mask is None
                or features.shape[1] != len(names)
            ):
                return False
        label = -1
        if labels is not None:
            if not classes.is_range:
                return False
            if type(labels) is np.ndarray:
                if labels.ndim != 1 or labels.shape[0] != 1 or labels.dtype.kind not in "iu":
                    return False
                label = labels.tolist()[0]
            elif type(labels) is list and len(labels) == 1 and type(labels[0]) is int:
                label = labels[0]
            else:
                return False
            if not 0 <= label < classes.n_classes:
                return False
        self._stage_rows_now(proba, features, label, threshold, high)
        return True

    def _stage_rows_now(
        self,
        proba: np.ndarray,
        features: Optional[np.ndarray],
        labels: Union[int, np.ndarray],
        threshold: float,
        pred1_sum: float,
    ) -> None:
        """Copy validated rows into the stage (they are counted when it is flushed).

        `labels` is one class index for all the rows (-1: none) or one per row.
        """
        classes = self._classes
        assert classes is not None
        n_rows = proba.shape[0]
        now = self._clock()
        wall = self._wall_clock()
        with self._lock:
            if self._closed:
                return
            if now >= self._window_end:
                self._rotate_due(now)
            stage = self._stage
            if stage is None:
                stage = self._stage = RowStage(self._stage_rows, classes.n_classes)
            elif stage.n and (
                stage.threshold != threshold or stage.n + n_rows > stage.capacity
            ):
                self._flush_stage()
            if self._active is None:
                self._active = self._new_buffer(self._window_start)
            i, end = stage.n, stage.n + n_rows
            stage.threshold = threshold
            stage.proba[i:end] = proba
            if features is None:
                stage.has_features[i:end] = False  # True until written (see RowStage)
            else:
                staged = stage.features
                if staged is None:
                    staged = stage.ensure_features(features.shape[1])
                staged[i:end] = features
            stage.labels[i:end] = labels
            stage.n = end
            counts = self._counts
            assert counts is not None
            counts.pred1_sum += pred1_sum  # per batch, in call order, as the general path
            counts.last_prediction = wall
            if stage.n == stage.capacity:
                self._flush_stage()
        if self.background and self._worker is None:
            self._start_worker()

    def _flush_stage(self) -> None:
        """Record the staged single rows as one batch, in order (lock held)."""
        stage = self._stage
        if stage is None or not stage.n:
            return
        n_rows, stage.n = stage.n, 0
        proba = stage.proba[:n_rows]
        labels: Optional[np.ndarray] = stage.labels[:n_rows]
        has_features = stage.has_features[:n_rows]
        features = stage.features[:n_rows] if stage.features is not None else None
        if features is not None and not has_features.any():
            features = None
        tally = _tally(proba, stage.threshold, labels)
        if tally.labeled is not None and not tally.labeled.any():
            labels = None  # stored as -1 either way
        active = self._active
        if active is None:
            active = self._active = self._new_buffer(self._window_start)
        active.add(proba, tally.predicted, tally.class_rows, features, labels, has_features)
        stage.has_features[:n_rows] = True
        self._add_counts(tally, with_sum=False)

    def _add_counts(self, tally: _Tally, with_sum: bool = True) -> None:
        """Add a batch to the lifetime counters (lock held)."""
        counts = self._counts
        assert counts is not None
        counts.predictions += tally.class_rows
        counts.pred1_buckets += tally.buckets
        if with_sum:
            counts.pred1_sum += tally.pred1_sum
        if tally.labeled is not None and tally.correct is not None:
            counts.labeled += tally.labeled
            counts.correct += tally.correct

    def _check_features(self, features: Any, n_rows: int) -> np.ndarray:
        expected = None if self.feature_names is None else len(self.feature_names)
        table, columns = check_features(features, n_rows, expected, self.feature_names)
        if self.feature_names is None or self._categorical_mask is None:
            with self._lock:
                if self.feature_names is None:
                    self.feature_names = columns or [f"f{i}" for i in range(table.shape[1])]
                if self._categorical_mask is None:
                    self._categorical_mask = self._resolve_categorical(
                        self.feature_names, n_rows
                    )
        return table

    def _resolve_categorical(self, names: Sequence[str], n_rows: int) -> np.ndarray:
        """Which columns are categorical; a reference the features lack rejects the batch."""
        mask = np.zeros(len(names), dtype=bool)
        for ref in self.categorical_features:
            if isinstance(ref, str):
                if ref not in names:
                    raise BatchValueError(
                        f"features has columns {list(names)[:10]}, must include "
                        f"categorical_features {ref!r}",
                        "n_features",
                        n_rows,
                    )
                mask[list(names).index(ref)] = True
            else:
                if not 0 <= ref < len(names):
                    raise BatchValueError(
                        f"features has {len(names)} columns, must have more than "
                        f"categorical_features index {ref}",
                        "n_features",
                        n_rows,
                    )
                mask[ref] = True
        return mask

    def _record(
        self,
        proba: np.ndarray,
        features: Optional[np.ndarray],
        labels: Optional[np.ndarray],
        threshold: float,
    ) -> None:
        """Count a validated batch and offer it to the reservoir.

        A large batch is only sampled here; classifying and counting its every row (an
        argmax per row, 20-30 ns each) is deferred to the worker or the next scrape,
        from a copy of its probabilities. See :meth:`_drain`.
        """
        n_rows = proba.shape[0]
        queue = self._deferred
        assert queue is not None
        defer = _DEFER_ROWS <= n_rows <= queue.capacity
        if defer and not queue.has_room(n_rows):
            self._drain()  # the worker is behind: count here rather than queue more
        tally = None if defer else _tally(proba, threshold, labels)
        now = self._clock()
        wall = self._wall_clock()
        with self._lock:
            if self._closed:
                return
            self._flush_stage()  # staged single rows came first
            self._rotate_due(now)
            active = self._active
            if active is None:
                active = self._active = self._new_buffer(self._window_start)
            assert self._counts is not None
            self._counts.last_prediction = wall
            if tally is None and queue.has_room(n_rows):
                active.add(proba, None, None, features, labels, threshold=threshold)
                queue.push(proba, labels, threshold, active)
            else:
                if tally is None:  # another thread filled the queue meanwhile: rare
                    tally = _tally(proba, threshold, labels)
                    defer = False
                active.add(proba, tally.predicted, tally.class_rows, features, labels)
                self._add_counts(tally)
        if defer:
            self._wakeup.set()
        if self.background and self._worker is None:
            self._start_worker()

    def _drain(self) -> None:
        """Classify and count the deferred batches, in order, off the request path.

        Called by the worker, before every snapshot and before a window's statistics,
        so that counters and class counts are exact whenever they are read.
        """
        with self._drain_lock:
            with self._lock:
                if self._deferred is None or not self._deferred.rows:
                    return
                arena, batches = self._deferred.take()
            assert arena is not None
            proba, labels = arena
            tallies = [
                _tally(
                    proba[b.start:b.start + b.rows],
                    b.threshold,
                    labels[b.start:b.start + b.rows] if b.has_labels else None,
                )
                for b in batches
            ]
            with self._lock:
                for batch, tally in zip(batches, tallies):
                    self._add_counts(tally)
                    if batch.buffer.generation == batch.generation:
                        batch.buffer.class_rows += tally.class_rows

    def _count_rejected(self, reason: str, rows: int) -> None:
        with self._lock:
            self._rejected[reason] += max(rows, 1)

    # ------------------------------------------------------------------ decorator glue
    def observe_quietly(
        self,
        proba: Any,
        features: Any = None,
        labels: Any = None,
        threshold: Optional[float] = None,
    ) -> bool:
        """Like :meth:`observe`, but never raises: a bad batch is counted and logged at
        a bounded rate. Returns whether the batch was recorded. `threshold` overrides
        the monitor's for this batch (two classes only)."""
        try:
            self._observe(
                proba, features, labels, self.threshold if threshold is None else threshold
            )
            return True
        except BatchError as error:
            self._log.warning(
                error.reason, f"mlwatcher: model {self.model!r} rejected a batch: {error}"
            )
        except Exception:  # noqa: BLE001 - monitoring must never hurt the model
            self._count_rejected("internal", count_rows(proba))
            self._log.warning(
                "internal", f"mlwatcher: model {self.model!r} failed to observe", exc_info=True
            )
        return False

    def labels(self, labels: Any) -> "_LabelsBlock":
        """Attach true labels to the predictions made inside the ``with`` block.

        The decorated ``predict_proba`` picks them up (per thread and per asyncio task).
        Like a :func:`contextlib.contextmanager`, the block also works as a decorator.
        """
        return _LabelsBlock(self._labels_var, labels)

    def current_labels(self) -> Any:
        """Labels set by the enclosing :meth:`labels` block, or None."""
        return self._labels_var.get()

    def watch(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate a predict_proba-like function or method (see :mod:`.decorator`)."""
        from .decorator import watch

        return watch(self, func)

    def wrap(self, estimator: Any) -> Any:
        """Return a proxy of `estimator` whose ``predict_proba`` is monitored."""
        from .decorator import MonitoredEstimator

        return MonitoredEstimator(estimator, self)

    # ------------------------------------------------------------------ windows
    def _new_buffer(self, start: float) -> WindowBuffer:
        buffer = self._spare.pop() if self._spare else None
        if buffer is None:
            assert self.n_classes is not None
            buffer = WindowBuffer(self.reservoir_size, self.n_classes, self._rng)
        buffer.reset(start)
        return buffer

    def _rotate_due(self, now: float) -> None:
        """Close the active window if its end has passed (lock held; O(1))."""
        if now < self._window_end:
            return
        self._flush_stage()  # staged rows belong to the window that ends
        elapsed = max(1, int((now - self._window_start) // self.window_seconds))
        last_end = self._window_start + elapsed * self.window_seconds
        if elapsed == 1 and self._active is not None:
            self._hand_over(self._active, self._window_end)
        else:
            # Whole windows passed without a batch: the last completed one was empty.
            if self._active is not None:
                self._spare.append(self._active)
            if self._classes is not None:
                self._hand_over(self._new_buffer(last_end - self.window_seconds), last_end)
        self._active = None
        self._window_start = last_end
        self._window_end = last_end + self.window_seconds
        self._wakeup.set()

    def _hand_over(self, buffer: WindowBuffer, end: float) -> None:
        """Make `buffer` the pending closed window; a superseded one is recycled."""
        if self._pending is not None:
            self._spare.append(self._pending)
        self._pending = buffer
        self._pending_end = end

    def tick(self) -> None:
        """Close the window if it is due and publish its statistics (scrapes call this)."""
        with self._lock:
            if not self._closed:
                self._rotate_due(self._clock())
        try:
            self._publish_pending()
        except Exception:  # noqa: BLE001 - a failed window must not fail the scrape
            self._log.warning(
                "statistics", f"mlwatcher: model {self.model!r}: window statistics failed",
                exc_info=True,
            )

    def _publish_pending(self) -> Optional[WindowStats]:
        """Compute and publish the pending window, off the observe path."""
        with self._compute_lock:
            with self._lock:
                buffer, end = self._pending, self._pending_end
                self._pending = None
                feature_names = list(self.feature_names or ())
                categorical = self._categorical_mask
            if buffer is None or end is None:
                return None
            # Every deferred batch of this window was queued before it closed.
            self._drain()
            started = time.perf_counter()
            try:
                stats = compute_window_stats(
                    buffer.sample(),
                    end_time=self._wall_time(end),
                    duration=end - buffer.start,
                    feature_names=feature_names,
                    categorical=(
                        categorical.tolist()
                        if categorical is not None
                        else [False] * len(feature_names)
                    ),
                    max_categories=self.max_categories,
                    pause=_yield_gil,
                )
            finally:
                with self._lock:
                    self._spare.append(buffer)
            stats = replace(stats, compute_seconds=time.perf_counter() - started)
            self._published = stats
            return stats

    def _wall_time(self, monotonic: float) -> float:
        """Unix time of a point on the monotonic clock."""
        return self._wall_clock() - (self._clock() - monotonic)

    def close_window(self) -> Optional[WindowStats]:
        """Close the current window now, publish its statistics and return them.

        The next window starts now and lasts ``window_seconds``. Returns None when no
        class is known yet (no batch and no ``n_classes``).
        """
        with self._lock:
            now = self._clock()
            self._rotate_due(now)
            self._flush_stage()
            if self._classes is not None:
                active = self._active or self._new_buffer(self._window_start)
                self._hand_over(active, now)
            self._active = None
            self._window_start = now
            self._window_end = now + self.window_seconds
        self._publish_pending()
        return self._published

    @property
    def last_window(self) -> Optional[WindowStats]:
        """Statistics of the last completed window, or None before the first."""
        return self._published

    def snapshot(self) -> "MonitorSnapshot":
        """The published window and copies of the counters, for one scrape."""
        self._drain()
        with self._lock:
            self._flush_stage()  # counters count every row, staged ones too
            counts = None if self._counts is None else self._counts.copy()
            rejected = dict(self._rejected)
        return MonitorSnapshot(self._published, counts, rejected, self.class_labels)

    def rejected_rows(self) -> Dict[str, int]:
        """Rejected rows by reason since the start."""
        with self._lock:
            return dict(self._rejected)

    # ------------------------------------------------------------------ lifecycle
    def _start_worker(self) -> None:
        with self._lock:
            if self._worker is not None or self._closed:
                return
            self._worker = threading.Thread(
                target=self._run_worker, name=f"mlwatcher-{self.model}", daemon=True
            )
        self._worker.start()

    def _run_worker(self) -> None:
        while not self._closed:
            with self._lock:
                wait = self._window_end - self._clock()
            # Wake at the window's end, when observe closes one or defers a large batch;
            # cap the wait to notice close().
            self._wakeup.wait(timeout=min(max(wait, 0.01), 1.0))
            self._wakeup.clear()
            if self._closed:
                break
            try:
                self._drain()
                self.tick()
            except Exception:  # noqa: BLE001 - the worker must survive a bad window
                self._log.warning("worker", "mlwatcher: window statistics failed", exc_info=True)

    def start_http_server(
        self, port: Optional[int] = None, addr: Optional[str] = None
    ) -> Any:
        """Serve ``/metrics`` and a landing page at ``/`` in a daemon thread.

        Parameters
        ----------
        port : int, optional
            Default: the configured port (10150). 0 picks a free port.
        addr : str, optional
            Default: ``127.0.0.1``; use ``0.0.0.0`` to listen on every interface.

        Returns
        -------
        MetricsServer
            With ``.port`` (the bound port) and ``.shutdown()``.
        """
        from .exposition import start_http_server

        if self.registry is None:
            raise ValueError(
                f"monitor {self.model!r} has registry == None, must have a registry to serve"
            )
        return start_http_server(
            self.http_port if port is None else port,
            self.http_addr if addr is None else addr,
            registry=self.registry,
        )

    def close(self) -> None:
        """Stop the worker and unregister: nothing more is published."""
        with self._lock:
            self._closed = True
            self._wakeup.set()
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=5.0)
        if self.registry is not None:
            from .collector import unregister_monitor

            unregister_monitor(self.registry, self)

    def __repr__(self) -> str:
        return (
            f"ModelMonitor(model={self.model!r}, n_classes={self.n_classes}, "
            f"window_seconds={self.window_seconds}, reservoir_size={self.reservoir_size})"
        )
