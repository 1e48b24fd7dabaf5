"""Load and validate the bridge's YAML configuration (``config/anodot.yml``).

Every problem is reported at once, each with its key path::

    ConfigError: config/anodot.yml has 2 problems:
      sending.batch_size: batch_size == 2000, must be <= 1000.
      spool.directory: required.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..configfile import ConfigError, check_file
from .client import is_http_url, redact
from .options import (
    DeadLetterOptions, MappingOptions, SendOptions, SpoolOptions, field_problems,
    is_positive_number,
)

__all__ = ["BridgeConfig", "Target", "ConfigError", "load_config", "parse_config", "read_token"]

_TOP_KEYS = ("anodot", "interval_seconds", "scrape", "mapping", "sending", "spool",
             "dead_letter", "metrics")


@dataclass(frozen=True)
class Target:
    """A ``/metrics`` address to scrape and the properties added to its points."""

    url: str
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BridgeConfig:
    """The whole configuration of the ``anodot-bridge`` and ``anodot-send`` commands.

    See ``config/anodot.yml`` for every option and its default.
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
    mapping: MappingOptions = field(default_factory=MappingOptions)
    sending: SendOptions = field(default_factory=SendOptions)
    spool: SpoolOptions = field(default_factory=SpoolOptions)
    dead_letter: DeadLetterOptions = field(default_factory=DeadLetterOptions)


def load_config(path: "str | os.PathLike[str]") -> BridgeConfig:
    """Read and validate the YAML file at ``path``.

    Raises
    ------
    ConfigError
        Listing every problem with its key path (also for unreadable YAML).
    """
    return check_file(path, lambda data, source: parse_config(data or {}, source))


def parse_config(data: Any, source: str = "<config>") -> BridgeConfig:
    """Validate already-parsed configuration ``data`` (a mapping) into a :class:`BridgeConfig`."""
    problems: List[str] = []
    if not isinstance(data, Mapping):
        raise ConfigError([f"top level must be a mapping, got {type(data).__name__}"], source)
    for key in data:
        if key not in _TOP_KEYS:
            problems.append(f"{key}: unknown key, expected one of {list(_TOP_KEYS)}")

    def section(name: str) -> Dict[str, Any]:
        value = data.get(name)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            problems.append(f"{name}: must be a mapping, got {type(value).__name__}")
            return {}
        return dict(value)

    kwargs: Dict[str, Any] = {}

    anodot = section("anodot")
    for key in anodot:
        if key not in ("base_url", "token_env", "token_file"):
            problems.append(
                f"anodot.{key}: unknown key, expected base_url, token_env or token_file")
    base_url = anodot.get("base_url")
    if base_url is None:
        problems.append("anodot.base_url: required")
    elif not isinstance(base_url, str):
        problems.append(f"anodot.base_url: must be a string, got {base_url!r}")
    else:
        # The same rules as AnodotClient, which would refuse the address later.
        parts = urllib.parse.urlsplit(base_url) if is_http_url(base_url) else None
        if parts is None:
            problems.append(f"anodot.base_url: {redact(base_url)!r} is not an http(s) address")
        elif parts.query or parts.fragment:
            problems.append("anodot.base_url: must not contain a query or fragment (put the "
                            "token in token_env or token_file)")
        kwargs["base_url"] = base_url
    token_env = anodot.get("token_env", "ANODOT_TOKEN")
    token_file = anodot.get("token_file")
    for key, value in (("token_env", token_env), ("token_file", token_file)):
        if value is not None and (not isinstance(value, str) or not value):
            problems.append(f"anodot.{key}: must be a non-empty string or null")
    if token_env is None and token_file is None:
        problems.append("anodot: set token_env or token_file")
    kwargs["token_env"] = token_env
    kwargs["token_file"] = token_file

    interval = data.get("interval_seconds", 60.0)
    if not is_positive_number(interval):
        problems.append(f"interval_seconds: {interval!r}, must be a finite number > 0")
    kwargs["interval_seconds"] = interval

    scrape = section("scrape")
    for key in scrape:
        if key not in ("timeout_seconds", "targets"):
            problems.append(f"scrape.{key}: unknown key, expected timeout_seconds or targets")
    timeout = scrape.get("timeout_seconds", 10.0)
    if not is_positive_number(timeout):
        problems.append(f"scrape.timeout_seconds: {timeout!r}, must be a finite number > 0")
    kwargs["scrape_timeout_seconds"] = timeout
    kwargs["targets"] = tuple(_targets(scrape.get("targets") or [], problems))

    metrics = section("metrics")
    for key in metrics:
        if key not in ("port", "address"):
            problems.append(f"metrics.{key}: unknown key, expected port or address")
    port = metrics.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 0 <= port <= 65535):
        problems.append(f"metrics.port: {port!r}, must be an integer from 0 to 65535 or null")
    address = metrics.get("address", "127.0.0.1")
    if not isinstance(address, str):
        problems.append(f"metrics.address: {address!r}, must be a string")
    kwargs["metrics_port"] = port
    kwargs["metrics_address"] = address

    spool = section("spool")
    directory = spool.pop("directory", None)
    if directory is None:
        problems.append("spool.directory: required")
    elif not isinstance(directory, str) or not directory:
        problems.append(f"spool.directory: {directory!r}, must be a path")
    kwargs["spool_directory"] = directory

    for name, cls, values in (
        ("mapping", MappingOptions, section("mapping")),
        ("sending", SendOptions, section("sending")),
        ("spool", SpoolOptions, spool),
        ("dead_letter", DeadLetterOptions, section("dead_letter")),
    ):
        found = field_problems(cls, values)
        problems.extend(f"{name}.{key}: {problem}" for key, problem in found)
        if not found:
            kwargs[name] = cls(**values)

    if problems:
        raise ConfigError(problems, source)
    return BridgeConfig(**kwargs)


def _targets(raw: Any, problems: List[str]) -> List[Target]:
    if not isinstance(raw, list):
        problems.append(f"scrape.targets: must be a list, got {type(raw).__name__}")
        return []
    targets = []
    for i, item in enumerate(raw):
        path = f"scrape.targets[{i}]"
        if isinstance(item, str):
            item = {"url": item}
        if not isinstance(item, Mapping):
            problems.append(f"{path}: must be a URL or a mapping with url and properties")
            continue
        for key in item:
            if key not in ("url", "properties"):
                problems.append(f"{path}.{key}: unknown key, expected url or properties")
        url = item.get("url")
        if not is_http_url(url):
            problems.append(f"{path}.url: {url!r} is not an http(s) address")
            continue
        properties = item.get("properties") or {}
        if not isinstance(properties, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, (str, int, float))
            and not isinstance(v, bool) and str(v) for k, v in properties.items()
        ):
            problems.append(f"{path}.properties: must map names to non-empty strings")
            continue
        targets.append(Target(str(url), {k: str(v) for k, v in properties.items()}))
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
        assert config.token_env is not None
        token = environ.get(config.token_env, "").strip()
        where = f"anodot.token_env: environment variable {config.token_env} is not set or empty"
    if not token:
        raise ConfigError([where], "token")
    if any(c.isspace() for c in token):
        raise ConfigError(["the token contains whitespace (value hidden)"], "token")
    return token
