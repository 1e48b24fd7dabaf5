"""Validation of the monitor's settings, from keyword arguments or a YAML file.

One set of checks serves both: :class:`~mlwatcher_exporter.ModelMonitor` raises on the
first bad argument of a direct call, and :func:`load_config` reports every problem of a
file at once, each with its key path.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

__all__ = [
    "ConfigError",
    "MonitorSettings",
    "HttpSettings",
    "DEFAULT_PORT",
    "check_settings",
    "load_config",
    "parse_config",
]

# Outside 9100-9999, which Prometheus' list of default exporter ports has filled up.
DEFAULT_PORT = 10150


class ConfigError(ValueError):
    """A configuration with problems; ``problems`` lists each as ``"key.path: message"``."""

    def __init__(self, problems: Sequence[str], source: str = "configuration") -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source} has {len(self.problems)} problem(s):\n{lines}")


@dataclass(frozen=True)
class HttpSettings:
    """Where the /metrics endpoint listens."""

    addr: str = "127.0.0.1"
    port: int = DEFAULT_PORT


@dataclass(frozen=True)
class MonitorSettings:
    """Validated keyword arguments of ModelMonitor, with their defaults."""

    model: str = "default"
    n_classes: Optional[int] = None
    class_names: Optional[Tuple[Any, ...]] = None
    window_seconds: float = 60.0
    reservoir_size: int = 10_000
    threshold: float = 0.5
    feature_names: Optional[Tuple[str, ...]] = None
    categorical_features: Tuple[Union[str, int], ...] = ()
    max_categories: int = 10
    random_state: Optional[int] = None
    http: HttpSettings = field(default_factory=HttpSettings)


Check = Callable[[Any], Optional[str]]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int_at_least(low: int, optional: bool = False) -> Check:
    def check(value: Any) -> Optional[str]:
        if value is None and optional:
            return None
        if not _is_int(value) or value < low:
            return f"== {value!r}, must be an int >= {low}" + (" or null" if optional else "")
        return None

    return check


def _positive_seconds(value: Any) -> Optional[str]:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        return f"== {value!r}, must be a number of seconds > 0"
    return None


def _probability(value: Any) -> Optional[str]:
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        return f"== {value!r}, must be a number in [0, 1]"
    return None


def _name(value: Any) -> Optional[str]:
    if not isinstance(value, str) or not value.strip():
        return f"== {value!r}, must be a non-empty string"
    return None


def _optional_list(item_check: Optional[Check], what: str) -> Check:
    def check(value: Any) -> Optional[str]:
        if value is None:
            return None
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            return f"== {value!r}, must be a list of {what} or null"
        for position, item in enumerate(value):
            problem = item_check(item) if item_check else None
            if problem:
                return f"[{position}] {problem}"
        if len(set(map(str, value))) != len(value):
            return f"== {list(value)!r}, must not repeat a name"
        return None

    return check


def _class_names(value: Any) -> Optional[str]:
    problem = _optional_list(None, "class names")(value)
    if problem is None and value is not None and len(value) < 2:
        return f"== {list(value)!r}, must name at least 2 classes"
    return problem


def _feature_ref(value: Any) -> Optional[str]:
    if _is_int(value) and value >= 0:
        return None
    return _name(value)


def _random_state(value: Any) -> Optional[str]:
    if value is None or (_is_int(value) and value >= 0):
        return None
    return f"== {value!r}, must be an int >= 0 or null"


def _port(value: Any) -> Optional[str]:
    if not _is_int(value) or not 0 <= value <= 65535:
        return f"== {value!r}, must be a TCP port in [0, 65535] (0 picks a free one)"
    return None


_MONITOR_CHECKS: Dict[str, Check] = {
    "model": _name,
    "n_classes": _int_at_least(2, optional=True),
    "class_names": _class_names,
    "window_seconds": _positive_seconds,
    "reservoir_size": _int_at_least(1),
    "threshold": _probability,
    "feature_names": _optional_list(_name, "feature names"),
    "categorical_features": _optional_list(_feature_ref, "feature names or column indices"),
    "max_categories": _int_at_least(1),
    "random_state": _random_state,
}

_HTTP_CHECKS: Dict[str, Check] = {"addr": _name, "port": _port}


def _check_section(
    data: Mapping[str, Any], checks: Mapping[str, Check], prefix: str
) -> List[str]:
    problems = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in checks:
            problems.append(f"{path}: unknown option, expected one of {sorted(checks)}")
            continue
        problem = checks[key](value)
        if problem:
            problems.append(f"{path} {problem}")
    return problems


def _cross_checks(data: Mapping[str, Any]) -> List[str]:
    """Problems that involve two options at once."""
    problems = []
    n_classes, names = data.get("n_classes"), data.get("class_names")
    if _is_int(n_classes) and isinstance(names, Sequence) and not isinstance(names, str):
        if len(names) != n_classes:
            problems.append(
                f"class_names has {len(names)} names, must have n_classes == {n_classes}"
            )
    features = data.get("feature_names")
    categorical = data.get("categorical_features") or ()
    if isinstance(features, Sequence) and isinstance(categorical, Sequence):
        for position, ref in enumerate(categorical):
            if isinstance(ref, str) and ref not in features:
                problems.append(
                    f"categorical_features[{position}] == {ref!r}, must be one of feature_names"
                )
            if _is_int(ref) and ref >= len(features):
                problems.append(
                    f"categorical_features[{position}] == {ref}, must be < {len(features)} "
                    "(the number of feature_names)"
                )
    return problems


def check_settings(**kwargs: Any) -> List[str]:
    """Every problem with ModelMonitor keyword arguments, as ``"name == value, must ..."``."""
    return _check_section(kwargs, _MONITOR_CHECKS, "") + _cross_checks(kwargs)


def _settings(data: Mapping[str, Any], http: Mapping[str, Any]) -> MonitorSettings:
    """Build settings from already validated mappings."""
    values = dict(data)
    for key in ("class_names", "feature_names", "categorical_features"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    if "window_seconds" in values:
        values["window_seconds"] = float(values["window_seconds"])
    return MonitorSettings(**values, http=HttpSettings(**http))


def parse_config(data: Any, source: str = "configuration") -> MonitorSettings:
    """Validate a parsed YAML document; raise ConfigError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError([f"top level == {type(data).__name__}, must be a mapping"], source)
    body = {k: v for k, v in data.items() if k != "http"}
    http = data.get("http") or {}
    problems = check_settings(**body)
    if not isinstance(http, Mapping):
        problems.append(f"http == {http!r}, must be a mapping with addr and port")
        http = {}
    else:
        problems += _check_section(http, _HTTP_CHECKS, "http.")
    if problems:
        raise ConfigError(problems, source)
    return _settings(body, http)


def load_config(path: Union[str, "os.PathLike[str]"]) -> MonitorSettings:
    """Read and validate a YAML configuration file (see ``config/mlwatcher.yml``).

    Raises
    ------
    ConfigError
        Listing every problem, each with its key path.
    FileNotFoundError
        When `path` does not exist.
    """
    with open(path, encoding="utf-8") as stream:
        try:
            data = yaml.safe_load(stream)
        except yaml.YAMLError as exc:
            raise ConfigError([f"not valid YAML: {exc}"], str(path)) from None
    return parse_config(data, str(path))
