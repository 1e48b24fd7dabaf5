"""Load and check the bridge's YAML configuration (``config/anodot.yml``).

The file is read by the shared bounded loader (:mod:`mlwatcher_exporter.configfile`), and
every section is an option group of :mod:`.options`, so every problem is reported at once,
each with its key path::

    ConfigError: config/anodot.yml has 2 problems:
      sending.batch_size: batch_size == 2000, must be <= 1000.
      spool.directory: required
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type

from ..configfile import ConfigError, check_file, join_path
from .options import (
    _POSITIVE, DeadLetterOptions, MappingOptions, SendOptions, SpoolOptions, _Checked, _Spec,
    field_problems,
)

__all__ = ["BridgeConfig", "Target", "ConfigError", "load_config", "parse_config", "read_token"]

_GROUPS: Dict[str, Type[Any]] = {"mapping": MappingOptions, "sending": SendOptions,
                                 "spool": SpoolOptions, "dead_letter": DeadLetterOptions}


@dataclass(frozen=True)
class Target(_Checked):
    """A ``/metrics`` address to scrape and the properties added to its points."""

    url: str
    properties: Mapping[str, str] = field(default_factory=dict)

    _SPEC = {"url": _Spec("url"), "properties": _Spec("str_map")}


@dataclass(frozen=True)
class BridgeConfig(_Checked):
    """The whole configuration of the ``anodot-bridge`` and ``anodot-send`` commands.

    See ``config/anodot.yml`` for every option, its key path and its default.
    """

    base_url: str
    spool_directory: str
    token_env: Optional[str] = "ANODOT_TOKEN"
    token_file: Optional[str] = None
    interval_seconds: float = 60.0
    scrape_timeout_seconds: float = 10.0
    targets: Tuple[Target, ...] = ()
    metrics_port: Optional[int] = None
    metrics_address: str = "127.0.0.1"
    metrics_web_config: Optional[str] = None
    mapping: MappingOptions = field(default_factory=MappingOptions)
    sending: SendOptions = field(default_factory=SendOptions)
    spool: SpoolOptions = field(default_factory=SpoolOptions)
    dead_letter: DeadLetterOptions = field(default_factory=DeadLetterOptions)

    _SPEC = {
        "base_url": _Spec("url", bare=True),
        "spool_directory": _Spec("str"),
        "token_env": _Spec("str", optional=True),
        "token_file": _Spec("str", optional=True),
        "interval_seconds": _POSITIVE,
        "scrape_timeout_seconds": _POSITIVE,
        "metrics_port": _Spec("int", 0, 65535, optional=True),
        "metrics_address": _Spec("str"),
        "metrics_web_config": _Spec("str", optional=True),
    }
    #: Key path in the file of each field above (and of ``targets``).
    PATHS = {"base_url": "anodot.base_url", "spool_directory": "spool.directory",
             "token_env": "anodot.token_env", "token_file": "anodot.token_file",
             "interval_seconds": "interval_seconds", "scrape_timeout_seconds":
             "scrape.timeout_seconds", "metrics_port": "metrics.port",
             "metrics_address": "metrics.address", "metrics_web_config": "metrics.web_config",
             "targets": "scrape.targets"}

    @staticmethod
    def _cross_check(values: Mapping[str, Any]) -> List[Tuple[str, Exception]]:
        none = values["token_env"] is None and values["token_file"] is None
        return [("token_env", ValueError("set token_env or token_file"))] if none else []


def load_config(path: "str | os.PathLike[str]") -> BridgeConfig:
    """Read and check the YAML file at ``path``.

    Raises
    ------
    ConfigError
        Listing every problem with its key path (also for an unreadable file or YAML).
    """
    return check_file(path, lambda data, source: parse_config(data or {}, source))


def _at(path: str, problem: Exception) -> str:
    """``path: problem``, without the problem's own ``path ==`` (``a.b: 0, must be > 0``)."""
    text = str(problem)
    if text.startswith(path + " == "):
        return f"{path}: {text[len(path) + 4:]}"
    return text if text.startswith(path) else f"{path}: {text}"


def parse_config(data: Any, source: str = "<config>") -> BridgeConfig:
    """Check already-parsed configuration ``data`` (a mapping) into a :class:`BridgeConfig`."""
    if not isinstance(data, Mapping):
        raise ConfigError([f"top level must be a mapping, got {type(data).__name__}"], source)
    paths = {name: path.rpartition(".") for name, path in BridgeConfig.PATHS.items()}
    allowed: Dict[str, List[str]] = {"": ["anodot", "scrape", "metrics", *_GROUPS]}
    allowed.update((name, [f.name for f in fields(cls)]) for name, cls in _GROUPS.items())
    for section, _, key in paths.values():
        allowed.setdefault(section, []).append(key)
    problems: List[str] = []
    sections: Dict[str, Mapping[Any, Any]] = {"": data}
    for name, keys in allowed.items():
        values = sections.get(name, data.get(name))
        sections[name] = {} if values is None else values
        if not isinstance(values, (Mapping, type(None))):
            problems.append(f"{name}: must be a mapping, got {type(values).__name__}")
            sections[name] = {}
        problems += [f"{join_path(name, key)}: unknown key, expected one of {sorted(keys)}"
                     for key in sections[name] if key not in keys]
    kwargs = {name: sections[section][key] for name, (section, _, key) in paths.items()
              if key in sections[section]}
    kwargs["targets"] = tuple(_targets(kwargs.get("targets") or [], problems))
    for required in ("base_url", "spool_directory"):
        if kwargs.get(required) is None:
            problems.append(f"{BridgeConfig.PATHS[required]}: required")
            kwargs.pop(required, None)
    scalars = {k: v for k, v in kwargs.items() if k in BridgeConfig._SPEC}
    problems += [_at(BridgeConfig.PATHS[key], problem)
                 for key, problem in field_problems(BridgeConfig, scalars, BridgeConfig.PATHS)]
    for name, cls in _GROUPS.items():
        values = {k: v for k, v in sections[name].items() if k in cls._SPEC}
        found = field_problems(cls, values)
        problems += [f"{name}.{key}: {problem}" for key, problem in found]
        if not found:
            kwargs[name] = cls(**values)
    if problems:
        raise ConfigError(problems, source)
    return BridgeConfig(**kwargs)


def _targets(raw: Any, problems: List[str]) -> List[Target]:
    """The targets of ``scrape.targets``: URLs or mappings of ``url`` and ``properties``."""
    if not isinstance(raw, list):
        problems.append(f"scrape.targets: must be a list, got {type(raw).__name__}")
        return []
    targets = []
    for i, item in enumerate(raw):
        path = f"scrape.targets[{i}]"
        item = {"url": item} if isinstance(item, str) else item
        if not isinstance(item, Mapping) or "url" not in item:
            problems.append(f"{path}: must be a URL or a mapping with url and properties")
            continue
        item = {**item, "properties": item.get("properties") or {}}
        found = field_problems(Target, item, {key: f"{path}.{key}" for key in item})
        problems += [_at(f"{path}.{key}", problem) for key, problem in found]
        if not found:
            targets.append(Target(**item))
    return targets


def read_token(config: BridgeConfig, environ: Optional[Mapping[str, str]] = None) -> str:
    """Return the token from ``token_file`` if set, else from the ``token_env`` variable.

    Raises
    ------
    ConfigError
        When the token is missing or empty; the message never contains a token.
    """
    environ = os.environ if environ is None else environ
    if config.token_file is not None:
        try:
            with open(config.token_file, "r", encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise ConfigError([f"anodot.token_file: cannot read {config.token_file!r}: "
                               f"{exc.strerror or type(exc).__name__}"], "token") from None
        where = f"anodot.token_file: {config.token_file!r} is empty"
    else:
        token = environ.get(str(config.token_env), "").strip()
        where = f"anodot.token_env: environment variable {config.token_env} is not set or empty"
    if not token:
        raise ConfigError([where], "token")
    if any(c.isspace() for c in token):
        raise ConfigError(["the token contains whitespace (value hidden)"], "token")
    return token
