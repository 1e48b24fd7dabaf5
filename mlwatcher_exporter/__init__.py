"""mlwatcher-exporter: watch ML classifiers in production, publish what you see to Prometheus.

>>> from prometheus_client import CollectorRegistry
>>> from sklearn.datasets import load_iris
>>> from sklearn.linear_model import LogisticRegression
>>> from mlwatcher_exporter import ModelMonitor
>>> X, y = load_iris(return_X_y=True)
>>> monitor = ModelMonitor(model="iris", registry=CollectorRegistry(), background=False)
>>> model = monitor.wrap(LogisticRegression(max_iter=500).fit(X, y))
>>> with monitor.labels(y):
...     proba = model.predict_proba(X)          # observed, features and labels included
>>> window = monitor.close_window()
>>> window.rows, round(window.scores.accuracy, 2)
(150, 0.97)
>>> server = monitor.start_http_server(port=0)  # http://127.0.0.1:<port>/metrics
>>> server.shutdown()
"""

from ._version import __version__
from .agent import MonitoringAgent
from .client import RemoteMonitor
from .config import ConfigError, load_config
from .exposition import make_wsgi_app, start_http_server
from .monitor import ModelMonitor
from .validation import BatchError, BatchTypeError, BatchValueError
from .window import WindowStats

__all__ = [
    "__version__",
    "ModelMonitor",
    "MonitoringAgent",
    "RemoteMonitor",
    "WindowStats",
    "ConfigError",
    "load_config",
    "make_wsgi_app",
    "start_http_server",
    "BatchError",
    "BatchValueError",
    "BatchTypeError",
]
