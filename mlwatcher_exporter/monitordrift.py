"""Judging a monitor's windows against a reference profile (docs/drift.md).

:class:`ReferenceMixin` gives :class:`~.monitor.ModelMonitor` :meth:`fit_reference`,
:meth:`set_reference` and :attr:`reference`; the judging itself is :mod:`.judge`'s, the
profile :mod:`.reference`'s.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Sequence

from .judge import make_judge
from .monitorreads import ReadsMixin
from .ratelog import RateLimitedLogger
from .reference import ReferenceProfile, fit_reference
from .validation import check_proba

__all__ = ["ReferenceMixin"]

logger = logging.getLogger("mlwatcher_exporter")


class ReferenceMixin(ReadsMixin):
    """The reference of a monitor: fit it, set it, read it.

    A subclass sets ``model``, ``threshold``, ``categorical_features``,
    ``drift_thresholds`` and ``_log``, and what :class:`~.monitorreads.ReadsMixin` reads.
    """

    model: str
    threshold: float
    categorical_features: Sequence[Any]
    drift_thresholds: Optional[Mapping[str, Optional[float]]]
    _log: RateLimitedLogger

    def fit_reference(self, features: Any, proba: Any, labels: Any = None,
                      **options: Any) -> ReferenceProfile:
        """Build a reference profile from data the model is good on, and judge every
        later window against it (drift, label-free estimates; see docs/drift.md).

        `features`, `proba` and `labels` are as in :meth:`observe` (`features` may be
        None); `options` are those of :func:`~mlwatcher_exporter.reference.fit_reference`
        (``calibration``, ``n_bins``, ``n_points``). Returns the profile; ``save()`` it
        to load it at start-up with ``reference: path``.
        """
        classes = self.class_names
        if classes is None:
            classes = list(range(check_proba(proba, None).shape[1]))
        profile = fit_reference(
            proba, features, labels, classes=classes, feature_names=self.feature_names,
            categorical_features=self.categorical_features, threshold=self.threshold,
            model=self.model, **options)
        self.set_reference(profile)
        return profile

    def set_reference(self, reference: Any) -> None:
        """Judge every later window against `reference`: a profile or its file's path.

        Raises
        ------
        ReferenceError, ValueError
            An unreadable file or one of another version; classes not the monitor's.
        """
        schema = self._schema
        judge = make_judge(
            reference, self.drift_thresholds, lambda: list(schema.feature_names or ()),
            schema.value_names, lambda: self.class_labels, self._judge_failed)
        self._pipeline.judge = judge
        if judge is not None and not self._pipeline.use_reference_edges(judge.profile):
            logger.warning("mlwatcher: model %r: fleet histograms with reference edges keep "
                           "their edges: rows were counted before the reference was set",
                           self.model)

    @property
    def reference(self) -> Optional[ReferenceProfile]:
        """The reference profile windows are judged against, if any."""
        judge = self._pipeline.judge
        return None if judge is None else judge.profile

    def _judge_failed(self) -> None:
        self._log.warning("drift", f"mlwatcher: model {self.model!r}: drift against the "
                          "reference failed", exc_info=True)
