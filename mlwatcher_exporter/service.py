"""``mlwatcher-exporter serve``: one process hosting the monitors of several models.

Producers in other processes (or languages) post their batches to the ingest API
(:mod:`.api`); Prometheus scrapes ``/metrics`` of the same server. The server is the
event-loop server of :mod:`.httpserver` with bodies enabled, so every bound of the
exporter's own server (connections, timeouts, head size) holds here too, plus the body
bounds of :class:`~.serveconfig.ApiSettings`.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Dict, Optional, Union

from prometheus_client import CollectorRegistry, ProcessCollector

from .api import IngestAPI
from .apimetrics import ApiMetrics
from .auth import BearerToken, is_loopback, load_token
from .exposition import _wsgi_handler, make_wsgi_app
from .httpserver import HTTPServer, ServerLimits, format_host
from .monitor import ModelMonitor
from .serveconfig import ServeSettings, load_serve_config
from .signals import stop_on_signals
from .webconfig import WebConfig, load_web_config

__all__ = ["Service", "run_serve"]

logger = logging.getLogger("mlwatcher_exporter")


class Service:
    """The monitors of `settings` behind one HTTP server.

    Parameters
    ----------
    settings : ServeSettings
    addr : str, optional
        Address to listen on; default ``settings.http.addr`` (127.0.0.1).
    port : int, optional
        Default ``settings.http.port`` (10150); 0 picks a free port.
    token : BearerToken, optional
        Required on every request when set; required to listen beyond loopback.
    web_config : str, path or WebConfig, optional
        TLS (and basic auth for the paths outside the API) from a ``web.yml``.
    registry : CollectorRegistry, optional
        Where the monitors and the service's metrics are registered; default a new one.

    Raises
    ------
    ValueError
        Listening beyond loopback without a token, or a bad `web_config`.
    OSError
        The address cannot be listened on.
    """

    def __init__(self, settings: ServeSettings, addr: Optional[str] = None,
                 port: Optional[int] = None, token: Optional[BearerToken] = None,
                 web_config: "Union[None, str, os.PathLike, WebConfig]" = None,
                 registry: Optional[CollectorRegistry] = None) -> None:
        addr = settings.http.addr if addr is None else addr
        port = settings.http.port if port is None else port
        if token is None and not is_loopback(addr):
            raise ValueError(
                f"listening on {addr!r} beyond loopback requires a bearer token: put one in "
                f"the environment variable {settings.api.token_env} or in a file named by "
                "serve.token_file (or --token-file)")
        config = web_config if isinstance(web_config, WebConfig) or web_config is None \
            else load_web_config(web_config)
        self.registry = registry if registry is not None else CollectorRegistry()
        self.monitors: Dict[str, ModelMonitor] = {}
        try:
            for model in settings.models:
                self.monitors[model.model] = ModelMonitor.from_config(model, self.registry)
        except BaseException:
            self._close_monitors()
            raise
        self.metrics = ApiMetrics(list(self.monitors)).register(self.registry)
        if registry is None:
            ProcessCollector(registry=self.registry)
        api = settings.api
        self.api = IngestAPI(self.monitors, _wsgi_handler(make_wsgi_app(self.registry), config),
                             self.metrics, token, api.max_array_bytes)
        limits = ServerLimits(
            request_timeout=api.request_timeout, idle_timeout=api.idle_timeout,
            max_connections=api.max_connections, workers=api.workers,
            max_body_bytes=api.max_body_bytes, body_timeout=api.body_timeout,
            max_pending_body_bytes=max(64 << 20, 4 * api.max_body_bytes))
        ssl_context = config.ssl_context() if config is not None else None
        try:
            self.server = HTTPServer(addr, port, self.api, limits, ssl_context,
                                     config.check_peer if config is not None else None)
        except BaseException:
            self._close_monitors()
            raise
        self.scheme = "https" if ssl_context is not None else "http"
        self._started = False

    @property
    def url(self) -> str:
        """The server's base URL (``http://127.0.0.1:10150``)."""
        host, port = self.server.server_address[:2]
        return f"{self.scheme}://{format_host(str(host))}:{int(port)}"

    def start(self) -> "Service":
        """Start serving from daemon threads; returns self."""
        self.server.start()
        self._started = True
        return self

    def shutdown(self) -> None:
        """Stop the server, then close every monitor."""
        if self._started:
            self.server.shutdown()
            self._started = False
        self._close_monitors()

    def _close_monitors(self) -> None:
        for monitor in self.monitors.values():
            monitor.close()

    def __enter__(self) -> "Service":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def run_serve(config: str, listen: Optional[str] = None, port: Optional[int] = None,
              token_file: Optional[str] = None, web_config: Optional[str] = None,
              stop: Optional[threading.Event] = None, environ: Optional[dict] = None) -> int:
    """Serve until SIGINT, SIGTERM or `stop`; the ``serve`` command.

    Raises
    ------
    ConfigError, ValueError, OSError
        A bad configuration, token or address (the command prints one line, exits 2).
    """
    settings = load_serve_config(config)
    token = load_token(settings.api.token_env, token_file or settings.api.token_file,
                       os.environ if environ is None else environ)
    service = Service(settings, listen, port, token, web_config)
    stop = stop or threading.Event()
    with service, stop_on_signals(stop):
        models = ", ".join(sorted(service.monitors))
        print(f"mlwatcher-exporter serve: models {models} on {service.url} "
              f"(POST {service.url}/api/v1/models/{{model}}/observations, "
              f"GET {service.url}/metrics){' with a bearer token' if token else ''}",
              flush=True)
        while not stop.wait(3600):
            pass
    print("mlwatcher-exporter serve: stopped", flush=True)
    return 0
