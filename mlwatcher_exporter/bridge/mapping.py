"""Turn Prometheus metric families into Anodot 2.0 points.

One sample becomes one point::

    mlwatcher_pred1{model="digits",stat="median"} 0.93
    ->
    {"properties": {"what": "mlwatcher_pred1", "model": "digits", "stat": "median",
                    "ver": "1", "target_type": "gauge"},
     "tags": {}, "timestamp": 1700000000, "value": 0.93}

Per family type:

* gauge, info, stateset, unknown: every sample, ``target_type: gauge``.
* counter (``_total``), and the ``_count``/``_sum`` (and, if enabled, ``_bucket``) of
  histograms and summaries: with ``counters="delta"`` the increase since the previous
  snapshot, ``target_type: counter`` (a value lower than the previous one is a reset:
  the increase is the new value; the first snapshot of a series only sets the
  baseline); with ``counters="gauge"`` the cumulative value as a gauge.
* summary quantiles: gauges with a ``quantile`` property.
* ``_created`` samples (and the ``*_created`` gauge families the text format adds) are
  never sent.

Anodot's rules are applied: ``.``, ``=`` and whitespace become ``_`` in keys and values,
keys are cut to 50 characters and values to 150, empty label values are left out,
NaN and infinite values are skipped, and a point with more than 20 properties is
skipped; skipped samples are counted by reason.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter as _Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

from prometheus_client.metrics_core import Metric

from .options import MappingOptions, resolve

__all__ = [
    "PointMapper",
    "MappingResult",
    "sanitize",
    "MAX_PROPERTIES",
    "MAX_KEY_LENGTH",
    "MAX_VALUE_LENGTH",
    "SKIP_REASONS",
]

MAX_PROPERTIES = 20
MAX_KEY_LENGTH = 50
MAX_VALUE_LENGTH = 150
SKIP_REASONS = ("non_finite", "too_many_properties")
_RESERVED = ("what", "target_type", "ver")
_ILLEGAL = re.compile(r"[.=\s]")
# Counter baselines of series not seen for this long are forgotten.
STATE_TTL_SECONDS = 86400


def sanitize(text: str, limit: int = MAX_VALUE_LENGTH) -> str:
    """Return ``text`` with ``.``, ``=`` and whitespace replaced by ``_``, cut to ``limit``.

    Examples
    --------
    >>> sanitize("model v1.2=ok")
    'model_v1_2_ok'
    """
    return _ILLEGAL.sub("_", text)[:limit]


@dataclass
class MappingResult:
    """Points of one snapshot and the samples left out, by reason."""

    points: List[Dict[str, Any]]
    skipped: Dict[str, int] = field(default_factory=dict)


class PointMapper:
    """Map metric families to Anodot points, remembering counter values between calls.

    Parameters
    ----------
    options : MappingOptions, default=MappingOptions()
        What to send and how.
    state : dict or None, default=None
        Counter baselines from :meth:`state` of an earlier mapper (after a restart).
    """

    def __init__(
        self, options: Optional[MappingOptions] = None, state: Optional[Dict[str, Any]] = None
    ) -> None:
        self.options = options = resolve(options, MappingOptions, "options")
        self._last: Dict[str, Tuple[float, int]] = {}
        if state:
            for key, entry in state.get("counters", {}).items():
                try:
                    self._last[str(key)] = (float(entry[0]), int(entry[1]))
                except (TypeError, ValueError, IndexError):
                    continue
        self._constant = {
            sanitize(k, MAX_KEY_LENGTH): sanitize(v) for k, v in options.properties.items()
        }
        self._ver = sanitize(options.ver)

    def state(self) -> Dict[str, Any]:
        """Return the counter baselines as JSON-ready data."""
        return {"counters": {k: [v, ts] for k, (v, ts) in self._last.items()}}

    @property
    def tracks_counters(self) -> bool:
        """True when counters are sent as deltas, so :meth:`state` must be persisted."""
        return self.options.counters == "delta"

    def map(self, families: Iterable[Metric], timestamp: int) -> MappingResult:
        """Return the points of ``families`` at ``timestamp`` (Unix seconds).

        Parameters
        ----------
        families : iterable of prometheus_client.metrics_core.Metric
            From ``registry.collect()`` or ``text_string_to_metric_families``.
        timestamp : int
            Timestamp of every point.
        """
        if isinstance(timestamp, bool) or not isinstance(timestamp, int):
            raise TypeError(f"timestamp == {timestamp!r}, must be an integer (Unix seconds).")
        families = [f for f in families if self._wanted(f.name)]
        cumulative = {f.name for f in families if f.type in ("counter", "histogram", "summary")}
        points: List[Dict[str, Any]] = []
        skipped: _Counter[str] = _Counter()
        for family in families:
            if family.type == "gauge" and family.name.endswith("_created"):
                if family.name[: -len("_created")] in cumulative:
                    continue
            for sample in family.samples:
                kind = self._kind(family, sample.name)
                if kind is None:
                    continue
                value = float(sample.value)
                if kind == "cumulative":
                    if self.options.counters == "delta":
                        value_or_none = self._delta(sample.name, sample.labels, value, timestamp)
                        if value_or_none is None:
                            continue
                        value = value_or_none
                        target_type = "counter"
                    else:
                        target_type = "gauge"
                else:
                    target_type = "gauge"
                if not math.isfinite(value):
                    skipped["non_finite"] += 1
                    continue
                point = self._point(sample.name, sample.labels, value, target_type, timestamp)
                if point is None:
                    skipped["too_many_properties"] += 1
                    continue
                points.append(point)
        self._expire(timestamp)
        return MappingResult(points, dict(skipped))

    # ------------------------------------------------------------------ helpers
    def _wanted(self, name: str) -> bool:
        opts = self.options
        if opts.include_prefixes and not name.startswith(tuple(opts.include_prefixes)):
            return False
        return not name.startswith(tuple(opts.exclude_prefixes)) if opts.exclude_prefixes else True

    def _kind(self, family: Metric, name: str) -> Optional[str]:
        """Return "gauge", "cumulative" or None (not sent) for one sample."""
        if name.endswith("_created") and family.type in ("counter", "histogram", "summary"):
            return None
        if family.type == "counter":
            return "cumulative"
        if family.type in ("histogram", "summary"):
            if name.endswith("_bucket"):
                return "cumulative" if self.options.histogram_buckets else None
            if name.endswith("_count") or name.endswith("_sum"):
                return "cumulative"
            return "gauge"  # summary quantiles
        return "gauge"

    def _delta(
        self, name: str, labels: Dict[str, str], value: float, timestamp: int
    ) -> Optional[float]:
        if not math.isfinite(value):
            return value  # reported as non_finite; the baseline is kept
        key = json.dumps([name, sorted(labels.items())], separators=(",", ":"))
        previous = self._last.get(key)
        self._last[key] = (value, timestamp)
        if previous is None:
            return None
        return value - previous[0] if value >= previous[0] else value

    def _expire(self, timestamp: int) -> None:
        limit = timestamp - STATE_TTL_SECONDS
        stale = [k for k, (_, seen) in self._last.items() if seen < limit]
        for key in stale:
            del self._last[key]

    def _point(
        self,
        name: str,
        labels: Dict[str, str],
        value: float,
        target_type: str,
        timestamp: int,
    ) -> Optional[Dict[str, Any]]:
        properties: Dict[str, str] = {"what": sanitize(name)}
        tags: Dict[str, List[str]] = {}
        tag_prefixes = tuple(self.options.tag_label_prefixes)
        for key, label_value in labels.items():
            if label_value == "":
                continue
            if tag_prefixes and key.startswith(tag_prefixes):
                tags.setdefault(sanitize(key, MAX_KEY_LENGTH), []).append(sanitize(label_value))
                continue
            if key in _RESERVED:
                key = "label_" + key
            properties[sanitize(key, MAX_KEY_LENGTH)] = sanitize(label_value)
        for key, constant in self._constant.items():
            properties.setdefault(key, constant)
        properties["ver"] = self._ver
        properties["target_type"] = target_type
        if len(properties) > MAX_PROPERTIES:
            return None
        return {"properties": properties, "tags": tags, "timestamp": timestamp, "value": value}
