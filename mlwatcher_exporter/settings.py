"""The monitor's settings: frozen dataclasses of its options and their upper bounds.

:class:`MonitorSettings` holds the checked keyword arguments of
:class:`~mlwatcher_exporter.ModelMonitor` (with :class:`HttpSettings` and
:class:`HistorySettings`, the ``http:`` and ``history:`` sections of a file), with their
defaults; the values that size memory have upper bounds (:data:`LIMITS`), and
:func:`memory_estimate` says what the window buffers take. The checks that build them are
in :mod:`.config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from .fleetcounts import FleetLayout

__all__ = [
    "MonitorSettings",
    "HttpSettings",
    "HistorySettings",
    "DEFAULT_PORT",
    "LIMITS",
    "MAX_CLASSES",
    "MAX_FEATURES",
    "MAX_RESERVOIR_SIZE",
    "MAX_CATEGORIES",
    "MAX_RESERVOIR_CELLS",
    "MAX_IDS",
    "memory_estimate",
]

# Outside 9100-9999, which Prometheus' list of default exporter ports has filled up.
DEFAULT_PORT = 10150

#: Most classes (predict_proba columns); each is a ``class`` label value of several series.
MAX_CLASSES = 1000
#: Most named features; each is a ``feature`` label value of several series.
MAX_FEATURES = 10_000
#: Most rows sampled per window.
MAX_RESERVOIR_SIZE = 1_000_000
#: Most values published per categorical feature.
MAX_CATEGORIES = 1000
#: Most numbers in one window buffer, ``reservoir_size * (n_classes + n_features + 3)``
#: when both are known: 50 million float64 are 400 MB, and a monitor keeps up to three.
MAX_RESERVOIR_CELLS = 50_000_000
#: Most prediction ids kept for late labels: about 210 to 235 bytes each (see
#: docs/benchmarks.md), so 10 million are about 2.2 GB.
MAX_IDS = 10_000_000

#: Every upper bound by option name.
LIMITS: Mapping[str, int] = {
    "n_classes": MAX_CLASSES,
    "class_names": MAX_CLASSES,
    "feature_names": MAX_FEATURES,
    "categorical_features": MAX_FEATURES,
    "reservoir_size": MAX_RESERVOIR_SIZE,
    "max_categories": MAX_CATEGORIES,
    "max_ids": MAX_IDS,
}


@dataclass(frozen=True)
class HttpSettings:
    """Where the /metrics endpoint listens."""

    addr: str = "127.0.0.1"
    port: int = DEFAULT_PORT


# --- window history (history.py): the ``history:`` section ---
@dataclass(frozen=True)
class HistorySettings:
    """Where closed windows are kept: the last `keep` in memory, and, with a
    `directory`, every one in rotating JSON-lines files (docs/history.md)."""

    directory: Optional[str] = None
    max_bytes: int = 10 << 20
    max_files: int = 5
    keep: int = 60
# --- end of window history ---


@dataclass(frozen=True)
class MonitorSettings:
    """Checked keyword arguments of ModelMonitor, with their defaults."""

    model: str = "default"
    n_classes: Optional[int] = None
    class_names: Optional[Tuple[Any, ...]] = None
    window_seconds: float = 60.0
    reservoir_size: int = 10_000
    threshold: float = 0.5
    feature_names: Optional[Tuple[str, ...]] = None
    categorical_features: Tuple[Union[str, int], ...] = ()
    max_categories: int = 10
    random_state: Optional[int] = None
    max_ids: int = 100_000
    id_ttl_seconds: float = 86_400.0
    # Drift and label-free estimation (docs/drift.md): a profile file, method thresholds.
    reference: Optional[Any] = None
    drift_thresholds: Optional[Dict[str, float]] = None
    http: HttpSettings = field(default_factory=HttpSettings)
    history: HistorySettings = field(default_factory=HistorySettings)
    fleet: FleetLayout = field(default_factory=FleetLayout)  # fleetconfig.py


def memory_estimate(settings: MonitorSettings, n_features: Optional[int] = None) -> Optional[int]:
    """Bytes of the window buffers (three at most), or None when the sizes are unknown.

    ``reservoir_size * (n_classes + n_features + 3) * 8`` bytes per buffer; `n_features`
    defaults to the length of ``feature_names``.

    Parameters
    ----------
    settings : MonitorSettings
    n_features : int, optional
        Feature columns, when ``feature_names`` does not say.

    Returns
    -------
    int or None
        Bytes, or None without a number of classes (``n_classes`` or ``class_names``) and
        of features.

    Examples
    --------
    >>> memory_estimate(MonitorSettings(n_classes=10, feature_names=("a", "b")))
    3600000
    """
    n_classes = settings.n_classes
    if settings.class_names is not None:
        n_classes = len(settings.class_names)
    if n_features is None and settings.feature_names is not None:
        n_features = len(settings.feature_names)
    if n_classes is None or n_features is None:
        return None
    return 3 * settings.reservoir_size * (n_classes + n_features + 3) * 8
