"""MonitoringAgent: the ancestor MLWatcher's API over :class:`ModelMonitor`.

Users of MLWatcher switch by changing one import::

    from mlwatcher_exporter import MonitoringAgent   # was: from MLWatcher.agent import ...

The ancestor shipped batches to a separate server process; here the statistics are
computed in-process and served on ``/metrics``, so its network arguments are accepted
for compatibility and unused.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from prometheus_client import REGISTRY, CollectorRegistry

from .monitor import ModelMonitor

__all__ = ["MonitoringAgent"]

logger = logging.getLogger("mlwatcher_exporter")


class MonitoringAgent:
    """Drop-in replacement for MLWatcher's ``MonitoringAgent``.

    Parameters
    ----------
    frequency : float
        Window length in minutes.
    max_buffer_size : int
        Rows sampled per window (``reservoir_size``).
    n_classes : int
        Columns of the predict_proba matrix (>= 2).
    agent_id : str, default="1"
        Becomes the ``model`` label.
    server_IP, server_port : optional
        Accepted for compatibility; unused (there is no separate server).
    registry : CollectorRegistry or None, default=prometheus_client.REGISTRY
    **monitor_kwargs
        Further :class:`ModelMonitor` arguments (feature_names, class_names...).
    """

    def __init__(
        self,
        frequency: float,
        max_buffer_size: int,
        n_classes: int,
        agent_id: str = "1",
        server_IP: Optional[str] = None,  # noqa: N803 - the ancestor's spelling
        server_port: Optional[int] = None,
        registry: Optional[CollectorRegistry] = REGISTRY,
        **monitor_kwargs: Any,
    ) -> None:
        if isinstance(frequency, bool) or not isinstance(frequency, (int, float)) or frequency <= 0:
            raise ValueError(f"frequency == {frequency!r}, must be a number of minutes > 0")
        self.frequency = frequency
        self.max_buffer_size = max_buffer_size
        self.n_classes = n_classes
        self.agent_id = str(agent_id)
        self.server_IP = server_IP
        self.server_port = server_port
        self.monitor = ModelMonitor(
            model=self.agent_id,
            n_classes=n_classes,
            window_seconds=float(frequency) * 60.0,
            reservoir_size=max_buffer_size,
            registry=registry,
            **monitor_kwargs,
        )

    def collect_data(
        self,
        predict_proba_matrix: Any,
        input_matrix: Any = None,
        label_matrix: Any = None,
        threshold: float = 0.5,
    ) -> None:
        """Record one batch. As in the ancestor, a bad batch is dropped with a warning
        (and counted in ``mlwatcher_rejected_rows_total``), never raised."""
        self.monitor.observe_quietly(
            predict_proba_matrix, input_matrix, label_matrix, threshold=threshold
        )

    def run_local_server(self, *args: Any, **kwargs: Any) -> None:
        """Accepted for compatibility: statistics are computed in-process. Serve them
        with ``agent.monitor.start_http_server()``."""
        logger.info("mlwatcher: run_local_server() is not needed; use monitor.start_http_server()")
