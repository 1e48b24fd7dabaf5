"""The ``fleet`` option: histogram edges, the confusion matrix and the series budget.

In a YAML file (every key optional, shown with its default)::

    fleet:
      pred1_buckets: [0.1, 0.2, ..., 0.99, 0.995, 0.999, 1.0]
      spread12_buckets: [0.01, 0.05, 0.1, ..., 0.995, 0.999, 1.0]
      confusion_matrix: false
      confusion_max_classes: 20
      feature_buckets: {}          # e.g. {amount: [0, 10, 100, 1000], age: reference}
      max_series: 2500
      feature_statistics: [mean, std, min, max, range, q25, median, q75, iqr]
      features: {allow: ["*"], deny: []}   # shell-style patterns of feature names

``reference`` in place of a feature's edges takes them from the monitor's reference
profile (docs/drift.md): the profile's quantile bin edges of that feature, so the fleet
histogram has the bins the drift scores compare. Without a profile (or before one is
set) that feature has no histogram.

``feature_statistics`` and ``features`` choose what is published per feature: the
window statistics of ``mlwatcher_feature``, and the features whose series (statistics,
ratios, counters, histograms, drift scores) are published at all: those matching an
``allow`` pattern and no ``deny`` pattern (``fnmatch``, case-sensitive). The series
budget then caps what remains.

As a keyword argument, ``ModelMonitor(fleet={...})`` takes the same mapping, or a
:class:`~.fleetcounts.FleetLayout`.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import naming
from .configchecks import _is_int, _is_number, _show
from .fleetcounts import REFERENCE_EDGES, FleetLayout

__all__ = [
    "FLEET_KEYS",
    "MAX_BUCKETS",
    "MAX_FEATURE_HISTOGRAMS",
    "MAX_CONFUSION_CLASSES",
    "MAX_SERIES",
    "MIN_SERIES",
    "fleet_problems",
    "check_fleet",
    "to_layout",
]

#: Most edges of one histogram.
MAX_BUCKETS = 50
#: Most features with a histogram.
MAX_FEATURE_HISTOGRAMS = 100
#: Highest ``confusion_max_classes``: 100 classes are 10,000 series.
MAX_CONFUSION_CLASSES = 100
#: Bounds of ``max_series``.
MIN_SERIES = 100
MAX_SERIES = 1_000_000

FLEET_KEYS = ("pred1_buckets", "spread12_buckets", "confusion_matrix",
              "confusion_max_classes", "feature_buckets", "max_series",
              "feature_statistics", "features")
#: Most patterns in ``features.allow`` or ``features.deny``.
MAX_PATTERNS = 1000


def _edges(name: str, value: Any, unit: bool) -> Optional[str]:
    """Why `value` is not a list of increasing edges (in [0, 1] when `unit`)."""
    within = " in [0, 1]" if unit else ""
    expected = f"a list of 1 to {MAX_BUCKETS} increasing finite numbers{within}"
    if not unit:
        expected += f" or {REFERENCE_EDGES!r}"
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        return f"{name} == {_show(value)}, must be {expected}"
    items = list(value)
    if not 1 <= len(items) <= MAX_BUCKETS:
        return f"{name} has {len(items)} edges, must be {expected}"
    for position, item in enumerate(items):
        if not _is_number(item) or not math.isfinite(item):
            return f"{name}[{position}] == {_show(item)}, must be a finite number"
        if unit and not 0.0 <= item <= 1.0:
            return f"{name}[{position}] == {_show(item)}, must be in [0, 1]"
        if position and not item > items[position - 1]:
            return (f"{name}[{position}] == {_show(item)}, must be greater than "
                    f"{name}[{position - 1}] == {_show(items[position - 1])} (increasing)")
    return None


def fleet_problems(name: str, value: Any,
                   feature_names: Optional[List[str]] = None) -> List[str]:
    """Every problem with the ``fleet`` option `value` (key path `name`)."""
    if value is None or isinstance(value, FleetLayout):
        return []
    if not isinstance(value, Mapping):
        return [f"{name} == {_show(value)}, must be a mapping with keys {list(FLEET_KEYS)}"]
    problems = [f"{name}.{key}: unknown option, expected one of {sorted(FLEET_KEYS)}"
                for key in value if key not in FLEET_KEYS]
    for key in ("pred1_buckets", "spread12_buckets"):
        if key in value:
            problem = _edges(f"{name}.{key}", value[key], unit=True)
            problems += [problem] if problem else []
    if "confusion_matrix" in value and not isinstance(value["confusion_matrix"], bool):
        problems.append(f"{name}.confusion_matrix == {_show(value['confusion_matrix'])}, "
                        "must be true or false")
    for key, low, high in (("confusion_max_classes", 2, MAX_CONFUSION_CLASSES),
                           ("max_series", MIN_SERIES, MAX_SERIES)):
        if key in value:
            item = value[key]
            if not _is_int(item) or not low <= item <= high:
                problems.append(f"{name}.{key} == {_show(item)}, must be an int in "
                                f"[{low}, {high}]")
    problems += _selection_problems(name, value)
    buckets = value.get("feature_buckets")
    if buckets is not None:
        if not isinstance(buckets, Mapping):
            problems.append(f"{name}.feature_buckets == {_show(buckets)}, must be a mapping "
                            "of feature names to lists of edges")
        elif len(buckets) > MAX_FEATURE_HISTOGRAMS:
            problems.append(f"{name}.feature_buckets has {len(buckets)} features, must have "
                            f"at most {MAX_FEATURE_HISTOGRAMS}")
        else:
            for feature, edges in buckets.items():
                path = f"{name}.feature_buckets.{feature}"
                if not isinstance(feature, str) or not feature.strip():
                    problems.append(f"{path}: a key must be a feature name")
                    continue
                if feature_names is not None and feature not in feature_names:
                    problems.append(f"{path}: {feature!r} must be one of feature_names")
                if edges == REFERENCE_EDGES:
                    continue
                problem = _edges(path, edges, unit=False)
                problems += [problem] if problem else []
    return problems


def _names_problem(path: str, value: Any, choices: Optional[Tuple[str, ...]] = None
                   ) -> Optional[str]:
    """Why `value` is not a list of strings (of `choices`, without repeats)."""
    expected = (f"a list of some of {list(choices)}" if choices is not None
                else f"a list of at most {MAX_PATTERNS} shell-style patterns")
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        return f"{path} == {_show(value)}, must be {expected}"
    if len(value) > MAX_PATTERNS:
        return f"{path} has {len(value)} items, must be {expected}"
    for position, item in enumerate(value):
        if not isinstance(item, str) or (choices is not None and item not in choices):
            return f"{path}[{position}] == {_show(item)}, must be {expected}"
    if len(set(value)) != len(value):
        return f"{path} == {_show(value)} repeats an item, must be {expected}"
    return None


def _selection_problems(name: str, value: Mapping[str, Any]) -> List[str]:
    """Problems of ``feature_statistics`` and ``features``."""
    problems = []
    if "feature_statistics" in value:
        problem = _names_problem(f"{name}.feature_statistics", value["feature_statistics"],
                                 naming.STATS)
        problems += [problem] if problem else []
    features = value.get("features")
    if features is None:
        return problems
    if not isinstance(features, Mapping):
        return problems + [f"{name}.features == {_show(features)}, must be a mapping with "
                           "keys ['allow', 'deny']"]
    for key in features:
        if key not in ("allow", "deny"):
            problems.append(f"{name}.features.{key}: unknown option, expected one of "
                            "['allow', 'deny']")
    for key in ("allow", "deny"):
        if key in features:
            problem = _names_problem(f"{name}.features.{key}", features[key])
            problems += [problem] if problem else []
    return problems


def check_fleet(name: str, value: Any) -> Optional[Exception]:
    """The ``fleet`` check of :mod:`.config`: one error naming every problem."""
    problems = fleet_problems(name, value)
    if not problems:
        return None
    wrong_type = value is not None and not isinstance(value, (Mapping, FleetLayout))
    return (TypeError if wrong_type else ValueError)("; ".join(problems))


def to_layout(value: Any) -> FleetLayout:
    """A checked ``fleet`` value as a FleetLayout (None: the defaults)."""
    if value is None:
        return FleetLayout()
    if isinstance(value, FleetLayout):
        return value
    out: Dict[str, Any] = {}
    for key in ("pred1_buckets", "spread12_buckets"):
        if key in value:
            out[key] = tuple(float(edge) for edge in value[key])
    if "confusion_matrix" in value:
        out["confusion_matrix"] = bool(value["confusion_matrix"])
    for key in ("confusion_max_classes", "max_series"):
        if key in value:
            out[key] = int(value[key])
    buckets: Mapping[str, Any] = value.get("feature_buckets") or {}
    out["feature_buckets"] = {
        str(feature): REFERENCE_EDGES if edges == REFERENCE_EDGES
        else tuple(float(edge) for edge in edges) for feature, edges in buckets.items()
    }
    if "feature_statistics" in value:
        out["feature_statistics"] = tuple(value["feature_statistics"])
    features: Mapping[str, Any] = value.get("features") or {}
    for key in ("allow", "deny"):
        if key in features:
            out[f"features_{key}"] = tuple(features[key])
    return FleetLayout(**out)


def feature_bucket_names(value: Any) -> Tuple[str, ...]:
    """Names of the features given histogram edges in a ``fleet`` value."""
    if isinstance(value, FleetLayout):
        return tuple(value.feature_buckets)
    if isinstance(value, Mapping) and isinstance(value.get("feature_buckets"), Mapping):
        return tuple(str(name) for name in value["feature_buckets"])
    return ()
