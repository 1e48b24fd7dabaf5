"""Checks of the monitor's options, one set for keyword arguments and YAML files.

:func:`check_monitor_arguments` checks the keyword arguments of
:class:`~mlwatcher_exporter.ModelMonitor` and raises ``TypeError``/``ValueError`` naming
the argument, its value and what was expected; :func:`load_config` and
:func:`parse_config` run the same checks on a file and report every problem at once in a
:class:`~mlwatcher_exporter.configfile.ConfigError`, each with its key path. Each option
has its check here (the vocabulary is :mod:`.configchecks`); what they build is a
:class:`~.settings.MonitorSettings` (:mod:`.settings`, imported from here too).

Values that size memory have upper bounds: see :data:`~.settings.LIMITS`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Dict, List, Mapping, Optional, Union

from .configchecks import (
    Check, _class_value, _feature_ref, _int_in, _is_int, _list_of, _name, _port,
    _positive_seconds, _probability, _random_state, _reference, _show, _thresholds, as_list,
)
from .configfile import ConfigError, check_file, join_path, unknown_keys
from .fleetconfig import check_fleet, feature_bucket_names, to_layout
from .settings import (
    DEFAULT_PORT, LIMITS, MAX_CATEGORIES, MAX_CLASSES, MAX_FEATURES, MAX_IDS,
    MAX_RESERVOIR_CELLS, MAX_RESERVOIR_SIZE, HistorySettings, HttpSettings, MonitorSettings,
    memory_estimate,
)

__all__ = [
    "ConfigError",
    "MonitorSettings",
    "HttpSettings",
    "HistorySettings",
    "relative_to",
    "DEFAULT_PORT",
    "LIMITS",
    "MAX_CLASSES",
    "MAX_FEATURES",
    "MAX_RESERVOIR_SIZE",
    "MAX_CATEGORIES",
    "MAX_RESERVOIR_CELLS",
    "MAX_IDS",
    "check_monitor_arguments",
    "check_settings",
    "memory_estimate",
    "load_config",
    "parse_config",
]


_MONITOR_CHECKS: Dict[str, Check] = {
    "model": _name,
    "n_classes": _int_in(2, MAX_CLASSES, optional=True),
    "class_names": _list_of(_class_value, "class names", MAX_CLASSES, min_len=2),
    "window_seconds": _positive_seconds,
    "reservoir_size": _int_in(1, MAX_RESERVOIR_SIZE),
    "threshold": _probability,
    "feature_names": _list_of(_name, "feature names", MAX_FEATURES),
    "categorical_features": _list_of(
        _feature_ref, "feature names or column indices", MAX_FEATURES),
    "max_categories": _int_in(1, MAX_CATEGORIES),
    "random_state": _random_state,
    "max_ids": _int_in(1, MAX_IDS),
    "id_ttl_seconds": _positive_seconds,
    "reference": _reference,
    "drift_thresholds": _thresholds,
}

_MONITOR_CHECKS["fleet"] = check_fleet  # histogram edges, confusion matrix, budget

_HTTP_CHECKS: Dict[str, Check] = {"addr": _name, "port": _port}
_HISTORY_CHECKS: Dict[str, Check] = {
    "directory": lambda name, value: None if value is None else _name(name, value),
    "max_bytes": _int_in(1024, 1 << 40),
    "max_files": _int_in(1, 1000),
    "keep": _int_in(1, 10_000),
}


def _cross_checks(values: Mapping[str, Any], partial: bool, prefix: str = "") -> List[Exception]:
    """Problems between valid options; `partial` when some were left out as invalid."""
    problems: List[Exception] = []
    n_classes = values.get("n_classes")
    names = as_list(values.get("class_names"))
    if n_classes is not None and names is not None and len(names) != n_classes:
        problems.append(ValueError(
            f"{prefix}class_names has {len(names)} names, must have n_classes == {n_classes}"))
    features = as_list(values.get("feature_names"))
    categorical = as_list(values.get("categorical_features")) or []
    if features is not None:
        for position, ref in enumerate(categorical):
            if isinstance(ref, str) and ref not in features:
                problems.append(ValueError(
                    f"{prefix}categorical_features[{position}] == {ref!r}, must be one of "
                    "feature_names"))
            if _is_int(ref) and ref >= len(features):
                problems.append(ValueError(
                    f"{prefix}categorical_features[{position}] == {ref}, must be < "
                    f"{len(features)} (the number of feature_names)"))
    if features is not None:  # the fleet's feature histograms name declared features
        for feature in feature_bucket_names(values.get("fleet")):
            if feature not in features:
                problems.append(ValueError(
                    f"{prefix}fleet.feature_buckets.{feature}: {feature!r} must be one of "
                    "feature_names"))
    reservoir = values.get("reservoir_size", MonitorSettings.reservoir_size)
    columns = _columns(n_classes if names is None else len(names), features)
    if not partial and columns is not None and reservoir * columns > MAX_RESERVOIR_CELLS:
        problems.append(ValueError(
            f"{prefix}reservoir_size == {reservoir}, must be <= "
            f"{MAX_RESERVOIR_CELLS // columns} with {columns - 3} classes and features "
            f"(reservoir_size * (n_classes + n_features + 3) <= {MAX_RESERVOIR_CELLS})"))
    return problems


def _columns(n_classes: Optional[int], features: Optional[List[Any]]) -> Optional[int]:
    if n_classes is None or features is None:
        return None
    return int(n_classes) + len(features) + 3


def _problems(values: Mapping[Any, Any], checks: Mapping[str, Check],
              prefix: str = "") -> List[Exception]:
    """Every problem with known options of ``values``; cross checks once all are valid."""
    problems = []
    valid = {}
    for key, value in values.items():
        if isinstance(key, str) and key in checks:
            problem = checks[key](join_path(prefix, key), value)
            if problem is None:
                valid[key] = value
            else:
                problems.append(problem)
    if checks is _MONITOR_CHECKS:
        problems += _cross_checks(valid, len(valid) < len(values), prefix)
    return problems


def _settings(values: Mapping[str, Any], http: Mapping[str, Any],
              history: Optional[Mapping[str, Any]] = None) -> MonitorSettings:
    """Build settings from checked values."""
    out = dict(values)
    for key in ("class_names", "feature_names", "categorical_features"):
        items = as_list(out.get(key))
        if items is not None:
            out[key] = tuple(items)
    if out.get("categorical_features", ()) is None:
        out["categorical_features"] = ()
    for key in ("n_classes", "reservoir_size", "max_categories", "random_state", "max_ids"):
        if out.get(key) is not None:
            out[key] = int(out[key])
    for key in ("window_seconds", "threshold", "id_ttl_seconds"):
        if key in out:
            out[key] = float(out[key])
    if out.get("drift_thresholds") is not None:
        out["drift_thresholds"] = dict(out["drift_thresholds"])
    if "fleet" in out:
        out["fleet"] = to_layout(out["fleet"])
    return MonitorSettings(**out, http=HttpSettings(**http),
                           history=HistorySettings(**(history or {})))


def check_monitor_arguments(**arguments: Any) -> MonitorSettings:
    """Check keyword arguments of ModelMonitor; return them as MonitorSettings.

    Parameters
    ----------
    **arguments
        Any of ``model``, ``n_classes``, ``class_names``, ``window_seconds``,
        ``reservoir_size``, ``threshold``, ``feature_names``, ``categorical_features``
        (None means none), ``max_categories``, ``random_state``, ``max_ids`` and
        ``id_ttl_seconds``. Lists may be any
        ordered collection (list, tuple, 1-D array), never a string.

    Returns
    -------
    MonitorSettings
        The values, normalised (tuples, floats, ints); options not given keep their
        defaults.

    Raises
    ------
    TypeError
        When the first problem is a value of the wrong type.
    ValueError
        When it is a value out of range (or an unknown argument). Either message names
        every problem: ``"name == value, must be ..."``, joined by ``"; "``.

    Examples
    --------
    >>> check_monitor_arguments(feature_names=["amount"]).feature_names
    ('amount',)
    >>> check_monitor_arguments(feature_names="amount")
    Traceback (most recent call last):
      ...
    TypeError: feature_names == 'amount', must be a list of feature names or null
    """
    problems = _argument_problems(arguments)
    if problems:
        raise type(problems[0])("; ".join(str(p) for p in problems))
    return _settings(arguments, {})


def _argument_problems(arguments: Mapping[str, Any]) -> List[Exception]:
    unknown = sorted(set(arguments) - set(_MONITOR_CHECKS))
    problems: List[Exception] = [
        ValueError(f"unknown argument {name!r}, expected one of {sorted(_MONITOR_CHECKS)}")
        for name in unknown
    ]
    return problems + _problems(arguments, _MONITOR_CHECKS)


def check_settings(**arguments: Any) -> List[str]:
    """Every problem with ModelMonitor keyword arguments, as ``"name == value, must ..."``.

    Prefer :func:`check_monitor_arguments`, which raises and normalises.
    """
    return [str(problem) for problem in _argument_problems(arguments)]


_TOP_KEYS = tuple(_MONITOR_CHECKS) + ("http", "history")


def parse_config(data: Any, source: str = "configuration") -> MonitorSettings:
    """Check a parsed YAML document; raise ConfigError listing every problem.

    Raises
    ------
    ConfigError
        With every problem as ``"key.path == value, must ..."`` or ``"key.path: ..."``.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError([f"top level must be a mapping, got {type(data).__name__}"], source)
    problems = unknown_keys(data, _TOP_KEYS)
    body = {k: v for k, v in data.items() if isinstance(k, str) and k in _MONITOR_CHECKS}
    problems += [str(p) for p in _problems(body, _MONITOR_CHECKS)]
    http = data.get("http")
    if http is None:
        http = {}
    elif not isinstance(http, Mapping):
        problems.append(f"http: must be a mapping with addr and port, got {_show(http)}")
        http = {}
    else:
        problems += unknown_keys(http, tuple(_HTTP_CHECKS), "http")
        http = {k: v for k, v in http.items() if isinstance(k, str) and k in _HTTP_CHECKS}
        problems += [str(p) for p in _problems(http, _HTTP_CHECKS, "http")]
    history = history_section(data, problems)
    if problems:
        raise ConfigError(problems, source)
    return _settings(body, http, history)


def history_section(data: Mapping[Any, Any], problems: List[str]) -> Dict[str, Any]:
    """The checked ``history:`` section of `data` (problems appended)."""
    section = data.get("history")
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        problems.append(f"history: must be a mapping, got {_show(section)}")
        return {}
    problems += unknown_keys(section, tuple(_HISTORY_CHECKS), "history")
    values = {k: v for k, v in section.items() if isinstance(k, str) and k in _HISTORY_CHECKS}
    problems += [str(p) for p in _problems(values, _HISTORY_CHECKS, "history")]
    return values


def load_config(path: Union[str, "os.PathLike[str]"]) -> MonitorSettings:
    """Read and check a YAML configuration file (see ``config/mlwatcher.yml``).

    Raises
    ------
    ConfigError
        Listing every problem, each with its key path; also when the file is missing,
        unreadable, too large or not YAML (see :func:`~mlwatcher_exporter.configfile.load_yaml`).
    """
    base_dir = os.path.dirname(os.path.abspath(os.fspath(path)))
    return relative_to(check_file(path, parse_config), base_dir)


def relative_to(settings: MonitorSettings, base_dir: str) -> MonitorSettings:
    """`settings` with its relative file names (``reference``, ``history.directory``)
    taken relative to `base_dir`, the directory of the file they were read from (as
    Prometheus does for the files a configuration names)."""
    def resolved(name: Any) -> Any:
        if isinstance(name, (str, os.PathLike)) and not os.path.isabs(name):
            return os.path.join(base_dir, os.fspath(name))
        return name

    history = replace(settings.history, directory=resolved(settings.history.directory))
    return replace(settings, reference=resolved(settings.reference), history=history)
