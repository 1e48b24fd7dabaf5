"""Turn Prometheus metric families into Anodot 2.0 points, as ``docs/anodot.md`` describes.

One sample becomes one point::

    mlwatcher_pred1{model="digits",stat="median"} 0.93
    ->
    {"properties": {"what": "mlwatcher_pred1", "model": "digits", "stat": "median",
                    "ver": "1", "target_type": "gauge"},
     "tags": {}, "timestamp": 1700000000, "value": 0.93}

Counters are sent as per-snapshot increases or as gauges; with ``mlwatcher-v1`` naming
the window statistics get the ancestor MLWatcher's names and properties (:data:`V1_NAMES`),
one point per window stamped with its end. Anodot's limits on keys, values and
properties are applied; skipped samples are counted.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter as _Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from .config import MappingOptions, resolve

__all__ = ["PointMapper", "MappingResult", "sanitize", "V1_NAMES", "MAX_PROPERTIES",
           "MAX_KEY_LENGTH", "MAX_VALUE_LENGTH", "SKIP_REASONS"]

MAX_PROPERTIES = 20
MAX_KEY_LENGTH = 50
MAX_VALUE_LENGTH = 150
SKIP_REASONS = ("non_finite", "too_many_properties")
_RESERVED = ("what", "target_type", "ver")
_ILLEGAL = re.compile(r"[.=\s]")
#: Counter baselines of series not seen for this long are forgotten.
STATE_TTL_SECONDS = 86400
#: ``naming: mlwatcher-v1``: Prometheus family -> the ancestor's ``what`` and target_type.
V1_NAMES = {
    "mlwatcher_pred1": ("max_prediction_proba", "gauge"),
    "mlwatcher_spread12": ("spread12_prediction_proba", "gauge"),
    "mlwatcher_predicted_class_rows": ("prediction_count", "counter"),
    "mlwatcher_predicted_class_ratio": ("prediction_freq", "gauge"),
    "mlwatcher_window_sampled_rows": ("buffer_count", "counter"),
    "mlwatcher_feature": ("feature_value", "gauge"),
    "mlwatcher_feature_value_ratio": ("feature_freq", "gauge"),
    "mlwatcher_class_accuracy": ("accuracy", "gauge"),
    "mlwatcher_precision": ("precision", "gauge"),
    "mlwatcher_recall": ("recall", "gauge"),
    "mlwatcher_f1": ("f1", "gauge"),
}
_WINDOW_END = "mlwatcher_window_end_timestamp_seconds"
_CUMULATIVE = ("counter", "histogram", "summary")
_STATISTIC_LABELS = ("stat", "class", "feature", "value")
_FEATURE_INDEX = re.compile(r"f(\d+)")
_V1_LABELS = {"model": "agent_id", "class": "class_name", "feature": "feat_name"}


def sanitize(text: str, limit: int = MAX_VALUE_LENGTH) -> str:
    """Return ``text`` with ``.``, ``=`` and whitespace replaced by ``_``, cut to ``limit``.

    Examples
    --------
    >>> sanitize("model v1.2=ok")
    'model_v1_2_ok'
    """
    return _ILLEGAL.sub("_", text)[:limit]


def _window_key(labels: Dict[str, str]) -> str:
    """The monitor a sample comes from: its labels but those naming a statistic."""
    return json.dumps(sorted((k, v) for k, v in labels.items() if k not in _STATISTIC_LABELS))


def _v1_labels(labels: Dict[str, str]) -> Dict[str, str]:
    """The ancestor's properties: agent_id, class_name ``class_<c>``, feat_name ``feat_<i>``."""
    out = {}
    for key, value in labels.items():
        if key == "class":
            value = "class_" + value
        elif key == "feature":
            match = _FEATURE_INDEX.fullmatch(value)
            value = "feat_" + match.group(1) if match else value
        out[_V1_LABELS.get(key, key)] = value
    return out


@dataclass
class MappingResult:
    """Points of one snapshot and the samples left out, by reason."""

    points: List[Dict[str, Any]]
    skipped: Dict[str, int] = field(default_factory=dict)


class PointMapper:
    """Map metric families to Anodot points as ``options`` say, remembering counter values
    between calls; ``state`` (from :meth:`state` of an earlier mapper, after a restart)
    holds the counter baselines and, for ``mlwatcher-v1``, the windows already sent."""

    def __init__(self, options: Optional[MappingOptions] = None,
                 state: Optional[Dict[str, Any]] = None) -> None:
        self.options = options = resolve(options, MappingOptions, "options")
        state = state or {}
        self._last: Dict[str, Tuple[float, int]] = {}
        for key, entry in state.get("counters", {}).items():
            try:
                self._last[str(key)] = (float(entry[0]), int(entry[1]))
            except (TypeError, ValueError, IndexError):
                continue
        self._windows = {str(key): float(end) for key, end in state.get("windows", {}).items()
                         if isinstance(end, (int, float))}
        self._constant = {sanitize(k, MAX_KEY_LENGTH): sanitize(v)
                          for k, v in options.properties.items()}
        self._ver = sanitize(options.ver)
        self._v1 = options.naming == "mlwatcher-v1"
        self._cumulative = "counter" if options.counters == "delta" else "gauge"

    def state(self) -> Dict[str, Any]:
        """Return the counter baselines and the windows sent, as JSON-ready data."""
        state: Dict[str, Any] = {"counters": {k: [v, ts] for k, (v, ts) in self._last.items()}}
        if self._v1:
            state["windows"] = dict(self._windows)
        return state

    @property
    def tracks_counters(self) -> bool:
        """True when :meth:`state` must be persisted (counter deltas, or v1 windows)."""
        return self.options.counters == "delta" or self._v1

    def map(self, families: Iterable[Metric], timestamp: int) -> MappingResult:
        """Return the points of ``families`` (from ``registry.collect()`` or
        ``text_string_to_metric_families``) at ``timestamp`` (Unix seconds; with
        ``mlwatcher-v1``, window statistics are stamped with their window's end)."""
        if isinstance(timestamp, bool) or not isinstance(timestamp, int):
            raise TypeError(f"timestamp == {timestamp!r}, must be an integer (Unix seconds).")
        families = list(families)
        ends = {_window_key(s.labels): s.value for f in families if f.name == _WINDOW_END
                for s in f.samples} if self._v1 else {}
        include, exclude = self.options.include_prefixes, self.options.exclude_prefixes
        families = [f for f in families if (not include or f.name.startswith(include))
                    and not f.name.startswith(exclude)]
        # The text format shows a counter's or histogram's _created as a gauge of its own.
        created = {f.name + "_created" for f in families if f.type in _CUMULATIVE}
        points: List[Dict[str, Any]] = []
        skipped: _Counter[str] = _Counter()
        sent_windows: Dict[str, float] = {}
        for family in (f for f in families if not (f.type == "gauge" and f.name in created)):
            v1_name = V1_NAMES.get(family.name) if self._v1 else None
            for sample in family.samples:
                target_type = self._target_type(family, sample.name)
                value = (self._delta(sample, timestamp) if target_type == "counter"
                         else float(sample.value))
                if target_type is None or value is None:
                    continue
                what, labels, stamp = sample.name, sample.labels, timestamp
                if v1_name is not None:
                    (what, target_type), key = v1_name, _window_key(labels)
                    if key in ends:  # one point per window, at its end
                        if ends[key] <= self._windows.get(key, -math.inf):
                            continue
                        sent_windows[key], stamp = ends[key], int(ends[key])
                if self._v1:
                    labels = _v1_labels(labels)
                if not math.isfinite(value):
                    skipped["non_finite"] += 1
                    continue
                # The ancestor published its median twice, as stat median and q50.
                twins = [labels, {**labels, "stat": "q50"}] if v1_name is not None and \
                    labels.get("stat") == "median" else [labels]
                for twin in twins:
                    point = self._point(what, twin, value, target_type, stamp)
                    if point is None:
                        skipped["too_many_properties"] += 1
                    else:
                        points.append(point)
        self._windows.update(sent_windows)
        limit = timestamp - STATE_TTL_SECONDS  # forget the baselines of series gone for long
        self._last = {key: entry for key, entry in self._last.items() if entry[1] >= limit}
        return MappingResult(points, dict(skipped))

    def _target_type(self, family: Metric, name: str) -> Optional[str]:
        """The ``target_type`` of one sample ("counter": sent as increases), None if not sent."""
        if family.type not in _CUMULATIVE:
            return "gauge"
        if name.endswith("_created") or (name.endswith("_bucket")
                                         and not self.options.histogram_buckets):
            return None
        if family.type == "counter" or name.endswith(("_bucket", "_count", "_sum")):
            return self._cumulative
        return "gauge"  # a summary's quantiles

    def _delta(self, sample: Sample, timestamp: int) -> Optional[float]:
        """The increase since the last snapshot (None for the first: the baseline only)."""
        value = float(sample.value)
        if not math.isfinite(value):
            return value  # reported as non_finite; the baseline is kept
        key = json.dumps([sample.name, sorted(sample.labels.items())], separators=(",", ":"))
        previous = self._last.get(key)
        self._last[key] = (value, timestamp)
        if previous is None:
            return None
        return value - previous[0] if value >= previous[0] else value

    def _point(self, what: str, labels: Dict[str, str], value: float, target_type: str,
               timestamp: int) -> Optional[Dict[str, Any]]:
        properties: Dict[str, str] = {"what": sanitize(what)}
        tags: Dict[str, List[str]] = {}
        for key, label_value in labels.items():
            if label_value == "":
                continue
            if key.startswith(self.options.tag_label_prefixes):
                tags.setdefault(sanitize(key, MAX_KEY_LENGTH), []).append(sanitize(label_value))
                continue
            if key in _RESERVED:
                key = "label_" + key
            properties[sanitize(key, MAX_KEY_LENGTH)] = sanitize(label_value)
        for key, constant in self._constant.items():
            properties.setdefault(key, constant)
        properties.update(ver=self._ver, target_type=target_type)
        if len(properties) > MAX_PROPERTIES:
            return None
        return {"properties": properties, "tags": tags, "timestamp": timestamp, "value": value}
