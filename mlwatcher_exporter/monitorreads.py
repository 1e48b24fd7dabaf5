"""The read side of a monitor: what it knows of the model and what it has counted.

:class:`ReadsMixin` gives :class:`~.monitor.ModelMonitor` its views of the learned input
schema (classes, features), of the published window and of the counters. Every view that
counts reads after the staged batches are processed, so counters are exact when read.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from .collector import MonitorSnapshot
from .counts import RejectionCounts
from .pipeline import Pipeline
from .schema import InputSchema
from .staging import Staging
from .window import WindowStats

__all__ = ["ReadsMixin"]


class ReadsMixin:
    """Views of a monitor's schema, published window and counters.

    A subclass sets ``_schema``, ``_staging``, ``_pipeline`` and ``_refusals`` and
    defines :meth:`flush`, which processes every staged batch.
    """

    _schema: InputSchema
    _staging: Staging
    _pipeline: Pipeline
    _refusals: RejectionCounts

    flush: Callable[[], None]

    @property
    def n_classes(self) -> Optional[int]:
        """Probability columns, once known."""
        return self._schema.n_classes

    @property
    def class_names(self) -> Optional[List[Any]]:
        """Class values in column order, once known."""
        classes = self._schema.classes
        return None if classes is None else classes.classes.tolist()

    @property
    def class_labels(self) -> List[str]:
        """The ``class`` label values, in predict_proba column order."""
        return [str(value) for value in self.class_names or ()]

    @property
    def feature_names(self) -> Optional[List[str]]:
        """Feature names, declared or learned from the first batch with features."""
        return self._schema.feature_names

    @property
    def last_window(self) -> Optional[WindowStats]:
        """Statistics of the last completed window, or None before the first."""
        return self._pipeline.published

    def snapshot(self) -> MonitorSnapshot:
        """The published window and copies of the counters, for one scrape; every
        staged row is counted first."""
        return self._pipeline.snapshot(self.class_labels)

    def rejected_rows(self) -> Dict[str, int]:
        """Rows of rejected batches by reason since the start (staged ones checked)."""
        self.flush()
        return self._refusals.rejected()

    def dropped_rows(self) -> Dict[Tuple[str, str], int]:
        """Rows whose features or labels were left out, by (part, reason)."""
        self.flush()
        return self._refusals.dropped()

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays the monitor holds: stages and window buffers."""
        return self._staging.nbytes + self._pipeline.nbytes
