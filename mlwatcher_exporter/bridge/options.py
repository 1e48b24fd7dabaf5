"""Option groups of the Anodot bridge, checked the same way from Python and from YAML.

Each group is a frozen dataclass whose ``_SPEC`` gives, per field, the accepted type and
bounds. :func:`field_problems` checks a mapping of values against it and returns every
problem, so a file's loader reports them all with their key paths, while the constructor
raises the first as ``TypeError``/``ValueError``. ``config/anodot.yml`` documents every
option with its default.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple, Type, TypeVar

__all__ = ["MappingOptions", "SendOptions", "SpoolOptions", "DeadLetterOptions",
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
    """Return True for an ``http://`` or ``https://`` address with a host and a valid port
    (and, if ``bare``, without a query or fragment).

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


_POSITIVE = _Spec("number", 0, include_low=False)


def field_problems(cls: Type[Any], values: Mapping[str, Any],
                   names: Mapping[str, str] = {}) -> _Problems:
    """Return ``(field, problem)`` for every invalid or unknown value of option group ``cls``;
    ``names`` gives the name a field has in the messages (default: its own)."""
    spec = cls._SPEC
    problems: _Problems = []
    for key, value in values.items():
        problem = spec[key].check(names.get(key, key), value) if key in spec else ValueError(
            f"unknown key, expected one of {sorted(spec)}")
        if problem is not None:
            problems.append((key, problem))
    if not problems:
        defaults = {f.name: f.default if f.default_factory is MISSING else f.default_factory()
                    for f in fields(cls)}
        problems.extend(cls._cross_check({**defaults, **values}))
    return problems


def check_positive(name: str, value: Any) -> float:
    """Return ``value`` as a float; raise ValueError naming it unless a finite number > 0."""
    if _POSITIVE.check(name, value) is not None:
        raise ValueError(f"{name} == {value!r}, must be a finite number > 0.")
    return float(value)


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

    _SPEC: Mapping[str, _Spec] = {}

    def __post_init__(self) -> None:
        problems = field_problems(type(self), {k: getattr(self, k) for k in self._SPEC})
        if problems:
            raise problems[0][1]
        for name, spec in self._SPEC.items():
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
    """How Prometheus samples become Anodot points (``docs/anodot.md``, "Mapping").

    Parameters
    ----------
    include_prefixes : list of str, default=("mlwatcher_",)
        Only metric families whose name starts with one of these are sent.
    exclude_prefixes : list of str, default=("mlwatcher_anodot_",)
        Families starting with one of these are never sent (the bridge's own metrics).
    ver : str, default="1"
        Value of the ``ver`` property of every point; change it to start new series.
    properties : dict of str to str, default={}
        Constant properties added to every point (a label of the same name wins).
    tag_label_prefixes : list of str, default=()
        Labels whose name starts with one of these become Anodot tags, not properties.
    counters : {"delta", "gauge"}, default="delta"
        ``delta``: per-interval increases with reset detection, sent as ``counter``;
        ``gauge``: the cumulative value, sent as ``gauge``.
    histogram_buckets : bool, default=False
        Also send the ``_bucket`` series of histograms (property ``le``).
    naming : {"prometheus", "mlwatcher-v1"}, default="prometheus"
        ``prometheus``: ``what`` is the Prometheus sample name, labels are properties;
        ``mlwatcher-v1``: the ancestor MLWatcher's names and properties for the window
        statistics (``max_prediction_proba``, ``agent_id``...), so that existing Anodot
        dashboards and alerts keep working.
    """

    include_prefixes: Tuple[str, ...] = ("mlwatcher_",)
    exclude_prefixes: Tuple[str, ...] = ("mlwatcher_anodot_",)
    ver: str = "1"
    properties: Mapping[str, str] = field(default_factory=dict)
    tag_label_prefixes: Tuple[str, ...] = ()
    counters: str = "delta"
    histogram_buckets: bool = False
    naming: str = "prometheus"

    _SPEC = {
        "include_prefixes": _Spec("str_list"),
        "exclude_prefixes": _Spec("str_list"),
        "ver": _Spec("str"),
        "properties": _Spec("str_map"),
        "tag_label_prefixes": _Spec("str_list"),
        "counters": _Spec("str", choices=COUNTER_MODES),
        "histogram_buckets": _Spec("bool"),
        "naming": _Spec("str", choices=NAMINGS),
    }

    @staticmethod
    def _cross_check(values: Mapping[str, Any]) -> _Problems:
        return [("properties", ValueError(f"properties.{key} is reserved, use another name."))
                for key in values["properties"] if key in ("what", "target_type", "ver")]


@dataclass(frozen=True)
class SendOptions(_Checked):
    """Batching, rate limits and retries of the HTTP sender.

    Parameters
    ----------
    batch_size : int, default=1000
        Points per request, 1 to 1000 (Anodot's limit).
    points_per_second, requests_per_minute : float, default=2000.0, 5000.0
        Client-side limits (the account's limits).
    timeout_seconds : float, default=30.0
        Connect and read timeout of one request.
    backoff_initial_seconds, backoff_max_seconds : float, default=1.0, 60.0
        Delay before the first retry of a failed request, and its cap.
    backoff_multiplier : float, default=2.0
        Growth of the delay between consecutive retries.
    backoff_jitter : float, default=0.5
        Fraction of each delay that is randomised (0 = none, 1 = full jitter).
    max_retry_after_seconds : float, default=600.0
        Cap on a server's ``Retry-After``.
    """

    batch_size: int = MAX_BATCH_SIZE
    points_per_second: float = 2000.0
    requests_per_minute: float = 5000.0
    timeout_seconds: float = 30.0
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    backoff_multiplier: float = 2.0
    backoff_jitter: float = 0.5
    max_retry_after_seconds: float = 600.0

    _SPEC = {
        "batch_size": _Spec("int", 1, MAX_BATCH_SIZE),
        "points_per_second": _POSITIVE,
        "requests_per_minute": _POSITIVE,
        "timeout_seconds": _POSITIVE,
        "backoff_initial_seconds": _Spec("number", 0),
        "backoff_max_seconds": _Spec("number", 0),
        "backoff_multiplier": _Spec("number", 1),
        "backoff_jitter": _Spec("number", 0, 1),
        "max_retry_after_seconds": _Spec("number", 0),
    }

    @staticmethod
    def _cross_check(values: Mapping[str, Any]) -> _Problems:
        low, high = values["backoff_initial_seconds"], values["backoff_max_seconds"]
        return [] if high >= low else [("backoff_max_seconds", ValueError(
            f"backoff_max_seconds == {high!r}, must be >= backoff_initial_seconds ({low!r})."))]


@dataclass(frozen=True)
class SpoolOptions(_Checked):
    """Bounds of the on-disk spool.

    Parameters
    ----------
    max_bytes : int, default=268435456
        Size bound (256 MiB); beyond it the oldest segments are dropped and counted.
    max_age_seconds : float, default=86400.0
        Points older than this (by their timestamp) are dropped unsent and counted.
    segment_bytes : int, default=4194304
        A segment file is closed and a new one started past this size (4 MiB).
    fsync : bool, default=True
        fsync every append and acknowledgement (turn off only for benchmarks).
    """

    max_bytes: int = 256 * _MIB
    max_age_seconds: float = 86400.0
    segment_bytes: int = 4 * _MIB
    fsync: bool = True

    _SPEC = {"max_bytes": _Spec("int", 1024), "max_age_seconds": _POSITIVE,
             "segment_bytes": _Spec("int", 256), "fsync": _Spec("bool")}

    @staticmethod
    def _cross_check(values: Mapping[str, Any]) -> _Problems:
        size, half = values["segment_bytes"], values["max_bytes"] // 2
        return [] if size <= half else [("segment_bytes", ValueError(
            f"segment_bytes == {size!r}, must be <= max_bytes / 2 ({half})."))]


@dataclass(frozen=True)
class DeadLetterOptions(_Checked):
    """Where points Anodot refused are kept for inspection and replay.

    Parameters
    ----------
    path : str or None, default=None
        JSON-lines file; None means ``dead-letter.jsonl`` inside the spool directory.
    max_bytes : int, default=67108864
        Beyond this size (64 MiB) further dead letters are dropped and counted.
    """

    path: Optional[str] = None
    max_bytes: int = 64 * _MIB

    _SPEC = {"path": _Spec("str", optional=True), "max_bytes": _Spec("int", 0)}
