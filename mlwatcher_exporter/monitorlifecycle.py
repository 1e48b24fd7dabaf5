"""The life of a monitor after its construction: serving its metrics, closing it.

:class:`LifecycleMixin` gives :class:`~.monitor.ModelMonitor` :meth:`start_http_server`,
:meth:`close` and the context manager that closes it.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar, cast

from prometheus_client import CollectorRegistry

from . import prefork
from .collector import Publisher, unregister_monitor
from .history import WindowHistory
from .staging import Staging
from .worker import Worker

__all__ = ["LifecycleMixin"]

_Self = TypeVar("_Self", bound="LifecycleMixin")


class LifecycleMixin:
    """Serving and closing a monitor.

    A subclass sets ``model``, ``registry``, ``http_addr``, ``http_port``, ``history``,
    ``_worker``, ``_staging`` and ``_closed``, and defines :meth:`flush`.
    """

    model: str
    registry: Optional[CollectorRegistry]
    http_addr: str
    http_port: int
    history: WindowHistory
    _worker: Worker
    _staging: Staging
    _closed: bool
    flush: Callable[[], None]

    def start_http_server(
        self,
        port: Optional[int] = None,
        addr: Optional[str] = None,
        *,
        web_config: Any = None,
        limits: Any = None,
    ) -> Any:
        """Serve ``/metrics`` of this monitor's registry in a daemon thread.

        Every monitor of a registry is served by one server: starting it again for the
        same registry, address and port returns the running server.

        Parameters
        ----------
        port : int, optional
            Default: the configured port (10150). 0 picks a free port.
        addr : str, optional
            Default: ``127.0.0.1``. Listening beyond loopback exposes the model's
            statistics: see the README on TLS and basic auth.
        web_config, limits
            As for :func:`.exposition.start_http_server`: a ``web.yml`` (TLS, basic
            auth) and the server's timeouts and connection bounds.

        Returns
        -------
        MetricsServer
            With ``.port`` (the bound port) and ``.shutdown()``.
        """
        from .exposition import start_http_server

        if self.registry is None:
            raise ValueError(
                f"monitor {self.model!r} has registry == None, must have a registry to serve"
            )
        return prefork.serve_quietly(
            start_http_server, self.http_port if port is None else port,
            self.http_addr if addr is None else addr, self.registry, web_config, limits,
        )

    def close(self) -> None:
        """Count what is staged, stop the worker and unregister: nothing more is
        published. Call it when the model is retired; a monitor dropped without it is
        collected with its worker."""
        if self._closed:
            return
        self._closed = True
        self._worker.stop()
        self.flush()
        self._staging.close()
        self.history.update(self)
        self.history.close()
        if self.registry is not None:
            unregister_monitor(self.registry, cast(Publisher, self))  # a ModelMonitor

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
