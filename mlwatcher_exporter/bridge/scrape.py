"""Scrape ``/metrics`` pages of exporters in other processes, as a collector for the bridge."""

from __future__ import annotations

import logging
import urllib.request
from typing import Callable, Iterator, List, Optional, Sequence, Union

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from .client import redact
from .config import Target
from .metrics import BridgeMetrics
from .options import check_positive

__all__ = ["ScrapeSource", "fetch_text"]

logger = logging.getLogger(__name__)

_ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"


def fetch_text(url: str, timeout: float) -> str:
    """GET ``url`` and return its body as text (raises ``OSError`` on failure)."""
    request = urllib.request.Request(url, headers={"Accept": _ACCEPT})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        charset = response.headers.get_content_charset() or "utf-8"
        return response.read().decode(charset, "replace")


class ScrapeSource:
    """A collector whose ``collect()`` scrapes every target and yields its families.

    A target that fails (unreachable, not 200, unparsable) is skipped for this round,
    logged and counted in ``mlwatcher_anodot_scrape_failures_total{target}``; the others
    are still forwarded. The target's properties are added to each sample's labels
    (a label of the same name wins).

    Parameters
    ----------
    targets : sequence of Target or str
        ``/metrics`` addresses.
    timeout_seconds : float, default=10.0
        Timeout of one scrape.
    metrics : BridgeMetrics or None, default=None
        Where to count failures.
    _fetch : callable, default=fetch_text
        ``_fetch(url, timeout) -> str`` (test seam).
    """

    def __init__(
        self,
        targets: Sequence[Union[Target, str]],
        timeout_seconds: float = 10.0,
        metrics: Optional[BridgeMetrics] = None,
        _fetch: Callable[[str, float], str] = fetch_text,
    ) -> None:
        if isinstance(targets, (str, Target)):
            raise TypeError(f"targets == {targets!r}, must be a list of targets.")
        self.targets: List[Target] = [
            t if isinstance(t, Target) else Target(str(t)) for t in targets
        ]
        if not self.targets:
            raise ValueError("targets == [], must name at least one /metrics address.")
        self.timeout_seconds = check_positive("timeout_seconds", timeout_seconds)
        self.metrics: Optional[BridgeMetrics] = None
        self._fetch = _fetch
        if metrics is not None:
            self.use_metrics(metrics)

    def use_metrics(self, metrics: BridgeMetrics) -> None:
        """Count scrape failures in ``metrics`` (pre-initialised to 0 per target)."""
        self.metrics = metrics
        for target in self.targets:
            metrics.scrape_failures.labels(redact(target.url))

    def collect(self) -> Iterator[Metric]:
        """Scrape each target in turn and yield its metric families."""
        for target in self.targets:
            try:
                text = self._fetch(target.url, self.timeout_seconds)
                families = list(text_string_to_metric_families(text))
            except Exception as exc:  # a bad target must not stop the others
                logger.warning("anodot: scrape of %s failed: %s", redact(target.url),
                               redact(f"{type(exc).__name__}: {exc}"))
                if self.metrics is not None:
                    self.metrics.scrape_failures.labels(redact(target.url)).inc()
                continue
            for family in families:
                if target.properties:
                    family.samples = [
                        s._replace(labels={**target.properties, **s.labels}) for s in family.samples
                    ]
                yield family
