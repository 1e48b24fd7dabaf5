"""mlwatcher-exporter: watch ML classifiers in production, publish what you see to Prometheus.

>>> from mlwatcher_exporter import ModelMonitor                     # doctest: +SKIP
>>> monitor = ModelMonitor(model="digits", n_classes=10)            # doctest: +SKIP
>>> model = monitor.wrap(fitted_classifier)                         # doctest: +SKIP
>>> monitor.start_http_server()                                     # doctest: +SKIP
"""

from ._version import __version__
from .agent import MonitoringAgent
from .config import ConfigError, load_config
from .exposition import make_wsgi_app, start_http_server
from .monitor import ModelMonitor
from .validation import BatchError, BatchTypeError, BatchValueError
from .window import WindowStats

__all__ = [
    "__version__",
    "ModelMonitor",
    "MonitoringAgent",
    "WindowStats",
    "ConfigError",
    "load_config",
    "make_wsgi_app",
    "start_http_server",
    "BatchError",
    "BatchValueError",
    "BatchTypeError",
]
