"""Metric families of the fleet counters (:mod:`.fleetcounts`), for the collector.

Every family here is a counter or a histogram over every row since start: summed over
replicas and taken over a range they give the fleet's precision, recall, F1,
accuracy, confidence quantiles and feature mean and standard deviation exactly (the
README's "Across replicas" gives each query).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Sequence, Tuple

import numpy as np

from . import naming as n

if TYPE_CHECKING:  # pragma: no cover
    from .counts import LifetimeCounts

__all__ = ["FLEET_FAMILIES", "add_fleet_families", "histogram_buckets"]

# name -> (type, HELP, extra labels besides `model`), as families.FAMILIES
FLEET_FAMILIES: Dict[str, tuple] = {
    n.LABELED_BY_PREDICTED: (
        "counter", "Rows observed with a label, by predicted class.", ("class",)),
    n.CONFUSION: (
        "counter", "Labeled rows by true and predicted class (optional, capped).",
        ("true_class", "predicted_class")),
    n.SPREAD12_HISTOGRAM: (
        "histogram", "Top-1 minus top-2 probability of every row since start.", ()),
    n.FEATURE_VALUES: (
        "counter", "Finite values of each continuous feature, every row since start.",
        ("feature",)),
    n.FEATURE_MISSING_VALUES: (
        "counter", "NaN or infinite values of each continuous feature, every row since start.",
        ("feature",)),
    n.FEATURE_VALUE_SUM: (
        "counter", "Sum of the positive values (sign=positive) and of the absolute negative "
        "values (sign=negative) of each continuous feature.", ("feature", "sign")),
    n.FEATURE_VALUE_SQUARES: (
        "counter", "Sum of the squared finite values of each continuous feature.",
        ("feature",)),
    n.FEATURE_HISTOGRAM: (
        "histogram", "Finite values of the continuous features given histogram edges.",
        ("feature",)),
}


def histogram_buckets(edges: Sequence[float], counts: np.ndarray) -> List[Tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs from per-bucket counts (last: above the top)."""
    cumulative = counts.cumsum().tolist()
    buckets = [(f"{edge:g}", value) for edge, value in zip(edges, cumulative)]
    buckets.append(("+Inf", cumulative[-1]))
    return buckets


def add_fleet_families(families: Dict[str, Any], model: str, classes: List[str],
                       counts: "LifetimeCounts") -> None:
    """Add a monitor's fleet counters to the scrape's `families`."""
    for label, value in zip(classes, counts.labeled_by_predicted.tolist()):
        families[n.LABELED_BY_PREDICTED].add_metric([model, label], value)
    if counts.confusion.size:
        cells = counts.confusion.tolist()
        size = len(classes)
        for true, true_label in enumerate(classes):
            for predicted, predicted_label in enumerate(classes):
                families[n.CONFUSION].add_metric(
                    [model, true_label, predicted_label], cells[true * size + predicted])
    layout = counts.layout
    families[n.SPREAD12_HISTOGRAM].add_metric(
        [model], histogram_buckets(layout.spread12_buckets, counts.spread12_buckets),
        sum_value=counts.spread12_sum)
    columns = counts.feature_columns
    if columns is None:
        return
    values = counts.feature_values.tolist()
    missing = counts.feature_missing.tolist()
    positive = counts.feature_positive_sum.tolist()
    negative = counts.feature_negative_sum.tolist()
    squares = counts.feature_squares.tolist()
    for i, name in enumerate(columns.names):
        families[n.FEATURE_VALUES].add_metric([model, name], values[i])
        families[n.FEATURE_MISSING_VALUES].add_metric([model, name], missing[i])
        families[n.FEATURE_VALUE_SUM].add_metric([model, name, "positive"], positive[i])
        families[n.FEATURE_VALUE_SUM].add_metric([model, name, "negative"], negative[i])
        families[n.FEATURE_VALUE_SQUARES].add_metric([model, name], squares[i])
    for position, edges, offset in columns.histograms:
        bucket_counts = counts.feature_buckets[offset:offset + edges.size + 1]
        families[n.FEATURE_HISTOGRAM].add_metric(
            [model, columns.names[position]], histogram_buckets(edges.tolist(), bucket_counts),
            sum_value=positive[position] - negative[position])
