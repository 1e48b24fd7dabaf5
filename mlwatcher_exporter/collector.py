"""The Prometheus collector: fresh metric families from every monitor at each scrape.

One :class:`MonitorCollector` is registered per registry and serves every monitor on
it, so that several models share metric names and differ by their ``model`` label. It
never keeps ``Gauge`` objects: as Prometheus' exporter guidelines ask, each scrape builds
new families from an immutable snapshot, so concurrent scrapes cannot race.

Sample output (one model, abridged)::

    # HELP mlwatcher_window_rows Rows observed in the last completed window, before sampling.
    # TYPE mlwatcher_window_rows gauge
    mlwatcher_window_rows{model="digits"} 3000.0
    mlwatcher_pred1{model="digits",stat="median"} 0.97
    mlwatcher_predictions_total{class="3",model="digits"} 812.0
    mlwatcher_model_info{model="digits",n_classes="10",reservoir_size="10000",...} 1.0
"""

from __future__ import annotations

import threading
from typing import (
    TYPE_CHECKING,
    Dict,
    FrozenSet,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Protocol,
    Set,
    Tuple,
)

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from . import driftmetrics
from . import naming as n
from ._version import __version__
from .textformat import PRERENDERED, render_samples
from .budget import PART_OF, SeriesBudget, keep_features, select_samples
from .families import FAMILIES, WINDOW_FAMILIES, Families, new_family
from .fleetcounts import FleetLayout
from .fleetfamilies import add_fleet_families

if TYPE_CHECKING:  # pragma: no cover
    from .counts import LifetimeCounts
    from .latelabels import LateLabelCounts
    from .window import WindowStats

__all__ = [
    "MonitorCollector",
    "MonitorSnapshot",
    "Publisher",
    "register_monitor",
    "unregister_monitor",
]


class MonitorSnapshot(NamedTuple):
    """What one scrape publishes of a monitor."""

    window: Optional["WindowStats"]
    counts: Optional["LifetimeCounts"]
    rejected: Dict[str, int]
    dropped: Dict[Tuple[str, str], int]
    class_labels: List[str]
    late: Optional["LateLabelCounts"] = None
    reference: Optional[Dict[str, str]] = None  # labels of mlwatcher_reference_info


class Publisher(Protocol):
    """What the collector needs of a monitor."""

    model: str
    window_seconds: float
    reservoir_size: int

    @property
    def n_classes(self) -> Optional[int]:
        """Probability columns, once known."""

    def tick(self) -> None:
        """Close a due window and publish its statistics."""

    def snapshot(self) -> MonitorSnapshot:
        """The published window and copies of the counters."""


class MonitorCollector(Collector):
    """Collects the metrics of every :class:`ModelMonitor` on one registry."""

    def __init__(self) -> None:
        self._monitors: Dict[str, "Publisher"] = {}
        self._parts: Dict[str, _WindowPart] = {}
        self._lock = threading.Lock()
        self._budget = SeriesBudget()

    def add(self, monitor: "Publisher") -> None:
        """Serve `monitor`; its model name must be unique on this registry."""
        with self._lock:
            if monitor.model in self._monitors:
                raise ValueError(
                    f"model == {monitor.model!r} is already monitored on this registry, "
                    "must be unique (close() the other monitor or pick another name)"
                )
            self._monitors[monitor.model] = monitor

    def remove(self, monitor: "Publisher") -> None:
        """Stop serving `monitor`."""
        with self._lock:
            if self._monitors.get(monitor.model) is monitor:
                del self._monitors[monitor.model]
                self._parts.pop(monitor.model, None)
                self._budget.forget(monitor.model)

    def describe(self) -> Iterable[Metric]:
        """The families' names (without samples), for the registry's duplicate check."""
        return [new_family(name) for name in FAMILIES]

    def collect(self) -> Iterator[Metric]:
        """Build every family afresh from each monitor's snapshot."""
        with self._lock:
            monitors = list(self._monitors.values())
        families = {name: new_family(name) for name in FAMILIES}
        for name in WINDOW_FAMILIES:
            setattr(families[name], PRERENDERED, [])
        for monitor in monitors:
            monitor.tick()  # a scrape closes a due window, as the worker would
            snap = monitor.snapshot()
            self._add_budgeted(families, monitor, snap)
        # Families without samples (no window yet, no categorical feature) are left out.
        yield from (family for family in families.values() if family.samples)

    # ---- the series budget (budget.py): one model's families, cut to fleet.max_series
    def _add_budgeted(self, families: Families, monitor: "Publisher",
                      snap: MonitorSnapshot) -> None:
        """Add a monitor's families, cut by its series budget; the window part keeps its
        rendered text (rendered once per window and cut)."""
        model = monitor.model
        layout = snap.counts.layout if snap.counts is not None else FleetLayout()
        own = {name: new_family(name) for name in FAMILIES if name not in WINDOW_FAMILIES}
        _add_monitor(own, monitor, snap)
        if layout.selects:  # fleet.features and fleet.feature_statistics
            for name, family in own.items():
                family.samples[:] = select_samples(name, family.samples, layout)
        samples = {name: family.samples for name, family in own.items() if family.samples}
        part = None
        if snap.window is not None:
            part = self._window_part(model, snap.class_labels, snap.window, layout)
            samples.update(part.samples)
        unavailable = {}
        n_classes = len(snap.class_labels)
        if layout.confusion_matrix and n_classes > layout.confusion_max_classes:
            unavailable["confusion_matrix"] = n_classes * n_classes
        cut = self._budget.plan(model, samples, layout.max_series, unavailable)
        self._budget.add_families(own, model, cut, layout.max_series)
        for name, family in own.items():
            families[name].samples.extend(
                keep_features(family.samples, cut.kept.get(PART_OF.get(name, ""))))
        if part is None:
            return
        if not cut.cuts:
            self._add_part(families, part)
            return
        for name in part.samples:
            kept, text = part.kept(name, cut.kept.get(PART_OF.get(name, "")))
            family = families[name]
            family.samples.extend(kept)
            chunks = getattr(family, PRERENDERED)
            setattr(family, PRERENDERED, None if chunks is None or text is None
                    else chunks + [text])

    def _window_part(self, model: str, classes: List[str], window: "WindowStats",
                     layout: FleetLayout) -> "_WindowPart":
        """A monitor's window families, built and rendered once per window."""
        with self._lock:
            part = self._parts.get(model)
        if part is None or part.window is not window:
            part = _WindowPart.build(model, classes, window, layout)
            with self._lock:
                if model in self._monitors:
                    self._parts[model] = part
        return part

    @staticmethod
    def _add_part(families: Families, part: "_WindowPart") -> None:
        for name, samples in part.samples.items():
            family = families[name]
            family.samples.extend(samples)
            chunks = getattr(family, PRERENDERED)
            text = part.text[name]
            setattr(family, PRERENDERED, None if chunks is None or text is None
                    else chunks + [text])


class _WindowPart(NamedTuple):
    """One monitor's window families: samples, and their exposition text."""

    window: "WindowStats"
    samples: Dict[str, List[Sample]]
    text: Dict[str, Optional[str]]
    # Per family cut by the series budget: the features kept, their samples and text.
    # The cut is stable from scrape to scrape (budget.py), so it is rendered once too.
    cut: Dict[str, Tuple[FrozenSet[str], List[Sample], Optional[str]]]

    def kept(self, name: str, features: Optional[Set[str]]
             ) -> Tuple[List[Sample], Optional[str]]:
        """Family `name`'s samples of the `features` kept (all when None), and their
        text."""
        if features is None:
            return self.samples[name], self.text[name]
        key = frozenset(features)
        cached = self.cut.get(name)
        if cached is None or cached[0] != key:
            samples = keep_features(self.samples[name], features)
            cached = self.cut[name] = (key, samples, render_samples(samples))
        return cached[1], cached[2]

    @classmethod
    def build(cls, model: str, classes: List[str], window: "WindowStats",
              layout: FleetLayout) -> "_WindowPart":
        own = {name: new_family(name) for name in WINDOW_FAMILIES}
        _add_window(own, model, classes, window)
        samples = {name: select_samples(name, family.samples, layout)
                   for name, family in own.items()}
        samples = {name: kept for name, kept in samples.items() if kept}
        text = {name: render_samples(lines) for name, lines in samples.items()}
        return cls(window, samples, text, {})


def _add_monitor(families: Families, monitor: "Publisher",
                 snap: MonitorSnapshot) -> None:
    model = monitor.model
    families[n.MODEL_INFO].add_metric([model], {
        "version": __version__,
        "window_seconds": f"{monitor.window_seconds:g}",
        "reservoir_size": str(monitor.reservoir_size),
        "n_classes": str(monitor.n_classes or 0),
    })
    for reason, rows in snap.rejected.items():
        families[n.REJECTED_ROWS].add_metric([model, reason], rows)
    for (part, reason), rows in snap.dropped.items():
        families[n.DROPPED_ROWS].add_metric([model, part, reason], rows)
    classes = snap.class_labels
    counts = snap.counts
    if counts is not None:
        for name, values in ((n.PREDICTIONS, counts.predictions),
                             (n.LABELED_PREDICTIONS, counts.labeled),
                             (n.CORRECT_PREDICTIONS, counts.correct)):
            for label, value in zip(classes, values.tolist()):
                families[name].add_metric([model, label], value)
        cumulative = counts.pred1_buckets.cumsum().tolist()
        buckets = [(f"{edge:g}", value)
                   for edge, value in zip(counts.layout.pred1_buckets, cumulative)]
        buckets.append(("+Inf", cumulative[-1]))
        families[n.PRED1_HISTOGRAM].add_metric([model], buckets, sum_value=counts.pred1_sum)
        add_fleet_families(families, model, classes, counts)
        if counts.last_prediction is not None:
            families[n.LAST_PREDICTION].add_metric([model], counts.last_prediction)
    if snap.late is not None:
        _add_late(families, model, snap.late)
    driftmetrics.add_reference(families, model, snap.reference)


def _add_late(families: Families, model: str, late: "LateLabelCounts") -> None:
    families[n.LATE_LABELS_MATCHED].add_metric([model], late.matched)
    families[n.LATE_LABELS_DUPLICATE].add_metric([model], late.duplicate)
    for name, values in ((n.LATE_LABELS_UNMATCHED, late.unmatched),
                         (n.LATE_LABELS_REJECTED, late.rejected),
                         (n.PREDICTION_IDS_EXPIRED, late.expired)):
        for reason, value in values.items():
            families[name].add_metric([model, reason], value)
    families[n.PREDICTION_IDS].add_metric([model], late.ids)
    cumulative = late.delay_buckets.cumsum().tolist()
    buckets = [(f"{edge:g}", value) for edge, value in zip(n.LABEL_DELAY_BUCKETS, cumulative)]
    buckets.append(("+Inf", cumulative[-1]))
    families[n.LATE_LABEL_DELAY].add_metric([model], buckets, sum_value=late.delay_sum)


def _add_window(families: Families, model: str, classes: List[str], w: "WindowStats") -> None:
    families[n.WINDOW_ROWS].add_metric([model], w.rows)
    families[n.WINDOW_SAMPLED_ROWS].add_metric([model], w.sampled_rows)
    families[n.WINDOW_END].add_metric([model], w.end_time)
    families[n.WINDOW_DURATION].add_metric([model], w.duration)
    families[n.WINDOW_COMPUTE_DURATION].add_metric([model], w.compute_seconds)
    for label, value in zip(classes, w.class_rows.tolist()):
        families[n.PREDICTED_CLASS_ROWS].add_metric([model, label], value)
    if w.class_ratio is not None:
        for label, value in zip(classes, w.class_ratio.tolist()):
            families[n.PREDICTED_CLASS_RATIO].add_metric([model, label], value)
    for name, stats in ((n.PRED1, w.pred1), (n.SPREAD12, w.spread12)):
        for stat, value in (stats or {}).items():
            families[name].add_metric([model, stat], value)
    for feature, stats in w.features.items():
        for stat, value in stats.items():
            families[n.FEATURE].add_metric([model, feature, stat], value)
    for feature, ratio in w.missing_ratio.items():
        families[n.FEATURE_MISSING_RATIO].add_metric([model, feature], ratio)
    for feature, ratios in w.value_ratios.items():
        for value, ratio in ratios.items():
            families[n.FEATURE_VALUE_RATIO].add_metric([model, feature, value], ratio)
    scores = w.scores
    if scores is not None:
        families[n.LABELED_ROWS].add_metric([model], scores.labeled_rows)
        families[n.ACCURACY].add_metric([model], scores.accuracy)
        families[n.F1_MACRO].add_metric([model], scores.f1_macro)
        for name, values in ((n.CLASS_ACCURACY, scores.class_accuracy),
                             (n.PRECISION, scores.precision),
                             (n.RECALL, scores.recall), (n.F1, scores.f1)):
            for label, value in zip(classes, values.tolist()):
                families[name].add_metric([model, label], value)
    else:
        families[n.LABELED_ROWS].add_metric([model], 0)
    driftmetrics.add_judgement(families, model, classes, w.judgement)


# The shared collector is kept on its registry, not in a global table keyed by registry:
# the collector holds monitors, which hold their registry, so a weak-keyed table would
# keep every registry (and its monitors) alive. On the registry, the cycle is collected.
_COLLECTOR_ATTRIBUTE = "_mlwatcher_collector"
_COLLECTORS_LOCK = threading.Lock()


def register_monitor(registry: CollectorRegistry, monitor: "Publisher") -> None:
    """Serve `monitor` from `registry`, registering the shared collector on first use."""
    with _COLLECTORS_LOCK:
        collector = getattr(registry, _COLLECTOR_ATTRIBUTE, None)
        if collector is None:
            collector = MonitorCollector()
            registry.register(collector)
            setattr(registry, _COLLECTOR_ATTRIBUTE, collector)
    collector.add(monitor)


def unregister_monitor(registry: CollectorRegistry, monitor: "Publisher") -> None:
    """Stop serving `monitor` from `registry`."""
    collector = getattr(registry, _COLLECTOR_ATTRIBUTE, None)
    if collector is not None:
        collector.remove(monitor)


# --- the monitors of a registry, for readers such as the landing page (landing.py) ---
def registered_monitors(registry: CollectorRegistry) -> List["Publisher"]:
    """The monitors served from `registry` now, by model name."""
    collector = getattr(registry, _COLLECTOR_ATTRIBUTE, None)
    if collector is None:
        return []
    with collector._lock:
        return [collector._monitors[name] for name in sorted(collector._monitors)]


__all__ += ["registered_monitors"]
