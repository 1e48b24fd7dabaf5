"""ModelMonitor: the in-process collector of one model's predictions, a facade.

The pipeline, one way (see ``docs/architecture.md``)::

    watch/wrap/observe -> Intake (checks, copy) -> Staging (stages, window clock)
        -> processing (bulk: values, labels, predictions, counts, sample)
        -> WindowLedger (closed window) -> statistics -> collector -> /metrics, bridge

The model's thread only checks shapes and copies; a background :class:`.Worker` (or
any reader, or a caller that finds every stage full) does the rest in bulk.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry

from .collector import MonitorSnapshot, register_monitor
from .config import (
    DEFAULT_PORT,
    MonitorSettings,
    check_monitor_arguments,
    load_config,
    parse_config,
)
from .counts import LifetimeCounts, RejectionCounts
from .decorator import WatchCount, WatchMixin, new_labels_var
from . import prefork
from .errors import BatchError, count_rows
from .history import WindowHistory
from .latelabels import check_label_call
from .intake import Intake
from .monitordrift import ReferenceMixin
from .monitorlifecycle import LifecycleMixin
from .pipeline import Pipeline
from .ratelog import RateLimitedLogger
from .schema import InputSchema
from .staging import Staging
from .window import WindowStats
from .worker import EventWaiter, Waiter, Worker

__all__ = ["ModelMonitor", "LifetimeCounts", "MonitorSnapshot"]

logger = logging.getLogger("mlwatcher_exporter")


# The constructor's arguments that a configuration file also sets: every setting but
# where to serve and the history's files.
_CHECKED = tuple(name for name in MonitorSettings.__dataclass_fields__
                 if name not in ("http", "history"))


def _work(monitor: "ModelMonitor") -> float:
    """One round of the background worker; returns the seconds until the window ends."""
    monitor.tick()
    return monitor._staging.window_end - monitor._clock()


def _worker_failed(error: BaseException) -> None:
    logger.warning("mlwatcher: the background worker failed a step", exc_info=error)


class ModelMonitor(WatchMixin, ReferenceMixin, LifecycleMixin):
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
    max_ids : int, default=100000
        Prediction ids (``observe(..., ids=...)``) kept at most for late labels
        (:meth:`observe_labels`); the oldest are forgotten first.
    id_ttl_seconds : float, default=86400
        Seconds a prediction id is kept for its late label.
    background : bool, default=True
        Start a daemon thread at the first batch that counts staged batches, closes
        windows on time and computes their statistics. Without it, that work is done by
        the next scrape, :meth:`flush`, :meth:`tick` or :meth:`close_window`, or by a
        caller that finds every stage full.
    fleet : mapping or FleetLayout, optional
        The fleet counters: ``pred1_buckets``, ``spread12_buckets`` (increasing edges in
        [0, 1]), ``confusion_matrix`` (default False), ``confusion_max_classes``
        (default 20), ``feature_buckets`` ({feature: edges}), ``max_series`` (the
        series budget, default 2500), ``feature_statistics`` and ``features`` (allow and
        deny patterns); see :mod:`~mlwatcher_exporter.fleetconfig`.

    Examples
    --------
    >>> from prometheus_client import CollectorRegistry
    >>> monitor = ModelMonitor(model="iris", n_classes=3, registry=CollectorRegistry(),
    ...                        background=False)
    >>> monitor.observe([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], labels=[0, 2])
    >>> monitor.close_window().scores.accuracy
    1.0

    A monitor is also a context manager that closes it::

        with ModelMonitor(model="iris", n_classes=3) as monitor:
            ...
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
        categorical_features: Optional[Sequence[Union[str, int]]] = (),
        max_categories: int = 10,
        registry: Optional[CollectorRegistry] = REGISTRY,
        random_state: Optional[int] = None,
        max_ids: int = 100_000,
        id_ttl_seconds: float = 86_400.0,
        reference: Any = None,
        drift_thresholds: Optional[Mapping[str, Optional[float]]] = None,
        background: bool = True,
        fleet: Any = None,
        _clock: Callable[[], float] = time.monotonic,
        _wall_clock: Callable[[], float] = time.time,
        _waiter: Optional[Waiter] = None,
    ) -> None:
        # The checks of the configuration file, on the values as given.
        given = locals()
        settings = check_monitor_arguments(**{name: given[name] for name in _CHECKED})
        self.model = settings.model
        self.window_seconds = settings.window_seconds
        self.reservoir_size = settings.reservoir_size
        self.threshold = settings.threshold
        self.categorical_features = settings.categorical_features
        self.max_categories = settings.max_categories
        self.random_state = settings.random_state
        self.max_ids = settings.max_ids
        self.id_ttl_seconds = settings.id_ttl_seconds
        self.background = background
        self.registry = registry
        self.http_addr = "127.0.0.1"
        self.http_port = DEFAULT_PORT
        self._clock = _clock
        self._log = RateLimitedLogger(logger)
        self._labels_var = new_labels_var(model)
        self.watchers = WatchCount()
        self._waiter = _waiter or EventWaiter()
        self._closed = False

        classes = settings.class_names
        if classes is None and settings.n_classes:
            classes = tuple(range(settings.n_classes))
        self._schema = InputSchema(classes, settings.feature_names, self.categorical_features)
        self._names_declared = settings.class_names is not None
        self._fleet = settings.fleet
        self._build(_wall_clock, np.random.default_rng(random_state))
        # The last closed windows (history.py): the landing page and the windows endpoint.
        self.history = WindowHistory(self.model)
        self.drift_thresholds = settings.drift_thresholds
        if settings.reference is not None:
            self.set_reference(settings.reference)
        if registry is not None:
            register_monitor(registry, self)
        prefork.attach(self)

    def _build(self, wall_clock: Callable[[], float], rng: np.random.Generator) -> None:
        """The worker, staging and pipeline, empty (also a child's after a fork)."""
        previous: Optional[Pipeline] = getattr(self, "_pipeline", None)
        self._worker = Worker(self, _work, f"mlwatcher-{self.model}", self._waiter,
                              _worker_failed)
        self._worker_started = False
        self._refusals = RejectionCounts(self._log_refusal)
        if previous is None:
            self._staging = Staging(self._clock, self.window_seconds, self._waiter.notify)
        else:  # emptied in place: wrappers compiled before a fork hold this object
            self._staging.reset(self._waiter.notify)
        self._pipeline = Pipeline(
            self.model, self._staging, self._schema, self._refusals, self.reservoir_size,
            rng, self._log, self.max_categories, self._clock, wall_clock,
            self.max_ids, self.id_ttl_seconds,
            fleet=self._fleet if previous is None else previous.fleet,
        )
        self._intake = Intake(
            self._schema, self._staging, self._refusals, self._pipeline.drain,
            self._schema_learned,
        )
        if self._schema.classes is not None:
            self._schema_learned()
        if previous is not None:  # a child after a fork judges against the same profile
            self._pipeline.judge = previous.judge

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
        kwargs = {name: getattr(settings, name) for name in _CHECKED}
        kwargs.update(overrides)
        monitor = cls(registry=registry, **kwargs)
        monitor.http_addr = settings.http.addr
        monitor.http_port = settings.http.port
        monitor.history = WindowHistory.from_settings(monitor.model, settings.history, registry)
        return monitor

    def _schema_learned(self) -> None:
        """Size what depends on the classes and features, once they are known."""
        schema = self._schema
        assert schema.n_classes is not None
        self._pipeline.size(schema.n_classes)
        self._staging.configure(schema.n_classes, schema.n_features, 1 << 30)

    def adopt_classes(self, classes: Sequence[Any]) -> None:
        """Take class values from an estimator's ``classes_`` (used by :meth:`wrap`).

        Explicit ``class_names`` win, and so do the classes of data already observed;
        otherwise the estimator's values become the ``class`` labels.

        Raises
        ------
        ValueError
            When the number of classes differs from the known one.
        """
        keep_known = self._names_declared or self._staging.last_offer is not None
        if self._schema.adopt_classes(classes, keep_known, f"monitor {self.model!r}"):
            self._schema_learned()

    # ------------------------------------------------------------------ request path
    def observe(
        self, proba: Any, features: Any = None, labels: Any = None, ids: Any = None
    ) -> None:
        """Record one batch of predictions, validated before it returns.

        Parameters
        ----------
        proba : array-like of shape (n_rows, n_classes)
            predict_proba output: numpy array (float32 or float64), nested lists, or a
            pandas DataFrame.
        features : array-like of shape (n_rows, n_features), optional
            The model's input: a numeric array, or a DataFrame whose columns name the
            features (text, categorical and boolean columns are described as values,
            datetimes as Unix seconds).
        labels : array-like, optional
            True classes: class values (as in ``class_names``), class indices, or
            one-hot rows of shape (n_rows, n_classes). NaN or None: no label.
        ids : sequence of str or int, optional
            One prediction id per row, kept (``max_ids``, ``id_ttl_seconds``) so that
            :meth:`observe_labels` can join labels that arrive later.

        Raises
        ------
        ValueError, TypeError
            On a bad batch, naming the argument, the value and what was expected. The
            batch is counted in ``mlwatcher_rejected_rows_total`` first and nothing of
            it is kept.
        """
        self._start_worker()
        self._intake.offer(proba, features, labels, self.threshold, strict=True, ids=ids)

    def observe_quietly(
        self,
        proba: Any,
        features: Any = None,
        labels: Any = None,
        threshold: Optional[float] = None,
        ids: Any = None,
    ) -> bool:
        """Like :meth:`observe`, but never raises, and checks values later, in bulk.

        Unusable probabilities reject the batch; unusable features or labels are left
        out (``mlwatcher_dropped_rows_total``) and the predictions kept. Refusals are
        logged at a bounded rate. Returns whether the predictions were staged.
        `threshold` overrides the monitor's for this batch (two classes only).
        """
        try:
            self._start_worker()
            return self._intake.offer(
                proba, features, labels, self.threshold if threshold is None else threshold,
                strict=False, ids=ids,
            )
        except BatchError:
            return False
        except Exception:  # noqa: BLE001 - monitoring must never hurt the model
            self._refusals.reject("internal", count_rows(proba), "an internal error")
            self._log.warning(
                "internal", f"mlwatcher: model {self.model!r} failed to observe", exc_info=True
            )
        return False

    def observe_common(self, proba: Any, features: Any, labels: Any) -> bool:
        """Stage a batch at the least cost when it has the common form (arrays of the
        learned shapes, integer class labels); False, having done nothing, otherwise:
        then call :meth:`observe_quietly`. Never raises. The decorator's first try."""
        # Until a first call went through observe_quietly, the worker may not run.
        return self._worker_started and self._intake.offer_common(
            proba, features, labels, self.threshold
        )

    def request_state(self) -> Tuple["ModelMonitor", Staging, InputSchema, Any]:
        """What the compiled request path (:func:`.kernel.stage_call`) stages a common
        call with; the staging object stays the same for the monitor's life (a forked
        child empties it in place)."""
        return (self, self._staging, self._schema, self._labels_var)

    def observe_labels(self, ids: Any, labels: Any) -> None:
        """Join labels that arrive after their predictions, by prediction id.

        A label whose prediction is held (see ``max_ids``, ``id_ttl_seconds``) feeds
        the lifetime label counters and, while the prediction's window is still open
        and its row in that window's sample, the window's label metrics. Unknown and
        expired ids, and second labels of one prediction, are counted
        (``mlwatcher_late_labels_*``), never an error. Every staged batch is processed
        first, so a label may follow its prediction at once.

        Parameters
        ----------
        ids : sequence of str or int
            Prediction ids, as given to :meth:`observe` (or the ids block).
        labels : array-like
            One label per id: class values, class indices or one-hot rows, as for
            :meth:`observe`; NaN or None: no label for that id (not counted).

        Raises
        ------
        ValueError, TypeError
            When `ids` or `labels` cannot be used, naming the argument, the value and
            what was expected; counted in ``mlwatcher_late_labels_rejected_total``.
        """
        keys, indices = check_label_call(
            ids, labels, self._schema.classes, self._pipeline.late, self._pipeline.lock,
            self._log_refusal,
        )
        self._pipeline.join_labels(keys, indices)

    def _log_refusal(self, key: str, text: str) -> None:
        self._log.warning(key, f"mlwatcher: model {self.model!r} {text}")

    # ------------------------------------------------------------------ processing
    def flush(self) -> None:
        """Process every staged batch now: counters and the window are exact after."""
        self._pipeline.drain(seal=True)

    def tick(self) -> None:
        """Close the window if it is due, process what is staged and publish the closed
        window's statistics (scrapes and the worker call this)."""
        self._pipeline.tick()
        self.history.update(self)

    def close_window(self) -> Optional[WindowStats]:
        """Close the current window now, publish its statistics and return them.

        The next window starts now and lasts ``window_seconds``. Returns None when no
        class is known yet (no batch and no ``n_classes``).
        """
        window = self._pipeline.close_window()
        self.history.update(self)
        return window

    # ------------------------------------------------------------------ lifecycle
    def _start_worker(self) -> None:
        if self.background and not self._closed and not self._worker.alive:
            self._worker.start()
        self._worker_started = True

    def __repr__(self) -> str:
        return (
            f"ModelMonitor(model={self.model!r}, n_classes={self.n_classes}, "
            f"window_seconds={self.window_seconds}, reservoir_size={self.reservoir_size})"
        )
