"""The configuration of ``mlwatcher-exporter serve``: several models, the API's bounds.

A monitor's file (``config/mlwatcher.yml``) is a valid service file with one model. A
service file may list models under ``models:``; the monitor options written at the top
level are the defaults of every entry, which override them. The ``serve:`` section sets
the ingest API's bounds and where its bearer token comes from. Problems are reported
together in one :class:`~.configfile.ConfigError`, each with its key path
(``models[1].n_classes == 1, must be ...``), as for a monitor's file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from .config import (_HTTP_CHECKS, _MONITOR_CHECKS, _cross_checks, _problems, _settings,
                     history_section, relative_to)
from .configchecks import Check, _int_in, _name, _positive_seconds, _show
from .configfile import ConfigError, check_file, join_path, unknown_keys
from .settings import HttpSettings, MonitorSettings

__all__ = ["ServeSettings", "ApiSettings", "MAX_MODELS", "parse_serve_config",
           "load_serve_config"]

#: Most models one service hosts (each is a ``model`` label value of every series).
MAX_MODELS = 100


@dataclass(frozen=True)
class ApiSettings:
    """The ``serve:`` section: bounds of the ingest API and its token."""

    token_env: str = "MLWATCHER_TOKEN"
    token_file: Optional[str] = None
    max_body_bytes: int = 16 << 20
    max_array_bytes: int = 64 << 20
    request_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 90.0
    max_connections: int = 128
    workers: int = 4


@dataclass(frozen=True)
class ServeSettings:
    """Checked service configuration."""

    models: Tuple[MonitorSettings, ...]
    http: HttpSettings = field(default_factory=HttpSettings)
    api: ApiSettings = field(default_factory=ApiSettings)


def _optional_name(name: str, value: Any) -> Optional[Exception]:
    return None if value is None else _name(name, value)


def _seconds_at_most_a_day(name: str, value: Any) -> Optional[Exception]:
    problem = _positive_seconds(name, value)
    if problem is None and value > 86400:
        return ValueError(f"{name} == {_show(value)}, must be <= 86400 seconds")
    return problem


_API_CHECKS: Dict[str, Check] = {
    "token_env": _name,
    "token_file": _optional_name,
    "max_body_bytes": _int_in(1, 1 << 30),
    "max_array_bytes": _int_in(1, 1 << 32),
    "request_timeout": _seconds_at_most_a_day,
    "body_timeout": _seconds_at_most_a_day,
    "idle_timeout": _seconds_at_most_a_day,
    "max_connections": _int_in(1, 65536),
    "workers": _int_in(1, 64),
}
_TOP_KEYS = tuple(_MONITOR_CHECKS) + ("http", "models", "serve", "history")


def _section(data: Mapping[Any, Any], key: str, checks: Mapping[str, Check],
             problems: List[str]) -> Dict[str, Any]:
    """The checked keys of the mapping ``data[key]`` (problems appended)."""
    section = data.get(key)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        problems.append(f"{key}: must be a mapping, got {_show(section)}")
        return {}
    problems += unknown_keys(section, tuple(checks), key)
    values = {k: v for k, v in section.items() if isinstance(k, str) and k in checks}
    problems += [str(p) for p in _problems(values, checks, key)]
    return values


def _models(data: Mapping[Any, Any], defaults: Dict[str, Any], problems: List[str]
            ) -> List[Dict[str, Any]]:
    entries = data.get("models")
    if entries is None:
        return [defaults]
    if not isinstance(entries, list) or not entries:
        problems.append(f"models: must be a non-empty list of models, got {_show(entries)}")
        return []
    if len(entries) > MAX_MODELS:
        problems.append(f"models has {len(entries)} entries, must have at most {MAX_MODELS}")
        return []
    merged: List[Dict[str, Any]] = []
    seen: Dict[str, int] = {}
    for position, entry in enumerate(entries):
        path = f"models[{position}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{path}: must be a mapping of monitor options, got {_show(entry)}")
            continue
        problems += unknown_keys(entry, tuple(_MONITOR_CHECKS), path)
        own = {k: v for k, v in entry.items() if isinstance(k, str) and k in _MONITOR_CHECKS}
        found = [str(problem) for problem in (
            _MONITOR_CHECKS[key](join_path(path, key), value) for key, value in own.items())
            if problem is not None]
        if "model" not in own:
            found.append(f"{path}.model: missing, every listed model needs a name")
        problems += found
        if found:
            continue
        values = {**defaults, **own}
        problems += [str(p) for p in _cross_checks(values, False, path + ".")]
        name = str(values["model"])
        if name in seen:
            problems.append(f"{path}.model == {name!r}, must be unique (models[{seen[name]}] "
                            "has it too)")
        seen.setdefault(name, position)
        merged.append(values)
    return merged


def parse_serve_config(data: Any, source: str = "configuration") -> ServeSettings:
    """Check a parsed service configuration; raise ConfigError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError([f"top level must be a mapping, got {type(data).__name__}"], source)
    problems = unknown_keys(data, _TOP_KEYS)
    top = {k: v for k, v in data.items() if isinstance(k, str) and k in _MONITOR_CHECKS}
    found = _problems(top, _MONITOR_CHECKS, "")
    problems += [str(p) for p in found]
    http = _section(data, "http", _HTTP_CHECKS, problems)
    api = _section(data, "serve", _API_CHECKS, problems)
    models = _models(data, top, problems) if not found else []
    history = history_section(data, problems)  # one section, each model its own file
    if problems:
        raise ConfigError(problems, source)
    token_file = api.get("token_file")
    if token_file is not None and not os.path.isabs(token_file) and os.path.exists(source):
        api["token_file"] = os.path.join(os.path.dirname(os.path.abspath(source)), token_file)
    monitors = [_settings(values, http, history) for values in models]
    if os.path.exists(source):  # read from a file: its file names are relative to it
        base_dir = os.path.dirname(os.path.abspath(source))
        monitors = [relative_to(settings, base_dir) for settings in monitors]
    return ServeSettings(tuple(monitors), HttpSettings(**http), ApiSettings(**api))


def load_serve_config(path: Union[str, "os.PathLike[str]"]) -> ServeSettings:
    """Read and check a service configuration file.

    Raises
    ------
    ConfigError
        Listing every problem, each with its key path (also for an unreadable file).
    """
    return check_file(path, parse_serve_config)
