"""Metric names, label names and the fixed label values the exporter publishes.

Every name here is a public contract: dashboards, alert rules and the Anodot bridge
query them, and the README's metric reference lists each one.
"""

from __future__ import annotations

__all__ = [
    "PREFIX",
    "STATS",
    "REJECT_REASONS",
    "DROP_REASONS",
    "OTHER_VALUE",
    "PRED1_BUCKETS",
    "WINDOW_ROWS",
    "WINDOW_SAMPLED_ROWS",
    "WINDOW_END",
    "WINDOW_DURATION",
    "WINDOW_COMPUTE_DURATION",
    "PRED1",
    "SPREAD12",
    "PREDICTED_CLASS_ROWS",
    "PREDICTED_CLASS_RATIO",
    "FEATURE",
    "FEATURE_MISSING_RATIO",
    "FEATURE_VALUE_RATIO",
    "LABELED_ROWS",
    "ACCURACY",
    "CLASS_ACCURACY",
    "PRECISION",
    "RECALL",
    "F1",
    "F1_MACRO",
    "PREDICTIONS",
    "LABELED_PREDICTIONS",
    "CORRECT_PREDICTIONS",
    "REJECTED_ROWS",
    "DROPPED_ROWS",
    "PRED1_HISTOGRAM",
    "LAST_PREDICTION",
    "MODEL_INFO",
    "UNMATCHED_REASONS",
    "EXPIRED_REASONS",
    "LABEL_DELAY_BUCKETS",
    "LATE_LABELS_MATCHED",
    "LATE_LABELS_UNMATCHED",
    "LATE_LABELS_DUPLICATE",
    "LATE_LABELS_REJECTED",
    "LATE_LABEL_REJECT_REASONS",
    "PREDICTION_IDS_EXPIRED",
    "PREDICTION_IDS",
    "LATE_LABEL_DELAY",
    "FEATURE_DRIFT",
    "PREDICTION_DRIFT",
    "DRIFTED_FEATURES",
    "ESTIMATED_ACCURACY",
    "ESTIMATED_ACCURACY_STDERR",
    "ESTIMATED_F1",
    "ESTIMATED_F1_MACRO",
    "REFERENCE",
]

PREFIX = "mlwatcher_"

# Order matters only for readability of /metrics.
STATS = ("mean", "std", "min", "max", "range", "q25", "median", "q75", "iqr")

# Why a batch was rejected; every reason is pre-initialised to 0.
REJECT_REASONS = (
    "type",  # not array-like, or not numeric
    "shape",  # wrong number of dimensions, or no rows
    "n_classes",  # probability columns differ from the declared classes
    "n_features",  # feature columns differ from the first batch or feature_names
    "row_mismatch",  # proba, features and labels disagree on the row count
    "non_finite",  # NaN or infinity in probabilities
    "out_of_range",  # a probability outside [0, 1]
    "unknown_label",  # a label that is not a declared class
    "internal",  # a bug of ours: never raised into the caller, always counted
)

# Why the features or the labels of a batch were left out while its predictions were
# recorded, per part; every pair is pre-initialised to 0.
DROP_REASONS = {
    "features": (
        "type",  # not numeric, complex, or a column that cannot be converted
        "sparse",  # a scipy sparse matrix: too wide to describe per column
        "shape",  # not 2-D
        "n_features",  # other columns than the first batch or feature_names
        "row_mismatch",  # another row count than proba
    ),
    "labels": (
        "type",  # not array-like
        "shape",  # not (n_rows,), (n_rows, 1) or one-hot
        "row_mismatch",  # another row count than proba
        "unknown_label",  # a value that is not a class
    ),
    "ids": (
        "type",  # not a sequence of str or int ids (floats, bools, None, a bare string)
        "shape",  # not one id per row (a 2-D array)
        "row_mismatch",  # another row count than proba
    ),
}

# Categorical values beyond max_categories are folded into this one.
OTHER_VALUE = "__other__"

# Fixed buckets of the pred1 histogram: dense near 1, where confident models live.
PRED1_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)

# Late labels (see latelabels.py): why a label found no prediction, and why an id was
# forgotten before its label came; every reason is pre-initialised to 0.
UNMATCHED_REASONS = (
    "unknown",  # never recorded, or already forgotten
    "expired",  # recorded, but its prediction is older than id_ttl_seconds
)
EXPIRED_REASONS = (
    "ttl",  # older than id_ttl_seconds
    "max_ids",  # evicted, oldest first, to keep at most max_ids
    "replaced",  # the same id predicted again: the later prediction is the one kept
)

# Why a direct observe_labels call was refused (it raised); every reason is 0 at start.
LATE_LABEL_REJECT_REASONS = (
    "type",  # ids or labels of a type that cannot be used
    "shape",  # not one id (label) per row
    "row_mismatch",  # not as many labels as ids
    "unknown_label",  # a label that is not a class
)

# Fixed buckets of the label delay histogram, in seconds: a second to a week.
LABEL_DELAY_BUCKETS = (
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
    86400.0, 259200.0, 604800.0,
)

# Gauges describing the last completed window.
WINDOW_ROWS = PREFIX + "window_rows"
WINDOW_SAMPLED_ROWS = PREFIX + "window_sampled_rows"
WINDOW_END = PREFIX + "window_end_timestamp_seconds"
WINDOW_DURATION = PREFIX + "window_duration_seconds"
WINDOW_COMPUTE_DURATION = PREFIX + "window_compute_duration_seconds"
PRED1 = PREFIX + "pred1"
SPREAD12 = PREFIX + "spread12"
PREDICTED_CLASS_ROWS = PREFIX + "predicted_class_rows"
PREDICTED_CLASS_RATIO = PREFIX + "predicted_class_ratio"
FEATURE = PREFIX + "feature"
FEATURE_MISSING_RATIO = PREFIX + "feature_missing_ratio"
FEATURE_VALUE_RATIO = PREFIX + "feature_value_ratio"
LABELED_ROWS = PREFIX + "labeled_rows"
ACCURACY = PREFIX + "accuracy"
CLASS_ACCURACY = PREFIX + "class_accuracy"
PRECISION = PREFIX + "precision"
RECALL = PREFIX + "recall"
F1 = PREFIX + "f1"
F1_MACRO = PREFIX + "f1_macro"

# Counters and histograms over every row of the process's life (they aggregate across
# replicas, unlike the window gauges). Names are given without the _total suffix that
# prometheus_client appends to counters.
PREDICTIONS = PREFIX + "predictions"
LABELED_PREDICTIONS = PREFIX + "labeled_predictions"
CORRECT_PREDICTIONS = PREFIX + "correct_predictions"
REJECTED_ROWS = PREFIX + "rejected_rows"
DROPPED_ROWS = PREFIX + "dropped_rows"
PRED1_HISTOGRAM = PREFIX + "prediction_pred1"
LATE_LABELS_MATCHED = PREFIX + "late_labels_matched"
LATE_LABELS_UNMATCHED = PREFIX + "late_labels_unmatched"
LATE_LABELS_DUPLICATE = PREFIX + "late_labels_duplicate"
LATE_LABELS_REJECTED = PREFIX + "late_labels_rejected"
PREDICTION_IDS_EXPIRED = PREFIX + "prediction_ids_expired"
LATE_LABEL_DELAY = PREFIX + "late_label_delay_seconds"

# Process-level gauges.
LAST_PREDICTION = PREFIX + "last_prediction_timestamp_seconds"
PREDICTION_IDS = PREFIX + "prediction_ids"  # ids held, awaiting their labels
MODEL_INFO = PREFIX + "model"  # exposed as mlwatcher_model_info

# --- window history (history.py, historyfile.py) ---
HISTORY_WRITE_FAILURES = PREFIX + "history_write_failures"  # counter, by model and reason
__all__ += ["HISTORY_WRITE_FAILURES"]
# Drift against a reference profile and label-free estimates (docs/drift.md): gauges of
# the last completed window, and the profile's metadata.
FEATURE_DRIFT = PREFIX + "feature_drift"
PREDICTION_DRIFT = PREFIX + "prediction_drift"
DRIFTED_FEATURES = PREFIX + "drifted_features"
ESTIMATED_ACCURACY = PREFIX + "estimated_accuracy"
ESTIMATED_ACCURACY_STDERR = PREFIX + "estimated_accuracy_stderr"
ESTIMATED_F1 = PREFIX + "estimated_f1"
ESTIMATED_F1_MACRO = PREFIX + "estimated_f1_macro"
REFERENCE = PREFIX + "reference"  # exposed as mlwatcher_reference_info
# ---- Fleet counters (fleetcounts.py): from them the fleet's numbers follow exactly ----
__all__ += [
    "FLEET_PRED1_BUCKETS",
    "SPREAD12_BUCKETS",
    "SUM_SIGNS",
    "LABELED_BY_PREDICTED",
    "CONFUSION",
    "SPREAD12_HISTOGRAM",
    "FEATURE_VALUES",
    "FEATURE_MISSING_VALUES",
    "FEATURE_VALUE_SUM",
    "FEATURE_VALUE_SQUARES",
    "FEATURE_HISTOGRAM",
    "PUBLISHED_SERIES",
    "SERIES_LIMIT",
    "SERIES_DROPPED",
]

# Default pred1 edges: the historical ones plus 0.97, 0.98, 0.995 and 0.999, so that
# every old `le` still exists and means the same. Towards 1 each step roughly halves the
# error 1 - p (0.1, 0.05, 0.03, 0.02, 0.01, 0.005, 0.001): a healthy model puts most rows
# above 0.9, and its quantiles move there.
FLEET_PRED1_BUCKETS = (
    0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999, 1.0,
)
# Default spread12 edges: the margin of the top class can be anything in [0, 1]; the
# same log-like steps towards 1, and 0.01 / 0.05 for the near-ties of an unsure model.
SPREAD12_BUCKETS = (
    0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995,
    0.999, 1.0,
)
# A counter never decreases, so a sum of values that may be negative is two counters.
SUM_SIGNS = ("positive", "negative")

LABELED_BY_PREDICTED = PREFIX + "labeled_predictions_by_predicted_class"
CONFUSION = PREFIX + "confusion_matrix_rows"
SPREAD12_HISTOGRAM = PREFIX + "prediction_spread12"
FEATURE_VALUES = PREFIX + "feature_values"
FEATURE_MISSING_VALUES = PREFIX + "feature_missing_values"
FEATURE_VALUE_SUM = PREFIX + "feature_value_sum"
FEATURE_VALUE_SQUARES = PREFIX + "feature_value_squares"
FEATURE_HISTOGRAM = PREFIX + "feature_value"
# The cardinality budget (budget.py).
PUBLISHED_SERIES = PREFIX + "published_series"
SERIES_LIMIT = PREFIX + "series_limit"
SERIES_DROPPED = PREFIX + "series_dropped"
