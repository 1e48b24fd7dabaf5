"""Metric families of the reference profile, drift and label-free estimates.

:mod:`.families` merges :data:`FAMILIES` into its catalogue; :mod:`.collector` calls
:func:`add_judgement` with each window and :func:`add_reference` with each monitor's
snapshot; the families are built like every other (fresh at each scrape, the window's
rendered once per window).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from . import naming as n

__all__ = ["FAMILIES", "WINDOW_FAMILIES", "REFERENCE_LABELS", "add_judgement",
           "add_reference"]

_SAMPLE = "the last completed window's sample"

#: Labels of mlwatcher_reference_info besides `model`.
REFERENCE_LABELS = ("version", "rows", "labeled_rows", "features", "calibration", "created")

# name -> (type, HELP, extra labels besides `model`), as families.FAMILIES
FAMILIES: Dict[str, tuple] = {
    n.FEATURE_DRIFT: (
        "gauge", f"Drift of each feature of {_SAMPLE} against the reference profile: psi, "
        "js, ks, wasserstein (/ reference iqr), chi2_pvalue (see docs/drift.md).",
        ("feature", "method")),
    n.PREDICTION_DRIFT: (
        "gauge", f"Drift of the predictions of {_SAMPLE} against the reference profile: "
        "quantity class (predicted class distribution), pred1 or spread12, by method.",
        ("quantity", "method")),
    n.DRIFTED_FEATURES: (
        "gauge", f"Features of {_SAMPLE} beyond the drift threshold of at least one method.",
        ()),
    n.ESTIMATED_ACCURACY: (
        "gauge", f"Accuracy of {_SAMPLE} estimated without labels (CBPE: probabilities "
        "calibrated on the reference labels).", ()),
    n.ESTIMATED_ACCURACY_STDERR: (
        "gauge", "Standard deviation of the realised accuracy around "
        "mlwatcher_estimated_accuracy (sampling error of the window's sample).", ()),
    n.ESTIMATED_F1: (
        "gauge", f"One-vs-rest F1 per class of {_SAMPLE} estimated without labels (CBPE).",
        ("class",)),
    n.ESTIMATED_F1_MACRO: (
        "gauge", f"Unweighted mean of the estimated F1 per class of {_SAMPLE} (CBPE).", ()),
    n.REFERENCE: ("info", "The reference profile loaded for drift and estimation; always 1.",
                  ()),
}

#: The families describing the last completed window.
WINDOW_FAMILIES = (
    n.FEATURE_DRIFT, n.PREDICTION_DRIFT, n.DRIFTED_FEATURES, n.ESTIMATED_ACCURACY,
    n.ESTIMATED_ACCURACY_STDERR, n.ESTIMATED_F1, n.ESTIMATED_F1_MACRO,
)


def add_judgement(families: Dict[str, Any], model: str, classes: List[str],
                  judgement: Optional[Any]) -> None:
    """Add a window's judgement (judge.WindowJudgement), if it has one."""
    if judgement is None:
        return
    for feature, methods in judgement.feature_drift.items():
        for method, value in methods.items():
            families[n.FEATURE_DRIFT].add_metric([model, feature, method], value)
    for quantity, methods in judgement.prediction_drift.items():
        for method, value in methods.items():
            families[n.PREDICTION_DRIFT].add_metric([model, quantity, method], value)
    if judgement.feature_drift:
        families[n.DRIFTED_FEATURES].add_metric([model], judgement.drifted_features)
    result = judgement.estimate
    if result is not None:
        families[n.ESTIMATED_ACCURACY].add_metric([model], result.accuracy)
        families[n.ESTIMATED_ACCURACY_STDERR].add_metric([model], result.accuracy_stderr)
        families[n.ESTIMATED_F1_MACRO].add_metric([model], result.f1_macro)
        for label, value in zip(classes, result.f1.tolist()):
            families[n.ESTIMATED_F1].add_metric([model, label], value)


def add_reference(families: Dict[str, Any], model: str,
                  info: Optional[Mapping[str, str]]) -> None:
    """Add ``mlwatcher_reference_info`` of a monitor with a profile."""
    if info is not None:
        families[n.REFERENCE].add_metric([model], dict(info))
