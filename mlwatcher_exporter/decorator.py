"""One-line monitoring: a decorator for predict_proba, a proxy for estimators, and the
labels block they read.

Whatever happens in the monitor, the decorated function's return value and its own
exceptions reach the caller untouched; a bad batch is counted in
``mlwatcher_rejected_rows_total`` (or its unusable part in
``mlwatcher_dropped_rows_total``) and logged at a bounded rate.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import inspect
import weakref
from typing import (
    Any, Callable, Literal, Mapping, NamedTuple, Optional, Protocol, Sequence, Tuple,
)

import numpy as np

from . import kernel
from .tables import is_table

__all__ = [
    "Observer",
    "WatchMixin",
    "LabelsBlock",
    "LabelsWithIds",
    "WatchCount",
    "new_labels_var",
    "watch",
    "MonitoredEstimator",
    "find_features",
]

_FEATURE_KEYWORDS = ("X", "x", "features")

# The monitors observing the current call, so that a call watched twice by one monitor
# (a decorated predict_proba inside a wrapped estimator) is counted once, by the outer.
# A tuple: almost always empty or of one monitor, and cheaper to extend than a set.
# Only read while a monitor watches more than one function (see WatchCount).
_OBSERVING: "contextvars.ContextVar[Tuple[int, ...]]" = contextvars.ContextVar(
    "mlwatcher_observing", default=()
)


class WatchCount:
    """How many live functions watch one monitor.

    While there is one, a watched call cannot run inside another watched call of the
    same monitor (short of recursion), so the wrapper skips the re-entrancy guard, a
    context variable set and reset on every call.
    """

    __slots__ = ("live", "__weakref__")

    def __init__(self) -> None:
        self.live = 0

    def add(self, watched: Callable[..., Any]) -> None:
        """Count `watched` until it is collected."""
        self.live += 1
        weakref.finalize(watched, self._remove)

    def _remove(self) -> None:
        self.live -= 1


class Observer(Protocol):
    """What the decorator needs of a monitor."""

    model: str
    watchers: WatchCount

    def observe_common(self, proba: Any, features: Any, labels: Any) -> bool:
        """Stage a batch of the common form cheaply, or return False; never raise."""

    def observe_quietly(
        self, proba: Any, features: Any = None, labels: Any = None, threshold: Any = None,
        ids: Any = None,
    ) -> bool:
        """Record a batch; never raise."""

    def current_block(self) -> Any:
        """What the enclosing labels block holds: labels, a :class:`LabelsWithIds`, or
        None."""

    def adopt_classes(self, classes: Sequence[Any]) -> None:
        """Take class values from an estimator's ``classes_``."""

    def request_state(self) -> Optional[Tuple[Any, Any, Any, Any]]:
        """What :func:`.kernel.stage_call` needs to stage a common call in one compiled
        step, ``(monitor, staging, schema, labels_var)``, or None: every call then takes
        :meth:`observe_common` and :meth:`observe_quietly`."""


def new_labels_var(model: str) -> "contextvars.ContextVar[Any]":
    """The context variable holding a monitor's current labels (per thread and task)."""
    return contextvars.ContextVar(f"mlwatcher_labels_{model}", default=None)


class LabelsWithIds(NamedTuple):
    """What a labels block holds when it also carries prediction ids."""

    labels: Any
    ids: Any


class _PureLabelsBlock(contextlib.ContextDecorator):
    """The context manager of :meth:`ModelMonitor.labels`: a class, because a generator
    based one costs a microsecond more on every monitored call. With `ids`, the block
    holds a :class:`LabelsWithIds` (the prediction ids of the calls inside it)."""

    __slots__ = ("_var", "_labels", "_token")

    def __init__(self, var: "contextvars.ContextVar[Any]", labels: Any, ids: Any = None) -> None:
        self._var = var
        self._labels = labels if ids is None else LabelsWithIds(labels, ids)
        self._token: Any = None

    def _recreate_cm(self) -> "_PureLabelsBlock":
        block = _PureLabelsBlock(self._var, None)
        block._labels = self._labels
        return block

    def __enter__(self) -> None:
        self._token = self._var.set(self._labels)

    def __exit__(self, *exc_info: Any) -> Literal[False]:
        self._var.reset(self._token)
        return False


def _decorate(block: Any, func: Callable[..., Any]) -> Callable[..., Any]:
    """What calling a compiled labels block returns, as
    :class:`contextlib.ContextDecorator` does: `func` run inside a fresh copy of it."""

    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        with block._recreate_cm():
            return func(*args, **kwargs)

    return inner


#: The context manager of :meth:`ModelMonitor.labels`: :class:`_PureLabelsBlock`, or
#: the same object compiled (``_kernel.c``) where the kernel is: the block is made,
#: entered and left on every monitored call, and the three Python frames of
#: ``__init__``, ``__enter__`` and ``__exit__`` were most of its cost.
LabelsBlock: Any = _PureLabelsBlock
if kernel.LabelsBlockBase is not None:
    kernel.configure_labels_block(LabelsWithIds, _decorate)
    LabelsBlock = kernel.LabelsBlockBase


def find_features(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Optional[Any]:
    """The feature table of a predict_proba call: the first positional argument that is
    a 2-D table (the second one for methods, whose first is ``self``), or ``X=``."""
    for value in args[:2]:
        if is_table(value):
            return value
    for key in _FEATURE_KEYWORDS:
        if key in kwargs and is_table(kwargs[key]):
            return kwargs[key]
    return None


def _never(state: Any, result: Any, args: Any, kwargs: Any) -> bool:
    return False


def _observe(monitor: Observer, result: Any, args: Any, kwargs: Any) -> None:
    try:
        # The common call, predict_proba(X) with an array, skips find_features.
        features: Optional[Any]
        if args and type(args[0]) is np.ndarray and args[0].ndim == 2:
            features = args[0]
        else:
            features = find_features(args, kwargs)
        block = monitor.current_block()
        if type(block) is LabelsWithIds:
            monitor.observe_quietly(result, features, block.labels, ids=block.ids)
        elif not monitor.observe_common(result, features, block):
            monitor.observe_quietly(result, features, block)
    except Exception:  # noqa: BLE001 - observe_quietly does not raise; not even its logging may
        pass


def watch(monitor: Observer, func: Callable[..., Any]) -> Callable[..., Any]:
    """Monitor every call of `func`, a predict_proba-like function or method.

    Works on plain functions, ``async def`` functions (the awaited result is observed),
    methods in a class body and bound methods. Labels come from an enclosing
    ``with monitor.labels(y):`` block, prediction ids from ``with monitor.ids(ids):``
    or ``with monitor.labels(y, ids=ids):``.

    Examples
    --------
    >>> import numpy as np
    >>> from mlwatcher_exporter import ModelMonitor
    >>> monitor = ModelMonitor(model="doc", n_classes=2, registry=None, background=False)
    >>> @monitor.watch
    ... def predict_proba(X):
    ...     return np.tile([0.3, 0.7], (len(X), 1))
    >>> predict_proba(np.zeros((4, 3))).shape     # the function's own result, untouched
    (4, 2)
    >>> monitor.close_window().rows
    4
    """
    key = id(monitor)
    watchers = monitor.watchers
    # Test doubles and remote monitors may lack the method: the Python path for them.
    request_state = getattr(monitor, "request_state", None)
    state = request_state() if kernel.COMPILED and request_state is not None else None
    stage_call = kernel.stage_call if state is not None else _never

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def monitored_async(*args: Any, **kwargs: Any) -> Any:
            observing = _OBSERVING.get()
            if key in observing:
                return await func(*args, **kwargs)
            token = _OBSERVING.set(observing + (key,))
            try:
                result = await func(*args, **kwargs)
            finally:
                _OBSERVING.reset(token)
            _observe(monitor, result, args, kwargs)
            return result

        watchers.add(monitored_async)
        return monitored_async

    @functools.wraps(func)
    def monitored(*args: Any, **kwargs: Any) -> Any:
        if watchers.live > 1:
            observing = _OBSERVING.get()
            if key in observing:
                return func(*args, **kwargs)
            token = _OBSERVING.set(observing + (key,))
            try:
                result = func(*args, **kwargs)
            finally:
                _OBSERVING.reset(token)
        else:
            result = func(*args, **kwargs)
        # The common call in one compiled step; anything else (or a refusal of it) in
        # Python. stage_call does not raise but for a bug of ours: never into the caller.
        try:
            if stage_call(state, result, args, kwargs):
                return result
        except Exception:  # noqa: BLE001 - the Python path below handles the batch
            pass
        _observe(monitor, result, args, kwargs)
        return result

    if state is None or kernel.Watched is None:
        watchers.add(monitored)
        return monitored
    # The same wrapper compiled: the call and the common case's staging in C, the rest
    # (and every call while the monitor watches more than one function) in `monitored`.
    watched = functools.update_wrapper(
        kernel.Watched(func, state, watchers, monitored, _observe), func
    )
    watchers.add(watched)
    return watched


class MonitoredEstimator:
    """A proxy of a fitted estimator whose ``predict_proba`` is monitored.

    Every other attribute (``predict``, ``classes_``, ``fit``...) is the estimator's
    own. Created by :meth:`ModelMonitor.wrap`, which takes class names from
    ``estimator.classes_``. A copy watches the same monitor; pickling saves the bare
    estimator (a monitor belongs to a running process: wrap the loaded model again).
    """

    def __init__(self, estimator: Any, monitor: Observer) -> None:
        if not callable(getattr(estimator, "predict_proba", None)):
            raise TypeError(
                f"estimator == {type(estimator).__name__}, must have a predict_proba method"
            )
        classes = getattr(estimator, "classes_", None)
        if classes is not None:
            monitor.adopt_classes(list(classes))
        object.__setattr__(self, "_estimator", estimator)
        object.__setattr__(self, "_monitor", monitor)
        object.__setattr__(self, "predict_proba", watch(monitor, estimator.predict_proba))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_estimator", "_monitor"):
            raise AttributeError(name)  # during copy and unpickling, before __init__
        return getattr(self._estimator, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._estimator, name, value)

    def __copy__(self) -> "MonitoredEstimator":
        return MonitoredEstimator(copy.copy(self._estimator), self._monitor)

    def __deepcopy__(self, memo: dict) -> "MonitoredEstimator":
        return MonitoredEstimator(copy.deepcopy(self._estimator, memo), self._monitor)

    def __reduce__(self) -> Any:
        return (_identity, (self._estimator,))

    def __repr__(self) -> str:
        return f"MonitoredEstimator({self._estimator!r}, model={self._monitor.model!r})"


def _identity(value: Any) -> Any:
    """Unpickles a :class:`MonitoredEstimator` as its bare estimator."""
    return value


class WatchMixin:
    """The watching half of a monitor: :meth:`watch`, :meth:`wrap` and the labels
    blocks, shared by :class:`~.monitor.ModelMonitor` and :class:`~.client.RemoteMonitor`.

    A subclass sets ``_labels_var`` (:func:`new_labels_var`) and ``watchers``
    (:class:`WatchCount`) and provides the rest of :class:`Observer`.
    """

    _labels_var: "contextvars.ContextVar[Any]"
    watchers: WatchCount

    def labels(self, labels: Any = None, ids: Any = None) -> Any:
        """Attach true labels (and/or prediction ids) to the predictions made inside
        the ``with`` block.

        The watched ``predict_proba`` picks them up (per thread and per asyncio task).
        Like a :func:`contextlib.contextmanager`, the block also works as a decorator.
        """
        return LabelsBlock(self._labels_var, labels, ids)

    def ids(self, ids: Any) -> Any:
        """Attach prediction ids to the predictions made inside the ``with`` block, so
        that their labels can be joined later (``observe_labels``)."""
        return LabelsBlock(self._labels_var, None, ids)

    def current_labels(self) -> Any:
        """Labels set by the enclosing :meth:`labels` block, or None."""
        block = self._labels_var.get()
        return block.labels if type(block) is LabelsWithIds else block

    def current_block(self) -> Any:
        """What the enclosing block holds: labels, a ``LabelsWithIds``, or None."""
        return self._labels_var.get()

    def request_state(self) -> Optional[Tuple[Any, Any, Any, Any]]:
        """None: every watched call goes through ``observe_common`` and
        ``observe_quietly`` (a monitor with staging of its own overrides this)."""
        return None

    def watch(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate a predict_proba-like function or method (see :func:`watch`)."""
        return watch(self, func)  # type: ignore[arg-type]

    def wrap(self, estimator: Any) -> "MonitoredEstimator":
        """Return a proxy of `estimator` whose ``predict_proba`` is monitored."""
        return MonitoredEstimator(estimator, self)  # type: ignore[arg-type]
