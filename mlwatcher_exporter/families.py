"""The catalogue of published metric families: each one's type, HELP and labels.

:data:`FAMILIES` holds the core's families and merges those of the reference and drift
(:mod:`.driftmetrics`), the fleet counters (:mod:`.fleetfamilies`) and the series budget
(:mod:`.budget`); :mod:`.collector` builds a scrape's families from it, the README's
metric reference and the dashboards are checked against it.
"""

from __future__ import annotations

from typing import Any, Dict

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)

from . import driftmetrics
from . import naming as n
from .budget import BUDGET_FAMILIES
from .fleetfamilies import FLEET_FAMILIES

__all__ = ["FAMILIES", "WINDOW_FAMILIES", "Families", "new_family"]

_WINDOW = "in the last completed window (see mlwatcher_window_duration_seconds)"
_SAMPLE = "over the window's sample (see mlwatcher_window_sampled_rows)"

# name -> (type, HELP, extra labels besides `model`)
FAMILIES: Dict[str, tuple] = {
    n.WINDOW_ROWS: ("gauge", f"Rows observed {_WINDOW}, before sampling.", ()),
    n.WINDOW_SAMPLED_ROWS: ("gauge", "Rows in the sample of the last completed window.", ()),
    n.WINDOW_END: ("gauge", "Unix time at which the last completed window ended.", ()),
    n.WINDOW_DURATION: ("gauge", "Length of the last completed window in seconds.", ()),
    n.WINDOW_COMPUTE_DURATION: (
        "gauge", "Seconds spent computing the statistics of the last completed window.", ()),
    n.PRED1: ("gauge", f"Statistics of the top class probability per row {_SAMPLE}.", ("stat",)),
    n.SPREAD12: (
        "gauge", f"Statistics of top-1 minus top-2 probability per row {_SAMPLE}.", ("stat",)),
    n.PREDICTED_CLASS_ROWS: ("gauge", f"Rows predicted as each class {_WINDOW}.", ("class",)),
    n.PREDICTED_CLASS_RATIO: (
        "gauge", f"Share (0-1) of rows predicted as each class {_WINDOW}.", ("class",)),
    n.FEATURE: (
        "gauge", f"Statistics of each continuous feature {_SAMPLE}, NaN ignored.",
        ("feature", "stat")),
    n.FEATURE_MISSING_RATIO: ("gauge", f"Share (0-1) of NaN values per feature {_SAMPLE}.",
                              ("feature",)),
    n.FEATURE_VALUE_RATIO: (
        "gauge", f"Share (0-1) of each value of a categorical feature {_SAMPLE}.",
        ("feature", "value")),
    n.LABELED_ROWS: ("gauge", "Rows of the last completed window's sample that had a label.", ()),
    n.ACCURACY: ("gauge", f"Share of labeled rows whose predicted class is the label {_SAMPLE}.",
                 ()),
    n.CLASS_ACCURACY: ("gauge", f"One-vs-rest accuracy (TP+TN)/rows per class {_SAMPLE}.",
                       ("class",)),
    n.PRECISION: ("gauge", f"Precision per class {_SAMPLE}; 0 where undefined.", ("class",)),
    n.RECALL: ("gauge", f"Recall per class {_SAMPLE}; 0 where undefined.", ("class",)),
    n.F1: ("gauge", f"F1 score per class {_SAMPLE}; 0 where undefined.", ("class",)),
    n.F1_MACRO: ("gauge", f"Unweighted mean of the per-class F1 scores {_SAMPLE}.", ()),
    n.PREDICTIONS: ("counter", "Rows predicted as each class, every row since start.",
                    ("class",)),
    n.LABELED_PREDICTIONS: ("counter", "Rows observed with a label, by true class.", ("class",)),
    n.CORRECT_PREDICTIONS: (
        "counter", "Labeled rows whose predicted class is the label, by true class.", ("class",)),
    n.REJECTED_ROWS: ("counter", "Rows of batches rejected by validation, by reason.",
                      ("reason",)),
    n.DROPPED_ROWS: (
        "counter", "Rows whose features or labels were left out while their predictions "
        "were recorded, by part and reason.", ("part", "reason")),
    n.PRED1_HISTOGRAM: ("histogram", "Top class probability of every row since start.", ()),
    n.LAST_PREDICTION: ("gauge", "Unix time of the last observed batch.", ()),
    n.LATE_LABELS_MATCHED: (
        "counter", "Labels joined by id to their prediction (observe_labels).", ()),
    n.LATE_LABELS_UNMATCHED: (
        "counter", "Labels whose id has no prediction held: unknown (never recorded or "
        "forgotten) or expired (older than the id ttl).", ("reason",)),
    n.LATE_LABELS_DUPLICATE: (
        "counter", "Labels for a prediction that already had one (the first is kept).", ()),
    n.LATE_LABELS_REJECTED: (
        "counter", "Labels of observe_labels calls refused with an error, by reason.",
        ("reason",)),
    n.PREDICTION_IDS_EXPIRED: (
        "counter", "Prediction ids forgotten before their label came, by reason.",
        ("reason",)),
    n.PREDICTION_IDS: ("gauge", "Prediction ids held, awaiting their labels.", ()),
    n.LATE_LABEL_DELAY: (
        "histogram", "Seconds from a prediction to its joined label.", ()),
    n.MODEL_INFO: ("info", "Configuration of a monitored model; always 1.", ()),
}
FAMILIES.update(driftmetrics.FAMILIES)  # reference, drift and estimates (driftmetrics.py)
FAMILIES.update(FLEET_FAMILIES)  # the fleet counters (fleetfamilies.py)
FAMILIES.update(BUDGET_FAMILIES)  # the series budget (budget.py)

# Families being filled during one scrape; Any because their add_metric signatures differ.
Families = Dict[str, Any]

# The families that describe the last completed window: identical between two scrapes
# of one window, so built and rendered once per window.
WINDOW_FAMILIES = (
    n.WINDOW_ROWS, n.WINDOW_SAMPLED_ROWS, n.WINDOW_END, n.WINDOW_DURATION,
    n.WINDOW_COMPUTE_DURATION, n.PRED1, n.SPREAD12, n.PREDICTED_CLASS_ROWS,
    n.PREDICTED_CLASS_RATIO, n.FEATURE, n.FEATURE_MISSING_RATIO, n.FEATURE_VALUE_RATIO,
    n.LABELED_ROWS, n.ACCURACY, n.CLASS_ACCURACY, n.PRECISION, n.RECALL, n.F1, n.F1_MACRO,
) + driftmetrics.WINDOW_FAMILIES


def new_family(name: str) -> Any:
    """An empty family of `name`, of its type, HELP and labels (``model`` first)."""
    kind, documentation, extra = FAMILIES[name]
    labels = ["model", *extra]
    if kind == "gauge":
        return GaugeMetricFamily(name, documentation, labels=labels)
    if kind == "counter":
        return CounterMetricFamily(name, documentation, labels=labels)
    if kind == "histogram":
        return HistogramMetricFamily(name, documentation, labels=labels)
    return InfoMetricFamily(name, documentation, labels=labels)
