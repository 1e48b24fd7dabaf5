"""The demo: digits classifiers in production, healthy, drifting or replaced by a weak model.

It replays the ancestor's three stories on scikit-learn's bundled digits data (no
download): healthy traffic; input drift (pixel values inverted, 16 - x); a weak model
trained on a heavily unbalanced set. A challenger model (``digits-canary``) sees the same
inputs throughout, as in the ancestor's canary use case.

Each request also carries the channel it came through, a categorical feature the models
ignore but the monitors describe (``mlwatcher_feature_value_ratio``): 0 = web, 1 = mobile
app, 2 = partner API. During the input drift most traffic comes from the partner API,
whose images arrive inverted, so the channel mix shifts with the pixels.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, TextIO

import numpy as np
from prometheus_client import CollectorRegistry

from .history import WindowHistory
from .monitor import ModelMonitor
from .settings import HistorySettings
from .signals import stop_on_signals

__all__ = [
    "DemoModels",
    "ServedModel",
    "CHANNEL_FEATURE",
    "CHANNELS",
    "CHANNEL_MIX",
    "train_models",
    "check_arguments",
    "run_demo",
    "SCENARIO_CYCLE",
    "MAX_ROWS_PER_SECOND",
    "MAX_RESERVOIR_SIZE",
]

SCENARIO_CYCLE = ("healthy", "input-drift", "weak-model")
PIXEL_MAX = 16.0  # digits pixels are 0..16

# The request channel: a categorical feature, its code in the last feature column.
CHANNEL_FEATURE = "channel"
CHANNELS = ("web", "mobile", "partner-api")  # codes 0, 1, 2
CHANNEL_MIX = {
    "healthy": (0.6, 0.3, 0.1),
    "input-drift": (0.2, 0.2, 0.6),
    "weak-model": (0.6, 0.3, 0.1),
}


class ServedModel:
    """What the demo's service calls: the model on the pixels; the channel is logged
    with them, so the monitor sees it, and the model ignores it."""

    def __init__(self, model: Any, n_pixels: int) -> None:
        self.model = model
        self.n_pixels = n_pixels
        self.classes_ = model.classes_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """The model's probabilities for the pixel columns of `X`."""
        return self.model.predict_proba(X[:, :self.n_pixels])


@dataclass
class DemoModels:
    """The fitted demo classifiers and the held-out data they are fed."""

    production: Any
    weak: Any
    canary: Any
    X: np.ndarray
    y: np.ndarray
    feature_names: list
    # The reference (docs/drift.md): the training split with its out-of-fold
    # probabilities, so that the calibration is not fitted on over-confident ones.
    X_reference: Optional[np.ndarray] = None
    y_reference: Optional[np.ndarray] = None
    proba_reference: Optional[np.ndarray] = None


def train_models(seed: int = 0) -> DemoModels:
    """Fit the production, weak and challenger models on the digits data."""
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    digits = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.4, random_state=seed, stratify=digits.target
    )
    production = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    production.fit(X_train, y_train)
    # Weak model: every class present (so predict_proba keeps 10 columns), but classes
    # 2-9 with only three examples each against all of classes 0 and 1.
    rng = np.random.default_rng(seed)
    keep = np.concatenate([
        np.flatnonzero(y_train == c) if c < 2
        else rng.choice(np.flatnonzero(y_train == c), 3, replace=False)
        for c in range(10)
    ])
    weak = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    weak.fit(X_train[keep], y_train[keep])
    canary = RandomForestClassifier(n_estimators=30, max_depth=10, random_state=seed)
    canary.fit(X_train, y_train)
    from sklearn.model_selection import cross_val_predict

    proba_reference = cross_val_predict(production, X_train, y_train, cv=5,
                                        method="predict_proba")
    return DemoModels(production, weak, canary, X_test, y_test, list(digits.feature_names),
                      X_train, y_train, proba_reference)


def scenario_at(scenario: str, window_index: int, windows_per_scenario: int) -> str:
    """The scenario in force during window `window_index` (cycle rotates through all)."""
    if scenario != "cycle":
        return scenario
    return SCENARIO_CYCLE[(window_index // max(windows_per_scenario, 1)) % len(SCENARIO_CYCLE)]


# Bounds that keep the demo's memory small: a tick draws rows_per_second / 10 rows.
MAX_ROWS_PER_SECOND = 1_000_000
MAX_RESERVOIR_SIZE = 1_000_000


def check_arguments(
    port: int = 10150,
    window_seconds: float = 10.0,
    scenario: str = "cycle",
    duration: float = 0.0,
    windows_per_scenario: int = 6,
    rows_per_second: float = 200.0,
    reservoir_size: int = 10_000,
    seed: int = 0,
) -> None:
    """Raise ValueError naming the first of :func:`run_demo`'s arguments out of bounds.

    Examples
    --------
    >>> check_arguments(rows_per_second=float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: rows_per_second == inf, must be a finite number > 0 and <= 1000000
    """
    if scenario not in SCENARIO_CYCLE + ("cycle",):
        raise ValueError(
            f"scenario == {scenario!r}, must be one of {list(SCENARIO_CYCLE + ('cycle',))}"
        )
    _check_int("port", port, 0, 65535, "a TCP port in [0, 65535] (0 picks a free one)")
    _check_int("windows_per_scenario", windows_per_scenario, 1, None, "an int >= 1")
    _check_int("reservoir_size", reservoir_size, 1, MAX_RESERVOIR_SIZE,
               f"an int in [1, {MAX_RESERVOIR_SIZE}]")
    _check_int("seed", seed, 0, 2**32 - 1, "an int in [0, 2**32 - 1]")
    _check_float("window_seconds", window_seconds, "a finite number > 0", positive=True)
    _check_float("duration", duration, "a finite number >= 0 (0: until stopped)")
    _check_float("rows_per_second", rows_per_second,
                 f"a finite number > 0 and <= {MAX_ROWS_PER_SECOND}", positive=True,
                 maximum=MAX_ROWS_PER_SECOND)


def _check_int(name: str, value: Any, low: int, high: Optional[int], expected: str) -> None:
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
            or value < low or (high is not None and value > high)):
        raise ValueError(f"{name} == {value!r}, must be {expected}")


def _check_float(
    name: str, value: Any, expected: str, positive: bool = False,
    maximum: Optional[float] = None,
) -> None:
    ok = (isinstance(value, (int, float, np.integer, np.floating))
          and not isinstance(value, bool) and math.isfinite(value)
          and (value > 0 if positive else value >= 0)
          and (maximum is None or value <= maximum))
    if not ok:
        raise ValueError(f"{name} == {value!r}, must be {expected}")


def run_demo(
    port: int = 10150,
    addr: str = "127.0.0.1",
    window_seconds: float = 10.0,
    scenario: str = "cycle",
    duration: float = 0.0,
    windows_per_scenario: int = 6,
    rows_per_second: float = 200.0,
    reservoir_size: int = 10_000,
    seed: int = 0,
    out: TextIO = sys.stdout,
    registry: Optional[CollectorRegistry] = None,
    stop: Optional[threading.Event] = None,
    web_config: Optional[str] = None,
    history_dir: Optional[str] = None,
) -> int:
    """Serve the demo's metrics until `duration` seconds pass, SIGINT/SIGTERM or `stop`.

    Binds the port first (so that a port in use fails at once), prints the metrics URL,
    trains the models, then prints a line per completed window of the production model.
    With `history_dir`, each model's closed windows are also written there as rotating
    JSON-lines files (docs/history.md). Returns the exit code (0).

    Raises
    ------
    ValueError
        An argument out of bounds (see :func:`check_arguments`), or a `web_config`
        (a ``web.yml`` for TLS and basic auth) with problems.
    OSError
        The address cannot be listened on (port in use, unknown address...), with the
        address in the message.
    """
    check_arguments(port=port, window_seconds=window_seconds, scenario=scenario,
                    duration=duration, windows_per_scenario=windows_per_scenario,
                    rows_per_second=rows_per_second, reservoir_size=reservoir_size,
                    seed=seed)
    registry = registry if registry is not None else CollectorRegistry()
    server = _listen(addr, port, registry, web_config)
    stop = stop or threading.Event()
    try:
        with stop_on_signals(stop):
            print(f"Serving metrics at {server.url}", file=out, flush=True)
            models = train_models(seed)
            _stream(models, registry, out, stop, window_seconds=window_seconds,
                    scenario=scenario, duration=duration,
                    windows_per_scenario=windows_per_scenario,
                    rows_per_second=rows_per_second, reservoir_size=reservoir_size,
                    seed=seed, history_dir=history_dir)
    finally:
        server.shutdown()
    print("Demo stopped.", file=out, flush=True)
    return 0


def _listen(
    addr: str, port: int, registry: CollectorRegistry, web_config: Optional[str] = None
) -> Any:
    """Start the metrics server, or raise OSError naming the address and the reason."""
    from .exposition import start_http_server

    try:
        return start_http_server(port, addr, registry=registry, web_config=web_config)
    except (OSError, OverflowError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise OSError(f"cannot listen on {addr}:{port}: {reason}") from error


def _stream(
    models: DemoModels, registry: CollectorRegistry, out: TextIO, stop: threading.Event,
    *, window_seconds: float, scenario: str, duration: float, windows_per_scenario: int,
    rows_per_second: float, reservoir_size: int, seed: int,
    history_dir: Optional[str] = None,
) -> None:
    """Feed the monitored models until `duration` passes or `stop` is set."""
    # The scenario clock starts with the monitors' first window, so that each window
    # sees one scenario and its line names the right one.
    started = time.monotonic()
    started_wall = time.time()
    common: Dict[str, Any] = dict(
        n_classes=10,
        window_seconds=window_seconds,
        reservoir_size=reservoir_size,
        feature_names=models.feature_names + [CHANNEL_FEATURE],
        categorical_features=[CHANNEL_FEATURE],
        registry=registry,
        # Every optional fleet family has data: the confusion matrix, and a histogram
        # of the first pixel, the feature the dashboards draw by default (values 0 to 16).
        fleet={"confusion_matrix": True,
               "feature_buckets": {models.feature_names[0]: [0.0, 4.0, 8.0, 12.0, 16.0]}},
    )
    production_monitor = ModelMonitor(model="digits", random_state=seed, **common)
    canary_monitor = ModelMonitor(model="digits-canary", random_state=seed + 1, **common)
    if history_dir is not None:
        history = HistorySettings(directory=history_dir)
        for monitor in (production_monitor, canary_monitor):
            monitor.history = WindowHistory.from_settings(monitor.model, history, registry)
    n_pixels = models.X.shape[1]
    if models.X_reference is not None:  # drift and estimated accuracy (docs/drift.md)
        reference_rng = np.random.default_rng(seed + 2)
        channel = reference_rng.choice(len(CHANNELS), size=len(models.X_reference),
                                       p=CHANNEL_MIX["healthy"])
        production_monitor.fit_reference(
            np.column_stack([models.X_reference, channel.astype(float)]),
            models.proba_reference, models.y_reference)
    production = production_monitor.wrap(ServedModel(models.production, n_pixels))
    weak = production_monitor.wrap(ServedModel(models.weak, n_pixels))
    canary = canary_monitor.wrap(ServedModel(models.canary, n_pixels))
    rng = np.random.default_rng(seed)
    tick = 0.1
    last_end: Optional[float] = None
    try:
        while not stop.is_set():
            elapsed = time.monotonic() - started
            if duration and elapsed >= duration:
                break
            current = scenario_at(scenario, int(elapsed // window_seconds), windows_per_scenario)
            rows = rng.choice(len(models.y), size=max(1, int(rows_per_second * tick)))
            X, y = models.X[rows], models.y[rows]
            if current == "input-drift":
                X = PIXEL_MAX - X
            channel = rng.choice(len(CHANNELS), size=len(rows), p=CHANNEL_MIX[current])
            X = np.column_stack([X, channel.astype(X.dtype)])
            model = weak if current == "weak-model" else production
            with production_monitor.labels(y):
                model.predict_proba(X)
            with canary_monitor.labels(y):
                canary.predict_proba(X)
            window = production_monitor.last_window
            if window is not None and window.end_time != last_end:
                last_end = window.end_time
                index = round((window.end_time - started_wall) / window_seconds) - 1
                closed = scenario_at(scenario, index, windows_per_scenario)
                print(_window_line(window, closed), file=out, flush=True)
            stop.wait(tick)
    finally:
        production_monitor.close()
        canary_monitor.close()


def _window_line(window: Any, scenario: str) -> str:
    median = window.pred1["median"] if window.pred1 else float("nan")
    accuracy = window.scores.accuracy if window.scores else float("nan")
    judged = getattr(window, "judgement", None)
    estimated = ""
    if judged is not None and judged.estimate is not None:
        estimated = (f" estimated_accuracy={judged.estimate.accuracy:.3f}"
                     f"+-{judged.estimate.accuracy_stderr:.3f}"
                     f" drifted_features={judged.drifted_features}")
    return (
        f"window end={time.strftime('%H:%M:%S', time.localtime(window.end_time))} "
        f"model=digits rows={window.rows} pred1_median={median:.3f} "
        f"accuracy={accuracy:.3f}{estimated} scenario={scenario}"
    )
