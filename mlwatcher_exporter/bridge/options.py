"""Option groups of the Anodot bridge, validated the same way from Python and from YAML.

Each group is a frozen dataclass. Its ``_SPEC`` lists, per field, the accepted types and
bounds; :func:`field_problems` checks a mapping of values against it and returns every
problem, so the YAML loader can report them all at once with their key paths, while the
constructor raises the first one as ``TypeError``/``ValueError``.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, TypeVar, cast

__all__ = [
    "MappingOptions",
    "SendOptions",
    "SpoolOptions",
    "DeadLetterOptions",
    "field_problems",
    "resolve",
    "check_positive",
    "is_positive_number",
    "COUNTER_MODES",
    "NAMINGS",
    "MAX_BATCH_SIZE",
]

COUNTER_MODES = ("delta", "gauge")
NAMINGS = ("prometheus", "mlwatcher-v1")
MAX_BATCH_SIZE = 1000  # Anodot accepts at most 1000 points per request.

_MIB = 1024 * 1024

_Group = TypeVar("_Group")


class _Spec:
    """Type and bounds of one option."""

    def __init__(
        self,
        kind: str,
        *,
        min_val: Optional[float] = None,
        max_val: Optional[float] = None,
        include_min: bool = True,
        optional: bool = False,
        choices: Optional[Tuple[str, ...]] = None,
    ) -> None:
        self.kind = kind
        self.min_val = min_val
        self.max_val = max_val
        self.include_min = include_min
        self.optional = optional
        self.choices = choices

    def check(self, name: str, value: Any) -> Optional[Exception]:
        """Return the problem with ``value``, or None."""
        if value is None:
            if self.optional:
                return None
            return TypeError(f"{name} == None, must be {self._expected()}.")
        if self.kind in ("int", "number"):
            ok_types: Tuple[type, ...] = (int,) if self.kind == "int" else (int, float)
            if isinstance(value, bool) or not isinstance(value, ok_types):
                return TypeError(f"{name} == {value!r}, must be {self._expected()}.")
            number = float(cast(float, value))
            if self.kind == "number" and not math.isfinite(number):
                return ValueError(f"{name} == {value!r}, must be a finite number.")
            if self.min_val is not None:
                if number < self.min_val or (not self.include_min and number == self.min_val):
                    op = ">=" if self.include_min else ">"
                    return ValueError(f"{name} == {value!r}, must be {op} {self.min_val}.")
            if self.max_val is not None and number > self.max_val:
                return ValueError(f"{name} == {value!r}, must be <= {self.max_val}.")
            return None
        if self.kind == "bool":
            if not isinstance(value, bool):
                return TypeError(f"{name} == {value!r}, must be true or false.")
            return None
        if self.kind == "str":
            if not isinstance(value, str):
                return TypeError(f"{name} == {value!r}, must be a string.")
            if not value:
                return ValueError(f"{name} == '', must be a non-empty string.")
            if self.choices is not None and value not in self.choices:
                return ValueError(f"{name} == {value!r}, must be one of {list(self.choices)}.")
            return None
        if self.kind == "str_list":
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                return TypeError(f"{name} == {value!r}, must be a list of strings.")
            for i, item in enumerate(value):
                if not isinstance(item, str) or not item:
                    return TypeError(f"{name}[{i}] == {item!r}, must be a non-empty string.")
            return None
        if self.kind == "str_map":
            if not isinstance(value, Mapping):
                return TypeError(f"{name} == {value!r}, must be a mapping of strings.")
            for key, item in value.items():
                if not isinstance(key, str) or not key:
                    return TypeError(f"{name} key {key!r} must be a non-empty string.")
                if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                    return TypeError(f"{name}.{key} == {item!r}, must be a string.")
                if str(item) == "":
                    return ValueError(f"{name}.{key} == '', must be a non-empty string.")
            return None
        raise AssertionError(self.kind)  # pragma: no cover

    def _expected(self) -> str:
        return {
            "int": "an integer",
            "number": "a number",
            "bool": "true or false",
            "str": "a string",
            "str_list": "a list of strings",
            "str_map": "a mapping of strings",
        }[self.kind]


def field_problems(cls: Type[Any], values: Mapping[str, Any]) -> List[Tuple[str, Exception]]:
    """Return ``(field, problem)`` for every invalid or unknown value of option group ``cls``."""
    spec: Dict[str, _Spec] = cls._SPEC
    problems: List[Tuple[str, Exception]] = []
    for key, value in values.items():
        if key not in spec:
            problems.append(
                (key, ValueError(f"unknown option {key!r}, expected one of {sorted(spec)}."))
            )
            continue
        problem = spec[key].check(key, value)
        if problem is not None:
            problems.append((key, problem))
    if not problems:
        problems.extend(cls._cross_check({**_defaults(cls), **values}))
    return problems


_POSITIVE = _Spec("number", min_val=0, include_min=False)


def is_positive_number(value: Any) -> bool:
    """Return True for a finite number > 0 (an int or a float, not a bool)."""
    return _POSITIVE.check("value", value) is None


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


def _defaults(cls: Type[Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def _raise_first(obj: Any) -> None:
    values = {f.name: getattr(obj, f.name) for f in fields(obj)}
    problems = field_problems(type(obj), values)
    if problems:
        raise problems[0][1]


@dataclass(frozen=True)
class MappingOptions:
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
        _raise_first(self)
        for name in ("include_prefixes", "exclude_prefixes", "tag_label_prefixes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "properties", {k: str(v) for k, v in self.properties.items()})

    @staticmethod
    def _cross_check(values: Mapping[str, Any]) -> List[Tuple[str, Exception]]:
        reserved = {"what", "target_type", "ver"}
        return [
            ("properties", ValueError(f"properties.{key} is reserved, use another name."))
            for key in values["properties"]
            if key in reserved
        ]


@dataclass(frozen=True)
class SendOptions:
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

    def __post_init__(self) -> None:
        _raise_first(self)

    @staticmethod
    def _cross_check(values: Mapping[str, Any]) -> List[Tuple[str, Exception]]:
        if values["backoff_max_seconds"] < values["backoff_initial_seconds"]:
            return [(
                "backoff_max_seconds",
                ValueError(
                    f"backoff_max_seconds == {values['backoff_max_seconds']!r}, must be >= "
                    f"backoff_initial_seconds ({values['backoff_initial_seconds']!r})."
                ),
            )]
        return []


@dataclass(frozen=True)
class SpoolOptions:
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

    def __post_init__(self) -> None:
        _raise_first(self)

    @staticmethod
    def _cross_check(values: Mapping[str, Any]) -> List[Tuple[str, Exception]]:
        if values["segment_bytes"] * 2 > values["max_bytes"]:
            return [(
                "segment_bytes",
                ValueError(
                    f"segment_bytes == {values['segment_bytes']!r}, must be <= max_bytes / 2 "
                    f"({values['max_bytes'] // 2})."
                ),
            )]
        return []


@dataclass(frozen=True)
class DeadLetterOptions:
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

    _SPEC = {
        "path": _Spec("str", optional=True),
        "max_bytes": _Spec("int", min_val=0),
    }

    def __post_init__(self) -> None:
        _raise_first(self)

    @staticmethod
    def _cross_check(values: Mapping[str, Any]) -> List[Tuple[str, Exception]]:
        return []
