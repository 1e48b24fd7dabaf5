"""The check vocabulary of configuration values: one small function per kind of value.

A :data:`Check` takes an option's name (or key path) and its value and returns the
problem, if any, as a ``TypeError`` or ``ValueError`` whose message names the option, its
value and what was expected (``"name == value, must be ..."``). The ``_``-named checks
and helpers here are the package's own: :mod:`.config` and :mod:`.serveconfig` build
their tables of checks from them, :mod:`.fleetconfig` shares the value tests.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any, Callable, List, Mapping, Optional

import numpy as np

from .configfile import join_path

__all__ = ["Check", "as_list"]

#: A check takes the option's name (or key path) and value and returns the problem, if any.
Check = Callable[[str, Any], Optional[Exception]]


def _show(value: Any) -> str:
    """``repr(value)``, shortened to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:76] + " ..."


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _int_in(low: int, high: Optional[int] = None, optional: bool = False) -> Check:
    null = " or null" if optional else ""
    expected = f"an int >= {low}" if high is None else f"an int in [{low}, {high}]"

    def check(name: str, value: Any) -> Optional[Exception]:
        if value is None and optional:
            return None
        if not _is_int(value):
            return TypeError(f"{name} == {_show(value)}, must be {expected}{null}")
        if value < low:
            return ValueError(f"{name} == {_show(value)}, must be an int >= {low}{null}")
        if high is not None and value > high:
            return ValueError(f"{name} == {_show(value)}, must be an int <= {high} (the limit)")
        return None

    return check


def _positive_seconds(name: str, value: Any) -> Optional[Exception]:
    if not _is_number(value):
        return TypeError(f"{name} == {_show(value)}, must be a number of seconds > 0")
    if not math.isfinite(value):
        return ValueError(f"{name} == {_show(value)}, must be a finite number of seconds")
    if value <= 0:
        return ValueError(f"{name} == {_show(value)}, must be a number of seconds > 0")
    return None


def _probability(name: str, value: Any) -> Optional[Exception]:
    if not _is_number(value):
        return TypeError(f"{name} == {_show(value)}, must be a number in [0, 1]")
    if not 0.0 <= value <= 1.0:
        return ValueError(f"{name} == {_show(value)}, must be a number in [0, 1]")
    return None


def _name(name: str, value: Any) -> Optional[Exception]:
    if not isinstance(value, str):
        return TypeError(f"{name} == {_show(value)}, must be a non-empty string")
    if not value.strip():
        return ValueError(f"{name} == {_show(value)}, must be a non-empty string")
    return None


def _class_value(name: str, value: Any) -> Optional[Exception]:
    if isinstance(value, (str, numbers.Number, np.generic)) and not isinstance(value, bytes):
        return None
    return TypeError(f"{name} == {_show(value)}, must be a string, a number or a boolean")


def _feature_ref(name: str, value: Any) -> Optional[Exception]:
    if _is_int(value):
        if value < 0:
            return ValueError(f"{name} == {_show(value)}, must be a column index >= 0 or a name")
        return None
    if isinstance(value, str):
        return _name(name, value)
    return TypeError(f"{name} == {_show(value)}, must be a feature name or a column index")


def as_list(value: Any) -> Optional[List[Any]]:
    """``value`` as a list when it is an ordered collection (not a string or a mapping).

    Parameters
    ----------
    value : object

    Returns
    -------
    list or None
        The items of a list, tuple, 1-D array or other sized iterable; None for a string,
        bytes, a mapping, a set, an array of another shape or a scalar.
    """
    if isinstance(value, (str, bytes, Mapping, set, frozenset)):
        return None
    if not (hasattr(value, "__len__") and hasattr(value, "__iter__")):
        return None
    if isinstance(value, np.ndarray) and value.ndim != 1:
        return None
    return list(value)


def _list_of(item_check: Check, what: str, high: int, min_len: int = 0,
             optional: bool = True) -> Check:
    expected = f"a list of {what}" + (" or null" if optional else "")

    def check(name: str, value: Any) -> Optional[Exception]:
        if value is None and optional:
            return None
        items = as_list(value)
        if items is None:
            return TypeError(f"{name} == {_show(value)}, must be {expected}")
        if len(items) > high:
            return ValueError(f"{name} has {len(items)} items, must have at most {high}")
        for position, item in enumerate(items):
            problem = item_check(f"{name}[{position}]", item)
            if problem:
                return problem
        if len(set(map(str, items))) != len(items):
            return ValueError(f"{name} == {_show(items)}, must not repeat a name")
        if len(items) < min_len:
            return ValueError(f"{name} == {_show(items)}, must name at least {min_len} classes")
        return None

    return check


def _random_state(name: str, value: Any) -> Optional[Exception]:
    if value is None or (_is_int(value) and value >= 0):
        return None
    error = ValueError if _is_int(value) else TypeError
    return error(f"{name} == {_show(value)}, must be an int >= 0 or null")


def _port(name: str, value: Any) -> Optional[Exception]:
    expected = "a TCP port in [0, 65535] (0 picks a free one)"
    if not _is_int(value):
        return TypeError(f"{name} == {_show(value)}, must be {expected}")
    if not 0 <= value <= 65535:
        return ValueError(f"{name} == {_show(value)}, must be {expected}")
    return None


def _reference(name: str, value: Any) -> Optional[Exception]:
    if value is None or type(value).__name__ == "ReferenceProfile":
        return None
    if isinstance(value, os.PathLike):
        return None
    return _name(name, value)


def _thresholds(name: str, value: Any) -> Optional[Exception]:
    from .judge import DEFAULT_THRESHOLDS

    if value is None:
        return None
    if not isinstance(value, Mapping):
        return TypeError(f"{name} == {_show(value)}, must be a mapping of drift method to "
                         "threshold, or null")
    for method, threshold in value.items():
        if method not in DEFAULT_THRESHOLDS:
            return ValueError(f"{join_path(name, str(method))}: unknown drift method, "
                              f"expected one of {sorted(DEFAULT_THRESHOLDS)}")
        if threshold is not None and (not _is_number(threshold)
                                      or not math.isfinite(threshold) or threshold < 0):
            return ValueError(f"{join_path(name, str(method))} == {_show(threshold)}, must "
                              "be a number >= 0 or null (not counted)")
    return None
