"""Lifetime counters from which the fleet's numbers follow exactly in PromQL.

Window gauges describe one process's sample; these count every row, so summed over
replicas (``sum without (instance)``) and over any range (``increase``) they give:

* precision, recall, F1 and accuracy when only some rows are labeled: labeled rows by
  true class and by predicted class, and the correct ones (:meth:`add_labels`), and an
  optional confusion matrix capped at ``confusion_max_classes`` classes;
* confidence quantiles where models live: the pred1 and spread12 histograms, with edges
  that get finer towards 1 (configurable);
* the mean and standard deviation of every continuous feature: count, sums of the
  positive and negative values (a counter never decreases), sum of squares, missing
  values; and optional histograms of chosen features.

The state lives in :class:`~.counts.LifetimeCounts` as numpy arrays and floats, so that
copies, and merges of several processes, treat it generically; :class:`FleetLayout`
(the configuration) and :class:`FeatureColumns` (learned once) are immutable and shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from . import naming
from .kernel import add_buckets, add_feature_sums, add_spread_buckets, counted_values
from .window import top_two

if TYPE_CHECKING:  # pragma: no cover
    from .counts import LifetimeCounts
    from .schema import InputSchema

__all__ = [
    "FleetLayout",
    "FeatureColumns",
    "DEFAULT_CONFUSION_MAX_CLASSES",
    "REFERENCE_EDGES",
    "DEFAULT_MAX_SERIES",
    "learn_columns",
    "prime_columns",
    "spread12_of",
    "add_inputs",
]

#: Series per model at most, by default (:mod:`.budget`): one model of 10 classes and 200
#: continuous features stays under it (at the default statistics it would publish 3,225:
#: the budget leaves out the window statistics of its last features, and says so).
DEFAULT_MAX_SERIES = 2500

#: In place of a feature's histogram edges: take them from the reference profile.
REFERENCE_EDGES = "reference"
#: Significant digits of edges taken from a reference profile (short ``le`` labels).
REFERENCE_EDGE_DIGITS = 6

#: Classes up to which an enabled confusion matrix is kept (n_classes ** 2 series).
DEFAULT_CONFUSION_MAX_CLASSES = 20


@dataclass(frozen=True)
class FleetLayout:
    """What the fleet counters hold: histogram edges, the confusion matrix, features.

    Parameters
    ----------
    pred1_buckets, spread12_buckets : tuple of float
        Increasing upper bounds (``le``) in [0, 1] of the pred1 and spread12 histograms.
    confusion_matrix : bool
        Count labeled rows by (true class, predicted class).
    confusion_max_classes : int
        With more classes the matrix is not kept (and the budget says so).
    feature_buckets : mapping of str to tuple of float or ``"reference"``
        Histogram edges of the continuous features to describe by a histogram;
        ``"reference"``: the reference profile's (:meth:`with_reference_edges`), no
        histogram until a profile gives them.
    max_series : int
        Series per model that the collector publishes at most (:mod:`.budget`).
    feature_statistics : tuple of str
        The window statistics (``stat`` of ``mlwatcher_feature``) published per
        continuous feature: some of :data:`~.naming.STATS` (all by default).
    features_allow, features_deny : tuple of str
        Shell-style patterns (``fnmatch``, case-sensitive) of the features whose series
        are published: those matching an allow pattern and no deny pattern. The others
        are still validated and described (drift is counted in
        ``mlwatcher_drifted_features``), only not published.
    """

    pred1_buckets: Tuple[float, ...] = naming.FLEET_PRED1_BUCKETS
    spread12_buckets: Tuple[float, ...] = naming.SPREAD12_BUCKETS
    confusion_matrix: bool = False
    confusion_max_classes: int = DEFAULT_CONFUSION_MAX_CLASSES
    feature_buckets: Mapping[str, Union[Tuple[float, ...], str]] = field(default_factory=dict)
    max_series: int = DEFAULT_MAX_SERIES
    feature_statistics: Tuple[str, ...] = naming.STATS
    features_allow: Tuple[str, ...] = ("*",)
    features_deny: Tuple[str, ...] = ()
    pred1_edges: np.ndarray = field(init=False, repr=False, compare=False)
    spread12_edges: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pred1_edges", np.asarray(self.pred1_buckets, dtype=float))
        object.__setattr__(self, "spread12_edges",
                           np.asarray(self.spread12_buckets, dtype=float))

    @property
    def selects(self) -> bool:
        """Whether some features or statistics are left out by choice."""
        return (self.features_allow != ("*",) or bool(self.features_deny)
                or set(self.feature_statistics) != set(naming.STATS))

    def publishes(self, feature: str) -> bool:
        """Whether the series of `feature` are published (allow and deny patterns)."""
        return _published(self.features_allow, self.features_deny, feature)

    def with_reference_edges(self, profile: Any) -> "FleetLayout":
        """This layout with the ``"reference"`` edges taken from `profile` (a
        :class:`~.reference.ReferenceProfile`) where it has a continuous feature of that
        name with at least one bin edge; the others stay as they are."""
        buckets = dict(self.feature_buckets)
        for name, edges in self.feature_buckets.items():
            feature = profile.features.get(name) if edges == REFERENCE_EDGES else None
            found = getattr(feature, "edges", None)
            if found is not None and np.asarray(found).size:
                rounded = [float(f"{edge:.{REFERENCE_EDGE_DIGITS}g}") for edge in found]
                buckets[name] = tuple(sorted(set(rounded)))
        return replace(self, feature_buckets=buckets)

    def confusion_kept(self, n_classes: int) -> bool:
        """Whether the confusion matrix is counted for `n_classes` classes."""
        return self.confusion_matrix and n_classes <= self.confusion_max_classes


@dataclass(frozen=True)
class FeatureColumns:
    """The continuous features, learned from the schema once.

    ``columns`` are their positions among the feature columns, ``names`` their names;
    ``histograms`` lists (position among ``names``, edges, offset in the flat bucket
    array) per feature with histogram edges.
    """

    names: Tuple[str, ...]
    columns: np.ndarray
    all_columns: bool
    histograms: Tuple[Tuple[int, np.ndarray, int], ...]
    missing_histograms: Tuple[str, ...] = ()
    #: From the declared names before any data (replaced, zeros and all, when the first
    #: batch with features teaches the schema).
    provisional: bool = False

    @property
    def n_buckets(self) -> int:
        """Cells of the flat histogram array (edges + 1 per histogram)."""
        return sum(edges.size + 1 for _, edges, _ in self.histograms)


def learn_columns(schema: "InputSchema", layout: FleetLayout) -> Optional[FeatureColumns]:
    """The continuous features of `schema`, once it knows its features."""
    if schema.n_features is None or schema.categorical is None:
        return None
    names = schema.feature_names or [f"f{i}" for i in range(schema.n_features)]
    return _columns(names, np.asarray(schema.categorical, dtype=bool), layout, False)


def prime_columns(counts: "LifetimeCounts", schema: "InputSchema") -> None:
    """Size the feature counters from the declared feature names, before any data, so
    that they are published at 0 and a range's first increase is not lost."""
    names = schema.feature_names
    if counts.feature_columns is not None or names is None:
        return
    mask = np.zeros(len(names), dtype=bool)
    for ref in schema.categorical_features:
        if isinstance(ref, str) and ref in names:
            mask[names.index(ref)] = True
        elif isinstance(ref, int) and 0 <= ref < len(names):
            mask[ref] = True
    _size_features(counts, _columns(names, mask, counts.layout, True))


def _columns(names: "list[str]", categorical: np.ndarray, layout: FleetLayout,
             provisional: bool) -> FeatureColumns:
    columns = np.flatnonzero(~categorical)
    kept = tuple(str(names[c]) for c in columns.tolist())
    position = {name: i for i, name in enumerate(kept)}
    histograms = []
    offset = 0
    for name, edges in layout.feature_buckets.items():
        if isinstance(edges, str):  # "reference" without a profile: no histogram yet
            continue
        if name in position:
            array = np.asarray(edges, dtype=float)
            histograms.append((position[name], array, offset))
            offset += array.size + 1
    missing = tuple(name for name in layout.feature_buckets if name not in position)
    return FeatureColumns(kept, columns, columns.size == len(names),
                          tuple(histograms), missing, provisional)


@lru_cache(maxsize=1 << 16)  # a scrape asks once per feature and family
def _published(allow: Tuple[str, ...], deny: Tuple[str, ...], feature: str) -> bool:
    return (any(fnmatchcase(feature, p) for p in allow)
            and not any(fnmatchcase(feature, p) for p in deny))


def spread12_of(proba: np.ndarray, pred1: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per row (``|p1 - p0|`` with two classes)."""
    if proba.shape[1] == 2:
        return np.abs(proba[:, 1] - proba[:, 0])
    return top_two(proba)[1]


def _buckets(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Rows per ``le`` bucket (non-cumulative; the last is above the top edge)."""
    return np.bincount(np.searchsorted(edges, values, side="left"), minlength=edges.size + 1)


def add_inputs(
    counts: "LifetimeCounts",
    proba: np.ndarray,
    pred1: np.ndarray,
    features: Optional[np.ndarray],
    has_features: Optional[np.ndarray],
    schema: "InputSchema",
    pred2: Optional[np.ndarray] = None,
) -> None:
    """Count the spread12 and the continuous features of a batch of accepted rows.

    `pred2`, the second probability of every row when the caller has it (the compiled
    :func:`.kernel.summarize`), saves finding it again: spread12 is ``pred1 - pred2``
    (with two classes ``|p1 - p0|``, the same number)."""
    layout = counts.layout
    if pred2 is not None and proba.shape[1] >= 2:
        counts.spread12_sum += add_spread_buckets(
            layout.spread12_edges, pred1, pred2, counts.spread12_buckets)
    else:
        spread = spread12_of(proba, pred1)
        add_buckets(layout.spread12_edges, spread, counts.spread12_buckets)
        counts.spread12_sum += float(spread.sum())
    if features is None:
        return
    if counts.feature_columns is None or counts.feature_columns.provisional:
        columns = learn_columns(schema, layout)
        if columns is None:
            return
        _size_features(counts, columns)
    columns = counts.feature_columns
    assert columns is not None
    if not columns.names:
        return
    # One pass over the rows (kernel.py), without copies of the table.
    add_feature_sums(
        features, None if columns.all_columns else columns.columns, has_features,
        counts.feature_values, counts.feature_missing, counts.feature_positive_sum,
        counts.feature_negative_sum, counts.feature_squares,
    )
    if not columns.histograms:
        return
    table = features if has_features is None else features[has_features]
    if not table.shape[0]:
        return
    if not columns.all_columns:
        table = table[:, columns.columns]
    finite = counted_values(table)  # as add_feature_sums counts them
    for position, edges, offset in columns.histograms:
        column = table[:, position]
        counts.feature_buckets[offset:offset + edges.size + 1] += _buckets(
            edges, column[finite[:, position]])


def _size_features(counts: "LifetimeCounts", columns: FeatureColumns) -> None:
    size = len(columns.names)
    counts.feature_columns = columns
    counts.feature_values = np.zeros(size, dtype=np.int64)
    counts.feature_missing = np.zeros(size, dtype=np.int64)
    counts.feature_positive_sum = np.zeros(size)
    counts.feature_negative_sum = np.zeros(size)
    counts.feature_squares = np.zeros(size)
    counts.feature_buckets = np.zeros(columns.n_buckets, dtype=np.int64)


def feature_sums(counts: "LifetimeCounts") -> Dict[str, np.ndarray]:
    """Per continuous feature: values, sum, sum of squares (for tests and docs)."""
    return {"values": counts.feature_values,
            "sum": counts.feature_positive_sum - counts.feature_negative_sum,
            "squares": counts.feature_squares}


def confusion_cells(predicted: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Labeled rows per (true, predicted) cell, flat, true-major."""
    return np.bincount(labels * n_classes + predicted, minlength=n_classes * n_classes)
