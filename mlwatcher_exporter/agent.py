"""MonitoringAgent: the ancestor MLWatcher's API over :class:`ModelMonitor`.

Users of MLWatcher switch by changing one import::

    from mlwatcher_exporter.agent import MonitoringAgent   # was: from MLWatcher.agent import ...

The ancestor shipped each window's sample to a server process, local
(``agent.run_local_server()``) or distant (``server.py --listen all --port 8000``). Here,
after :meth:`MonitoringAgent.run_local_server` the statistics are computed in-process and
served on ``/metrics``; without it, an agent given a ``server_IP`` posts its batches to
``mlwatcher-exporter serve`` at ``server_IP:server_port`` through
:class:`~.client.RemoteMonitor` (the token, if the server wants one, from the
environment variable ``MLWATCHER_TOKEN``), so the distant setup migrates too.
"""

from __future__ import annotations

import errno

import logging
import os
import threading
from typing import Any, Dict, Optional, Set

from prometheus_client import REGISTRY, CollectorRegistry

from .client import RemoteMonitor
from .config import DEFAULT_PORT
from .httptypes import format_host
from .monitor import ModelMonitor

__all__ = ["MonitoringAgent"]

logger = logging.getLogger("mlwatcher_exporter")

#: Where :meth:`MonitoringAgent.run_local_server` listens, as the ancestor's local server.
LOCAL_ADDR = "127.0.0.1"


class _Served:
    """One HTTP server started by agents, and the agents that use it."""

    def __init__(self, server: Any, registry: CollectorRegistry) -> None:
        self.server = server
        self.registry = registry
        self.users: Set[int] = set()


# Servers the agents started, by bound port: several agents of one registry (the
# ancestor's production model beside its canaries) share one port, as they shared the
# ancestor's server.
_servers: Dict[int, _Served] = {}
_servers_lock = threading.Lock()


def _check_port(server_port: Any) -> Optional[int]:
    """`server_port` checked: None, or a TCP port number (0 picks a free one)."""
    if server_port is None:
        return None
    if isinstance(server_port, bool) or not isinstance(server_port, int):
        raise TypeError(
            f"server_port == {server_port!r}, must be an int (a TCP port) or None"
        )
    if not 0 <= server_port <= 65535:
        raise ValueError(f"server_port == {server_port}, must be in [0, 65535]")
    return server_port


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
    server_IP : str, optional
        Address of a ``mlwatcher-exporter serve`` process: unless
        :meth:`run_local_server` is called, batches are posted there (as the ancestor
        sent them to its distant server). None: batches are monitored in process.
        :meth:`run_local_server` always listens on 127.0.0.1.
    server_port : int, optional
        Port of that server, or of :meth:`run_local_server`; default the exporter's port
        (10150). 0 picks a free port for :meth:`run_local_server`.
    registry : CollectorRegistry or None, default=prometheus_client.REGISTRY
    **monitor_kwargs
        Further :class:`ModelMonitor` arguments (feature_names, class_names...).

    Examples
    --------
    >>> from prometheus_client import CollectorRegistry
    >>> agent = MonitoringAgent(frequency=5, max_buffer_size=500, n_classes=2,
    ...                         server_port=0, registry=CollectorRegistry())
    >>> server = agent.run_local_server()      # http://127.0.0.1:<server.port>/metrics
    >>> agent.collect_data([[0.9, 0.1], [0.2, 0.8]], label_matrix=[0, 1])
    >>> agent.close()                          # stops the server it no longer shares
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
        self.server_port = _check_port(server_port)
        self.monitor = ModelMonitor(
            model=self.agent_id,
            n_classes=n_classes,
            window_seconds=float(frequency) * 60.0,
            reservoir_size=max_buffer_size,
            registry=registry,
            **monitor_kwargs,
        )
        self._served_port: Optional[int] = None
        self._registry = registry
        self._remote: Optional[RemoteMonitor] = None
        self._remote_lock = threading.Lock()

    @property
    def remote(self) -> Optional[RemoteMonitor]:
        """The client posting to ``serve`` (created at the first batch sent), or None."""
        return self._remote

    def _sender(self) -> Optional[RemoteMonitor]:
        """The client to send through, or None to observe in process."""
        if self.server_IP is None or self._served_port is not None:
            return None
        with self._remote_lock:
            if self._remote is None:
                port = DEFAULT_PORT if self.server_port is None else self.server_port
                self._remote = RemoteMonitor(
                    f"http://{format_host(str(self.server_IP))}:{port}", model=self.agent_id,
                    token=os.environ.get("MLWATCHER_TOKEN") or None, registry=self._registry)
            return self._remote

    def collect_data(
        self,
        predict_proba_matrix: Any,
        input_matrix: Any = None,
        label_matrix: Any = None,
        threshold: float = 0.5,
    ) -> None:
        """Record one batch. As in the ancestor, a bad batch is dropped with a warning
        (and counted in ``mlwatcher_rejected_rows_total``), never raised. With a
        ``server_IP`` and no local server, the batch is posted to ``serve`` instead
        (in the background; rows that cannot be delivered are counted in
        ``mlwatcher_client_dropped_rows_total``)."""
        sender = self._sender()
        if sender is not None:
            sender.observe_quietly(predict_proba_matrix, input_matrix, label_matrix)
            return
        self.monitor.observe_quietly(
            predict_proba_matrix, input_matrix, label_matrix, threshold=threshold
        )

    def run_local_server(self, n_sockets: int = 5) -> Any:
        """Serve the metrics on ``http://127.0.0.1:<server_port>/metrics``.

        The ancestor started its metrics server process here; this starts the
        exporter's HTTP server in a daemon thread, on `server_port` (default 10150), and
        logs at INFO where it serves. An agent whose registry is already served on that
        port by an earlier agent shares that server, as the ancestor's agents shared
        theirs; calling it twice returns the same server.

        Parameters
        ----------
        n_sockets : int, default=5
            The ancestor's listen backlog; accepted for compatibility and unused.

        Returns
        -------
        MetricsServer
            With ``.port`` (the bound port) and ``.shutdown()``.

        Raises
        ------
        ValueError
            If the agent has no registry to serve (``registry=None``), or the port is
            served by another agent's server for a different registry.
        OSError
            If something else listens on the port.
        """
        registry = self.monitor.registry
        if registry is None:
            raise ValueError(
                f"agent {self.agent_id!r} has registry == None, must have a registry to serve"
            )
        port = DEFAULT_PORT if self.server_port is None else self.server_port
        with _servers_lock:
            if self._served_port is not None:
                served: Optional[_Served] = _servers.get(self._served_port)
            else:
                served = _servers.get(port) if port != 0 else None
            if served is not None:
                if served.registry is not registry:
                    raise ValueError(
                        f"server_port == {port} already serves another registry than agent "
                        f"{self.agent_id!r}'s; give this agent another server_port"
                    )
                served.users.add(id(self))
                self._served_port = served.server.port
                logger.info(
                    "mlwatcher: agent %r is served on http://%s:%d/metrics (already running)",
                    self.agent_id, LOCAL_ADDR, served.server.port,
                )
                return served.server
            try:
                server = self.monitor.start_http_server(port=port, addr=LOCAL_ADDR)
            except OSError as error:
                raise OSError(
                    error.errno,
                    f"server_port == {port}: cannot listen on {LOCAL_ADDR}:{port} "
                    f"({error.strerror or error}); give the agent a free server_port",
                ) from error
            if not getattr(server, "serving", True):  # the monitor's quiet taken port
                raise OSError(
                    errno.EADDRINUSE,
                    f"server_port == {port}: cannot listen on {LOCAL_ADDR}:{port} "
                    f"({server.reason}); give the agent a free server_port",
                )
            served = _Served(server, registry)
            served.users.add(id(self))
            _servers[server.port] = served
            self._served_port = server.port
        logger.info(
            "mlwatcher: agent %r serves /metrics on http://%s:%d/metrics",
            self.agent_id, LOCAL_ADDR, server.port,
        )
        return server

    def close(self) -> None:
        """Stop monitoring (sending what is buffered for up to 5 s); stop the server of
        :meth:`run_local_server` once no agent uses it."""
        if self._remote is not None:
            self._remote.close()
        self.monitor.close()
        server = None
        with _servers_lock:
            if self._served_port is not None:
                served = _servers.get(self._served_port)
                self._served_port = None
                if served is not None:
                    served.users.discard(id(self))
                    if not served.users:
                        del _servers[served.server.port]
                        server = served.server
        if server is not None:
            server.shutdown()
