"""The bridge's options, checked the same way from Python and from ``config/anodot.yml``.

Each option group (and :class:`BridgeConfig`, :class:`Target`) is a frozen dataclass whose
fields carry their check (type and bounds) and key path. :func:`field_problems` returns
every problem: the constructors raise the first one, and :func:`load_config` (reading the
file with the shared bounded loader, :mod:`mlwatcher_exporter.configfile`) reports them
all with their key paths, e.g. ``sending.batch_size: batch_size == 2000, must be <= 1000.``
``config/anodot.yml`` documents every option, its key path and its default.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from dataclasses import MISSING, dataclass, field, fields
from typing import (Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple, Type,
                    TypeVar)

from ..configfile import ConfigError, check_file, join_path

__all__ = ["MappingOptions", "SendOptions", "SpoolOptions", "DeadLetterOptions", "BridgeConfig",
           "Target", "ConfigError", "load_config", "parse_config", "read_token",
           "field_problems", "resolve", "check_positive", "redact", "is_http_url",
           "COUNTER_MODES", "NAMINGS", "MAX_BATCH_SIZE"]

COUNTER_MODES = ("delta", "gauge")
NAMINGS = ("prometheus", "mlwatcher-v1")
MAX_BATCH_SIZE = 1000  # Anodot accepts at most 1000 points per request.

_MIB = 1024 * 1024
_TOKEN_QUERY = re.compile(r"(token=)[^&\s]*", re.IGNORECASE)
_Group = TypeVar("_Group")
_Problems = List[Tuple[str, Exception]]


def redact(text: str, token: Optional[str] = None) -> str:
    """Return ``text`` with every ``token=...`` query value, and ``token`` itself, hidden.

    Examples
    --------
    >>> redact("POST https://host/api/v1/metrics?token=s3cr3t&protocol=anodot20")
    'POST https://host/api/v1/metrics?token=REDACTED&protocol=anodot20'
    """
    text = _TOKEN_QUERY.sub(r"\1REDACTED", text)
    for hidden in (token, urllib.parse.quote(token, safe="")) if token else ():
        text = text.replace(hidden, "REDACTED")
    return text


def is_http_url(url: Any, bare: bool = False) -> bool:
    """True for an ``http(s)://`` address with a host and a valid port (``bare``: and
    without a query or fragment).

    Examples
    --------
    >>> is_http_url("https://app.anodot.com"), is_http_url("ftp://h"), is_http_url("http://h:x")
    (True, False, False)
    """
    if not isinstance(url, str):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # raises ValueError when not a number in 0-65535
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and bool(parts.hostname)
            and not (bare and (parts.query or parts.fragment)))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: Per kind of option: the test of its type, and what the message says it must be.
_KINDS: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "number": (_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "url": (lambda v: isinstance(v, str), "a string"),
    "str_list": (lambda v: isinstance(v, (list, tuple)), "a list of strings"),
    "str_map": (lambda v: isinstance(v, Mapping), "a mapping of strings"),
}


class _Spec(NamedTuple):
    """Type and bounds of one option (``choices`` for strings; ``bare`` URLs: no query)."""

    kind: str
    low: Optional[float] = None
    high: Optional[float] = None
    include_low: bool = True
    optional: bool = False
    choices: Optional[Tuple[str, ...]] = None
    bare: bool = False

    def check(self, name: str, value: Any) -> Optional[Exception]:
        """Return the problem with ``value``, or None."""
        if value is None and self.optional:
            return None
        is_kind, expected = _KINDS[self.kind]
        if not is_kind(value):
            return TypeError(f"{name} == {value!r}, must be {expected}.")
        if self.kind in ("int", "number"):
            low = self.low
            if isinstance(value, float) and not math.isfinite(value):
                return ValueError(f"{name} == {value!r}, must be a finite number.")
            if low is not None and (value < low or (not self.include_low and value == low)):
                return ValueError(
                    f"{name} == {value!r}, must be {'>=' if self.include_low else '>'} {low}.")
            if self.high is not None and value > self.high:
                return ValueError(f"{name} == {value!r}, must be <= {self.high}.")
        elif self.kind == "str_list":
            for i, item in enumerate(value):
                if not isinstance(item, str) or not item:
                    return TypeError(f"{name}[{i}] == {item!r}, must be a non-empty string.")
        elif self.kind == "str_map":
            for key, item in value.items():
                if not isinstance(key, str) or not key:
                    return TypeError(f"{name} key {key!r} must be a non-empty string.")
                if not isinstance(item, str) and not _number(item):
                    return TypeError(f"{name}.{key} == {item!r}, must be a string.")
                if str(item) == "":
                    return ValueError(f"{name}.{key} == '', must be a non-empty string.")
        elif value == "":
            return ValueError(f"{name} == '', must be a non-empty string.")
        elif self.choices is not None and value not in self.choices:
            return ValueError(f"{name} == {value!r}, must be one of {list(self.choices)}.")
        elif self.kind == "url" and not is_http_url(value, self.bare):
            return ValueError(f"{name} == {redact(value)!r} is not an http(s) address"
                              + (" without a query or fragment." if self.bare else "."))
        return None

    def require(self, name: str, value: Any) -> Any:
        """Return ``value``; raise its problem (TypeError or ValueError) if it has one."""
        problem = self.check(name, value)
        if problem is not None:
            raise problem
        return value


_POSITIVE = _Spec("number", 0, include_low=False)
_BASE_URL = _Spec("url", bare=True)
_STR, _OPTIONAL_STR, _STR_LIST = _Spec("str"), _Spec("str", optional=True), _Spec("str_list")


def _opt(default: Any = MISSING, spec: Optional[_Spec] = None, path: str = "",
         factory: Any = MISSING) -> Any:
    """A field of an option group: its default (or ``factory``), check and key path in the file."""
    return field(default=default, default_factory=factory, metadata={"spec": spec, "path": path})


def _specs(cls: Type[Any]) -> Dict[str, _Spec]:
    """The check of each checked field of ``cls``."""
    return {f.name: f.metadata["spec"] for f in fields(cls) if f.metadata.get("spec")}


def check_positive(name: str, value: Any) -> float:
    """Return ``value`` as a float; raise the problem unless it is a finite number > 0."""
    return float(_POSITIVE.require(name, value))


def field_problems(cls: Type[Any], values: Mapping[str, Any]) -> _Problems:
    """Return ``(field, problem)`` for every invalid or unknown value of option group ``cls``."""
    spec = _specs(cls)
    problems: _Problems = []
    for key, value in values.items():
        problem = spec[key].check(key, value) if key in spec else ValueError(
            f"unknown key, expected one of {sorted(spec)}")
        if problem is not None:
            problems.append((key, problem))
    if not problems:
        defaults = {f.name: f.default if f.default_factory is MISSING else f.default_factory()
                    for f in fields(cls)}
        problems.extend(cls._cross_check({**defaults, **values}))
    return problems


def resolve(value: Optional[_Group], cls: Type[_Group], name: str) -> _Group:
    """Return ``value``, or the defaults ``cls()`` when it is None (TypeError if not a ``cls``)."""
    if value is None:
        return cls()
    if not isinstance(value, cls):
        raise TypeError(f"{name} == {value!r}, must be a {cls.__name__}.")
    return value


class _Checked:
    """Base of the option groups: the constructor raises the first problem, then stores
    lists as tuples and the values of mappings as strings."""

    def __post_init__(self) -> None:
        specs = _specs(type(self))
        problems = field_problems(type(self), {k: getattr(self, k) for k in specs})
        if problems:
            raise problems[0][1]
        for name, spec in specs.items():
            value = getattr(self, name)
            if spec.kind == "str_list":
                object.__setattr__(self, name, tuple(value))
            elif spec.kind == "str_map":
                object.__setattr__(self, name, {k: str(v) for k, v in value.items()})

    @staticmethod
    def _cross_check(values: Mapping[str, Any]) -> _Problems:
        return []


@dataclass(frozen=True)
class MappingOptions(_Checked):
    """How Prometheus samples become Anodot points (``mapping:`` in ``config/anodot.yml``).

    Only families starting with one of ``include_prefixes`` are sent, never those starting
    with one of ``exclude_prefixes`` (the bridge's own). Every point gets the property
    ``ver`` (change it to start new series) and the constant ``properties`` (a label of the
    same name wins); labels starting with one of ``tag_label_prefixes`` become tags.
    ``counters``: ``delta`` sends per-interval increases (``counter``), ``gauge`` the
    cumulative value; ``histogram_buckets`` also sends ``_bucket`` series. ``naming``:
    ``what`` is the Prometheus sample name, or (``mlwatcher-v1``) the ancestor MLWatcher's
    names and properties for the window statistics, for existing Anodot dashboards.
    """

    include_prefixes: Tuple[str, ...] = _opt(("mlwatcher_",), _STR_LIST)
    exclude_prefixes: Tuple[str, ...] = _opt(("mlwatcher_anodot_",), _STR_LIST)
    ver: str = _opt("1", _STR)
    properties: Mapping[str, str] = _opt(spec=_Spec("str_map"), factory=dict)
    tag_label_prefixes: Tuple[str, ...] = _opt((), _STR_LIST)
    counters: str = _opt("delta", _Spec("str", choices=COUNTER_MODES))
    histogram_buckets: bool = _opt(False, _Spec("bool"))
    naming: str = _opt("prometheus", _Spec("str", choices=NAMINGS))

    @staticmethod
    def _cross_check(values: Mapping[str, Any]) -> _Problems:
        return [("properties", ValueError(f"properties.{key} is reserved, use another name."))
                for key in values["properties"] if key in ("what", "target_type", "ver")]


@dataclass(frozen=True)
class SendOptions(_Checked):
    """Batching, rate limits and retries of the sender (``sending:`` in ``config/anodot.yml``).

    ``batch_size`` points per request (at most 1000, Anodot's limit); client-side limits
    ``points_per_second`` and ``requests_per_minute`` (the account's); ``timeout_seconds``
    of one request. Retry ``n`` (from 0) waits ``min(backoff_max_seconds,
    backoff_initial_seconds * backoff_multiplier ** n)``, of which the fraction
    ``backoff_jitter`` is random, or the server's ``Retry-After`` capped at
    ``max_retry_after_seconds``.
    """

    batch_size: int = _opt(MAX_BATCH_SIZE, _Spec("int", 1, MAX_BATCH_SIZE))
    points_per_second: float = _opt(2000.0, _POSITIVE)
    requests_per_minute: float = _opt(5000.0, _POSITIVE)
    timeout_seconds: float = _opt(30.0, _POSITIVE)
    backoff_initial_seconds: float = _opt(1.0, _Spec("number", 0))
    backoff_max_seconds: float = _opt(60.0, _Spec("number", 0))
    backoff_multiplier: float = _opt(2.0, _Spec("number", 1))
    backoff_jitter: float = _opt(0.5, _Spec("number", 0, 1))
    max_retry_after_seconds: float = _opt(600.0, _Spec("number", 0))

    @staticmethod
    def _cross_check(values: Mapping[str, Any]) -> _Problems:
        low, high = values["backoff_initial_seconds"], values["backoff_max_seconds"]
        return [] if high >= low else [("backoff_max_seconds", ValueError(
            f"backoff_max_seconds == {high!r}, must be >= backoff_initial_seconds ({low!r})."))]


@dataclass(frozen=True)
class SpoolOptions(_Checked):
    """Bounds of the on-disk spool (``spool:`` in ``config/anodot.yml``): past ``max_bytes``
    the oldest points are dropped, and so are points older than ``max_age_seconds`` (by
    their timestamp), counted; a new segment file starts past ``segment_bytes`` (at most
    ``max_bytes / 2``); ``fsync`` every append and acknowledgement (off for benchmarks only).
    """

    max_bytes: int = _opt(256 * _MIB, _Spec("int", 1024))
    max_age_seconds: float = _opt(86400.0, _POSITIVE)
    segment_bytes: int = _opt(4 * _MIB, _Spec("int", 256))
    fsync: bool = _opt(True, _Spec("bool"))

    @staticmethod
    def _cross_check(values: Mapping[str, Any]) -> _Problems:
        size, half = values["segment_bytes"], values["max_bytes"] // 2
        return [] if size <= half else [("segment_bytes", ValueError(
            f"segment_bytes == {size!r}, must be <= max_bytes / 2 ({half})."))]


@dataclass(frozen=True)
class DeadLetterOptions(_Checked):
    """The JSON-lines file of points Anodot refused: ``path`` (None: ``dead-letter.jsonl``
    in the spool directory), up to ``max_bytes`` (64 MiB; beyond, dropped and counted)."""

    path: Optional[str] = _opt(None, _OPTIONAL_STR)
    max_bytes: int = _opt(64 * _MIB, _Spec("int", 0))


_GROUPS: Dict[str, Type[Any]] = {"mapping": MappingOptions, "sending": SendOptions,
                                 "spool": SpoolOptions, "dead_letter": DeadLetterOptions}


@dataclass(frozen=True)
class Target(_Checked):
    """A ``/metrics`` address to scrape and the properties added to its points."""

    url: str = _opt(spec=_Spec("url"))
    properties: Mapping[str, str] = _opt(spec=_Spec("str_map"), factory=dict)


@dataclass(frozen=True)
class BridgeConfig(_Checked):
    """The whole configuration of the ``anodot-bridge`` and ``anodot-send`` commands."""

    base_url: str = _opt(spec=_BASE_URL, path="anodot.base_url")
    spool_directory: str = _opt(spec=_STR, path="spool.directory")
    token_env: Optional[str] = _opt("ANODOT_TOKEN", _OPTIONAL_STR, "anodot.token_env")
    token_file: Optional[str] = _opt(None, _OPTIONAL_STR, "anodot.token_file")
    interval_seconds: float = _opt(60.0, _POSITIVE, "interval_seconds")
    scrape_timeout_seconds: float = _opt(10.0, _POSITIVE, "scrape.timeout_seconds")
    targets: Tuple[Target, ...] = _opt((), path="scrape.targets")  # checked by _targets()
    metrics_port: Optional[int] = _opt(None, _Spec("int", 0, 65535, optional=True), "metrics.port")
    metrics_address: str = _opt("127.0.0.1", _STR, "metrics.address")
    metrics_web_config: Optional[str] = _opt(None, _OPTIONAL_STR, "metrics.web_config")
    mapping: MappingOptions = field(default_factory=MappingOptions)
    sending: SendOptions = field(default_factory=SendOptions)
    spool: SpoolOptions = field(default_factory=SpoolOptions)
    dead_letter: DeadLetterOptions = field(default_factory=DeadLetterOptions)

    @staticmethod
    def _cross_check(values: Mapping[str, Any]) -> _Problems:
        none = values["token_env"] is None and values["token_file"] is None
        return [("token_env", ValueError("set token_env or token_file"))] if none else []


#: Key path in the file of each field of BridgeConfig but the option groups.
_PATHS = {f.name: f.metadata["path"] for f in fields(BridgeConfig) if f.metadata.get("path")}


def load_config(path: "str | os.PathLike[str]") -> BridgeConfig:
    """Read and check the YAML file at ``path``; ConfigError lists every problem with its
    key path (also for an unreadable file or invalid YAML)."""
    return check_file(path, lambda data, source: parse_config(data or {}, source))


def _at(path: str, key: str, problem: Exception) -> str:
    """The ``problem`` of field ``key`` under its key path ``path`` (``a.b: 0, must be > 0``)."""
    text = str(problem)
    if text.startswith(key + " == "):
        return f"{path}: {text[len(key) + 4:]}"
    return path + text[len(key):] if text.startswith(key) else f"{path}: {text}"


def parse_config(data: Any, source: str = "<config>") -> BridgeConfig:
    """Check already-parsed configuration ``data`` (a mapping) into a :class:`BridgeConfig`."""
    if not isinstance(data, Mapping):
        raise ConfigError([f"top level must be a mapping, got {type(data).__name__}"], source)
    paths = {name: path.rpartition(".") for name, path in _PATHS.items()}
    allowed: Dict[str, List[str]] = {"": ["anodot", "scrape", "metrics", *_GROUPS]}
    allowed.update((name, [f.name for f in fields(cls)]) for name, cls in _GROUPS.items())
    for section, _, key in paths.values():
        allowed.setdefault(section, []).append(key)
    problems: List[str] = []
    sections: Dict[str, Mapping[Any, Any]] = {"": data}
    for name, keys in allowed.items():
        values = sections.get(name, data.get(name))
        if not isinstance(values, (Mapping, type(None))):
            problems.append(f"{name}: must be a mapping, got {type(values).__name__}")
        sections[name] = values if isinstance(values, Mapping) else {}
        problems += [f"{join_path(name, key)}: unknown key, expected one of {sorted(keys)}"
                     for key in sections[name] if key not in keys]
    kwargs = {name: sections[section][key] for name, (section, _, key) in paths.items()
              if key in sections[section]}
    kwargs["targets"] = tuple(_targets(kwargs.get("targets") or [], problems))
    for required in ("base_url", "spool_directory"):
        if kwargs.get(required) is None:
            problems.append(f"{_PATHS[required]}: required")
            kwargs.pop(required, None)
    scalars = {k: v for k, v in kwargs.items() if k in _specs(BridgeConfig)}
    problems += [_at(_PATHS[key], key, problem)
                 for key, problem in field_problems(BridgeConfig, scalars)]
    for name, cls in _GROUPS.items():
        values = {k: v for k, v in sections[name].items() if k in _specs(cls)}
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
        found = field_problems(Target, item)
        problems += [_at(f"{path}.{key}", key, problem) for key, problem in found]
        if not found:
            targets.append(Target(**item))
    return targets


def read_token(config: BridgeConfig, environ: Optional[Mapping[str, str]] = None) -> str:
    """Return the token from ``token_file`` if set, else from the ``token_env`` variable.

    Raises ConfigError when it is missing, empty or holds whitespace; the message never
    contains a token.
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
