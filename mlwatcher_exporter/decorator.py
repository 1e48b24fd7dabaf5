"""One-line monitoring: a decorator for predict_proba and a proxy for estimators.

Whatever happens in the monitor, the decorated function's return value and its own
exceptions reach the caller untouched; a bad batch is counted in
``mlwatcher_rejected_rows_total`` and logged at a bounded rate.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

import numpy as np

from .validation import is_table

if TYPE_CHECKING:  # pragma: no cover
    from .monitor import ModelMonitor

__all__ = ["watch", "MonitoredEstimator", "find_features"]

_FEATURE_KEYWORDS = ("X", "x", "features")


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


def watch(monitor: "ModelMonitor", func: Callable[..., Any]) -> Callable[..., Any]:
    """Monitor every call of `func`, a predict_proba-like function or method.

    Works on plain functions, on methods in a class body and on bound methods. Labels
    come from an enclosing ``with monitor.labels(y):`` block.

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

    @functools.wraps(func)
    def monitored(*args: Any, **kwargs: Any) -> Any:
        result = func(*args, **kwargs)
        try:
            # The common call, predict_proba(X) with an array, skips find_features.
            features: Optional[Any]
            if args and type(args[0]) is np.ndarray and args[0].ndim == 2:
                features = args[0]
            else:
                features = find_features(args, kwargs)
            monitor.observe_quietly(result, features, monitor.current_labels())
        except Exception:  # noqa: BLE001 - observe_quietly does not raise; not even its logging may
            pass
        return result

    return monitored


class MonitoredEstimator:
    """A proxy of a fitted estimator whose ``predict_proba`` is monitored.

    Every other attribute (``predict``, ``classes_``, ``fit``...) is the estimator's
    own. Created by :meth:`ModelMonitor.wrap`, which takes class names from
    ``estimator.classes_``.
    """

    def __init__(self, estimator: Any, monitor: "ModelMonitor") -> None:
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
        return getattr(self._estimator, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._estimator, name, value)

    def __repr__(self) -> str:
        return f"MonitoredEstimator({self._estimator!r}, model={self._monitor.model!r})"
