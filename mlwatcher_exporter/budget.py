"""The series budget: at most ``fleet.max_series`` series per model, cut in a fixed order.

A Prometheus target whose scrape exceeds its ``sample_limit`` is dropped whole, so a
model with many features must lose some series rather than every one. What is
published first, and therefore dropped last:

1. ``core``, never cut: the model's info, the per-class counters, the pred1 and
   spread12 statistics and histograms, the window's scalar gauges, rejections, late
   labels and the budget's own series;
2. ``class_statistics``: the window's per-class gauges (rows, ratio, precision, recall,
   F1, one-vs-rest accuracy), classes in column order: 6 per class, so bounded by the
   classes (and the counters of (1) give each of them exactly over any range);
3. ``feature_counters``: count, sums, sum of squares and missing values of each
   continuous feature (exact across replicas), features in column order;
4. ``confusion_matrix``: the whole matrix (when enabled), or nothing;
5. ``feature_statistics``: each feature's window statistics, missing ratio, value
   ratios and drift scores, features in column order;
6. ``feature_histograms``: the configured feature histograms, in configuration order.

A part is cut unit by unit (feature, class) from the end; once a part is cut, every
later part is left out. Each series left out is counted once
(``mlwatcher_series_dropped_total{family=part}``: the distinct series the budget has
ever left out) and each part is logged once per model.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from prometheus_client.samples import Sample

from . import naming as n

__all__ = [
    "PARTS",
    "PART_FAMILIES",
    "BUDGET_FAMILIES",
    "Cut",
    "plan_cut",
    "feature_units",
    "keep_features",
    "SeriesBudget",
    "estimate_series",
    "PART_OF",
    "select_samples",
]

logger = logging.getLogger("mlwatcher_exporter")

PARTS = ("class_statistics", "feature_counters", "confusion_matrix", "feature_statistics",
         "feature_histograms")
PART_FAMILIES: Mapping[str, Tuple[str, ...]] = {
    "feature_counters": (n.FEATURE_VALUES, n.FEATURE_MISSING_VALUES, n.FEATURE_VALUE_SUM,
                         n.FEATURE_VALUE_SQUARES),
    "confusion_matrix": (n.CONFUSION,),
    "class_statistics": (n.PREDICTED_CLASS_ROWS, n.PREDICTED_CLASS_RATIO, n.CLASS_ACCURACY,
                         n.PRECISION, n.RECALL, n.F1),
    "feature_statistics": (n.FEATURE, n.FEATURE_MISSING_RATIO, n.FEATURE_VALUE_RATIO,
                           n.FEATURE_DRIFT),
    "feature_histograms": (n.FEATURE_HISTOGRAM,),
}
PART_OF = {name: part for part, names in PART_FAMILIES.items() for name in names}
_WHOLE = "__whole__"  # the unit of a part cut all or nothing

BUDGET_FAMILIES: Dict[str, tuple] = {
    n.PUBLISHED_SERIES: ("gauge", "Series of this model in this scrape, after the budget.",
                         ()),
    n.SERIES_LIMIT: ("gauge", "Series per model at most (fleet.max_series).", ()),
    n.SERIES_DROPPED: (
        "counter", "Distinct series the series budget has left out, by part.", ("family",)),
}
#: Series of the budget's own families per model.
BUDGET_SERIES = 2 + len(PARTS)


class Cut:
    """What the budget keeps of one model's scrape.

    Attributes
    ----------
    kept : dict of str to set of str or None
        Per part, the units (features) kept; None: all of them.
    dropped : dict of str to int
        Series left out per part.
    published : int
        Series kept, the budget's own included.
    """

    def __init__(self, kept: Dict[str, Optional[Set[str]]], dropped: Dict[str, int],
                 published: int) -> None:
        self.kept = kept
        self.dropped = dropped
        self.published = published

    @property
    def cuts(self) -> bool:
        """Whether anything is left out."""
        return any(self.dropped.values())


def plan_cut(core: int, units: Mapping[str, Sequence[Tuple[str, int]]], limit: int,
             unavailable: Optional[Mapping[str, int]] = None) -> Cut:
    """Keep `core` series, then each part's units in order while they fit in `limit`.

    `units` gives per part ``(unit, series)`` in publication order; `unavailable` series
    that are never built (a confusion matrix beyond its cap) count as dropped.
    """
    room = limit - core - BUDGET_SERIES
    kept: Dict[str, Optional[Set[str]]] = {}
    dropped = {part: int((unavailable or {}).get(part, 0)) for part in PARTS}
    published = core + BUDGET_SERIES
    closed = False
    for part in PARTS:
        part_units = list(units.get(part, ()))
        taken = 0
        if not closed:
            for _, size in part_units:
                if size > room:
                    break
                room -= size
                taken += 1
        if taken < len(part_units):
            closed = True
            kept[part] = {unit for unit, _ in part_units[:taken]}
            dropped[part] += sum(size for _, size in part_units[taken:])
        else:
            kept[part] = None
        published += sum(size for _, size in part_units[:taken])
    return Cut(kept, dropped, published)


def feature_units(samples: Mapping[str, List[Sample]], part: str) -> List[Tuple[str, int]]:
    """``(unit, series)`` of `part` in order of first appearance: units are features,
    classes, or the whole part when its series have neither label."""
    sizes: Dict[str, int] = {}
    for name in PART_FAMILIES[part]:
        for sample in samples.get(name, ()):
            unit = _unit(sample)
            sizes[unit] = sizes.get(unit, 0) + 1
    return list(sizes.items())


def _unit(sample: Sample) -> str:
    labels = sample.labels
    return labels.get("feature") or labels.get("class") or _WHOLE


def keep_features(samples: List[Sample], kept: Optional[Set[str]]) -> List[Sample]:
    """The samples whose unit is in `kept` (all of them when None)."""
    if kept is None:
        return samples
    return [s for s in samples if _unit(s) in kept]


def select_samples(name: str, samples: List[Sample], layout: Any) -> List[Sample]:
    """The samples of family `name` that `layout` publishes: features allowed and not
    denied (``fleet.features``), and of ``mlwatcher_feature`` the chosen statistics."""
    if not layout.selects:
        return samples
    statistics = set(layout.feature_statistics) if name == n.FEATURE else None
    kept = []
    for sample in samples:
        labels = sample.labels
        feature = labels.get("feature")
        if feature is not None and not layout.publishes(feature):
            continue
        if statistics is not None and labels.get("stat") not in statistics:
            continue
        kept.append(sample)
    return kept


def split(samples: Mapping[str, List[Sample]]) -> Tuple[int, Dict[str, List[Tuple[str, int]]]]:
    """Core series and per-part units of one model's samples by family."""
    core = sum(len(v) for name, v in samples.items() if name not in PART_OF)
    return core, {part: feature_units(samples, part) for part in PARTS}


class SeriesBudget:
    """The budget's state of every model on one collector: what was dropped, logged."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Per model and part, the series left out per unit (bounded by the units).
        self._dropped: Dict[str, Dict[str, Dict[str, int]]] = {}
        # Per model, the most series the core and each unit have had: the cut is planned
        # with them, so that a window with fewer series (unlabeled, or none yet) does
        # not move the cut's edge, and the series at the edge do not come and go.
        self._core: Dict[str, int] = {}
        self._sizes: Dict[str, Dict[str, Dict[str, int]]] = {}
        self._logged: Set[Tuple[str, str]] = set()

    def forget(self, model: str) -> None:
        """Drop a model's state (its monitor was removed)."""
        with self._lock:
            self._dropped.pop(model, None)
            self._core.pop(model, None)
            self._sizes.pop(model, None)
            self._logged = {key for key in self._logged if key[0] != model}

    def plan(self, model: str, samples: Mapping[str, List[Sample]], limit: int,
             unavailable: Optional[Mapping[str, int]] = None) -> Cut:
        """The cut of one model's scrape; counts and logs what it leaves out."""
        core, units = split(samples)
        with self._lock:
            core = self._core[model] = max(core, self._core.get(model, 0))
            sizes = self._sizes.setdefault(model, {part: {} for part in PARTS})
            for part, part_units in units.items():
                largest = sizes[part]
                for unit, size in part_units:
                    largest[unit] = max(size, largest.get(unit, 0))
                units[part] = [(unit, largest[unit]) for unit, _ in part_units]
        cut = plan_cut(core, units, limit, unavailable)
        with self._lock:
            seen = self._dropped.setdefault(model, {part: {} for part in PARTS})
            fresh = []
            for part, series in cut.dropped.items():
                kept = cut.kept.get(part)
                left = {u: size for u, size in units.get(part, ())
                        if kept is not None and u not in kept}
                if not units.get(part) and series:  # never built (beyond its cap)
                    left = {_WHOLE: series}
                for unit, size in left.items():
                    seen[part][unit] = max(seen[part].get(unit, 0), size)
                if series and (model, part) not in self._logged:
                    self._logged.add((model, part))
                    fresh.append(part)
        for part in fresh:
            kept = cut.kept.get(part)
            gone = [u for u, _ in units.get(part, ()) if kept is not None and u not in kept]
            what = (f"{len(gone)} units ({_names(gone)})" if gone and gone[0] != _WHOLE
                    else "all of it")
            logger.warning(
                "mlwatcher: model %r: the series budget (fleet.max_series == %d) leaves out "
                "%s of %s (%d series); raise fleet.max_series, or publish fewer features "
                "or statistics (fleet.features, fleet.feature_statistics)",
                model, limit, part, what, cut.dropped[part])
        return cut

    def add_families(self, families: Dict[str, Any], model: str, cut: Cut,
                     limit: int) -> None:
        """Add the budget's own series of `model`."""
        families[n.PUBLISHED_SERIES].add_metric([model], cut.published)
        families[n.SERIES_LIMIT].add_metric([model], limit)
        with self._lock:
            totals = {part: sum(units.values())
                      for part, units in self._dropped.get(model, {}).items()}
        for part in PARTS:
            families[n.SERIES_DROPPED].add_metric([model, part], totals.get(part, 0))


def _names(names: List[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:3])
    return shown + (f", ... {names[-1]!r}" if len(names) > 3 else "")


def estimate_series(n_classes: int, continuous: int, categorical: int,
                    max_categories: int, layout: Any,
                    reference: bool = False) -> Dict[str, int]:
    """Series one model publishes at most, per part (before the budget), ``core`` first.

    Categorical features are counted with ``max_categories`` values and ``__other__``;
    `continuous` and `categorical` are the features published (``fleet.features``).
    With a `reference` profile (docs/drift.md) the core has the prediction drift, the
    estimates and the profile's info, and each feature its drift scores.
    """
    late = (2 + len(n.UNMATCHED_REASONS) + len(n.LATE_LABEL_REJECT_REASONS)
            + len(n.EXPIRED_REASONS) + 1 + len(n.LABEL_DELAY_BUCKETS) + 3)
    core = (
        8  # window rows, sampled rows, end, duration, compute time, labeled rows,
           # accuracy, macro F1
        + 2 * len(n.STATS)  # pred1 and spread12 statistics
        + 4 * n_classes  # 4 counters per class
        + len(n.REJECT_REASONS) + sum(len(r) for r in n.DROP_REASONS.values())
        + len(layout.pred1_buckets) + 3 + len(layout.spread12_buckets) + 3
        + 2  # last prediction, model info
        + late
        + BUDGET_SERIES
    )
    drift = 0
    if reference:
        # 3 categorical methods on the predicted class, 4 continuous ones on pred1 and
        # on spread12; drifted features, estimated accuracy, its stderr, macro F1,
        # F1 per class; mlwatcher_reference_info.
        core += 3 + 4 + 4 + 4 + n_classes + 1
        drift = 4 * continuous + 3 * categorical
    confusion = n_classes * n_classes if layout.confusion_kept(n_classes) else 0
    # "reference" edges: a profile's default 10 bins have 9 edges.
    histograms = sum((9 if isinstance(edges, str) else len(edges)) + 3
                     for edges in layout.feature_buckets.values())
    return {
        "core": core,
        "feature_counters": 5 * continuous,
        "confusion_matrix": confusion,
        "class_statistics": 6 * n_classes,
        "feature_statistics": (len(layout.feature_statistics) + 1) * continuous
        + (max_categories + 2) * categorical + drift,
        "feature_histograms": histograms,
    }
