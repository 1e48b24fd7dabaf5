"""Option groups of the Anodot bridge, validated the same way from Python and from YAML.

Each group is a frozen dataclass. Its ``_SPEC`` lists, per field, the accepted types and
bounds; :func:`field_problems` checks a mapping of values against it and returns every
problem, so the YAML loader can report them all at once with their key paths, while the
constructor raises the first one as ``TypeError``/``ValueError``.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, List, Mapping, NamedTuple, Optional, Tuple, Type, TypeVar

__all__ = ["MappingOptions", "SendOptions", "SpoolOptions", "DeadLetterOptions",
           "field_problems", "resolve", "check_positive", "is_positive_number",
           "COUNTER_MODES", "NAMINGS", "MAX_BATCH_SIZE"]

COUNTER_MODES = ("delta", "gauge")
NAMINGS = ("prometheus", "mlwatcher-v1")
MAX_BATCH_SIZE = 1000  # Anodot accepts at most 1000 points per request.

_MIB = 1024 * 1024
_EXPECTED = {"int": "an integer", "number": "a number", "bool": "true or false",
             "str": "a string", "str_list": "a list of strings", "str_map": "a mapping of strings"}
_Group = TypeVar("_Group")
_Problems = List[Tuple[str, Exception]]


class _Spec(NamedTuple):
    """Type and bounds of one option."""

    kind: str
    min_val: Optional[float] = None
    max_val: Optional[float] = None
    include_min: bool = True
    optional: bool = False
    choices: Optional[Tuple[str, ...]] = None

    def check(self, name: str, value: Any) -> Optional[Exception]:
        """Return the problem with ``value``, or None."""
        if value is None and self.optional:
            return None
        wrong_type = TypeError(f"{name} == {value!r}, must be {_EXPECTED[self.kind]}.")
        if self.kind in ("int", "number"):
            if isinstance(value, bool) or not isinstance(
                    value, (int,) if self.kind == "int" else (int, float)):
                return wrong_type
            if isinstance(value, float) and not math.isfinite(value):
                return ValueError(f"{name} == {value!r}, must be a finite number.")
            low = self.min_val
            if low is not None and (value < low or (not self.include_min and value == low)):
                return ValueError(
                    f"{name} == {value!r}, must be {'>=' if self.include_min else '>'} {low}.")
            if self.max_val is not None and value > self.max_val:
                return ValueError(f"{name} == {value!r}, must be <= {self.max_val}.")
        elif self.kind == "bool" or self.kind == "str":
            if not isinstance(value, bool if self.kind == "bool" else str):
                return wrong_type
            if value == "":
                return ValueError(f"{name} == '', must be a non-empty string.")
            if self.choices is not None and value not in self.choices:
                return ValueError(f"{name} == {value!r}, must be one of {list(self.choices)}.")
        elif self.kind == "str_list":
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                return wrong_type
            for i, item in enumerate(value):
                if not isinstance(item, str) or not item:
                    return TypeError(f"{name}[{i}] == {item!r}, must be a non-empty string.")
        else:  # str_map
            if not isinstance(value, Mapping):
                return wrong_type
            for key, item in value.items():
                if not isinstance(key, str) or not key:
                    return TypeError(f"{name} key {key!r} must be a non-empty string.")
                if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                    return TypeError(f"{name}.{key} == {item!r}, must be a string.")
                if str(item) == "":
                    return ValueError(f"{name}.{key} == '', must be a non-empty string.")
        return None


def field_problems(cls: Type[Any], values: Mapping[str, Any]) -> _Problems:
    """Return ``(field, problem)`` for every invalid or unknown value of option group ``cls``."""
    spec = cls._SPEC
    problems: _Problems = []
    for key, value in values.items():
        problem = spec[key].check(key, value) if key in spec else ValueError(
            f"unknown option {key!r}, expected one of {sorted(spec)}.")
        if problem is not None:
            problems.append((key, problem))
    if not problems:
        defaults = {f.name: f.default if f.default_factory is MISSING else f.default_factory()
                    for f in fields(cls)}
        problems.extend(cls._cross_check({**defaults, **values}))
    return problems


def is_positive_number(value: Any) -> bool:
    """Return True for a finite number > 0 (an int or a float, not a bool)."""
    return _Spec("number", min_val=0, include_min=False).check("value", value) is None


def check_positive(name: str, value: Any) -> float:
    """Return ``value`` as a float; raise ValueError naming it unless a finite number > 0."""
    if not is_positive_number(value):
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
    """Base of the option groups: the constructor raises the first problem."""

    _SPEC: Mapping[str, _Spec] = {}

    def __post_init__(self) -> None:
        problems = field_problems(type(self), vars(self))
        if problems:
            raise problems[0][1]

    @staticmethod
    def _cross_check(values: Mapping[str, Any]) -> _Problems:
        return []


@dataclass(frozen=True)
class MappingOptions(_Checked):
    """How Prometheus samples become Anodot points.

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
        ``delta``: per-interval increases with reset detection, sent as ``counter``.
        ``gauge``: the cumulative value, sent as ``gauge``.
    histogram_buckets : bool, default=False
        Also send the ``_bucket`` series of histograms (property ``le``).
    naming : {"prometheus", "mlwatcher-v1"}, default="prometheus"
        ``prometheus``: ``what`` is the Prometheus sample name, labels are properties.
        ``mlwatcher-v1``: the ancestor MLWatcher's names and properties for the window
        statistics (``max_prediction_proba``, ``agent_id``, ``class_name``...), so that
        existing Anodot dashboards and alerts keep working.
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

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("include_prefixes", "exclude_prefixes", "tag_label_prefixes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "properties", {k: str(v) for k, v in self.properties.items()})

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
    points_per_second : float, default=2000.0
        Client-side limit on points sent per second (the account's limit).
    requests_per_minute : float, default=5000.0
        Client-side limit on requests per minute.
    timeout_seconds : float, default=30.0
        Connect and read timeout of one request.
    backoff_initial_seconds : float, default=1.0
        Delay before the first retry of a failed request.
    backoff_max_seconds : float, default=60.0
        Cap of the exponential backoff.
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
        "batch_size": _Spec("int", min_val=1, max_val=MAX_BATCH_SIZE),
        "points_per_second": _Spec("number", min_val=0, include_min=False),
        "requests_per_minute": _Spec("number", min_val=0, include_min=False),
        "timeout_seconds": _Spec("number", min_val=0, include_min=False),
        "backoff_initial_seconds": _Spec("number", min_val=0),
        "backoff_max_seconds": _Spec("number", min_val=0),
        "backoff_multiplier": _Spec("number", min_val=1),
        "backoff_jitter": _Spec("number", min_val=0, max_val=1),
        "max_retry_after_seconds": _Spec("number", min_val=0),
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

    _SPEC = {
        "max_bytes": _Spec("int", min_val=1024),
        "max_age_seconds": _Spec("number", min_val=0, include_min=False),
        "segment_bytes": _Spec("int", min_val=256),
        "fsync": _Spec("bool"),
    }

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

    _SPEC = {"path": _Spec("str", optional=True), "max_bytes": _Spec("int", min_val=0)}
