"""A fleet behind two levels of real Prometheus: the central rules equal scikit-learn's.

One stack per module, on 127.0.0.1 only:

* 3 replicas of model "digits": monitors with their own registries, each served by the
  exporter's HTTP server on its own port (job `mlwatcher`, `env="production"`);
* 2 Prometheus servers with config/prometheus.yml and the shipped rule files: "leaf-a"
  scrapes replicas 0 and 1, "leaf-b" replica 2 (their external label `prometheus`);
* 1 central Prometheus with config/prometheus-central.yml (hierarchical federation of the
  fleet sums, as Prometheus' federation docs describe it) and the same rule files;
* every interval at 1 s, every storage in a temporary folder.

One stream of digits predictions (a fitted LogisticRegression, 1,800 rows, 30 % of them
labeled) is dealt to the replicas in disjoint shares. When the leaves have scraped the
final counters, the replicas stop (the stream ended), and the central Prometheus'
recorded series must equal, on the pooled rows:

* fleet accuracy, per-class recall: scikit-learn's `accuracy_score`/`recall_score` on
  the pooled labeled rows;
* class shares and mean pred1: numpy's on all pooled rows;
* the median pred1 from the histogram: within one bucket of the exact pooled median;
* per-class precision and F1 (from the labeled rows by predicted class): scikit-learn's
  `precision_score`/`f1_score` on the pooled labeled rows, although only 30 % are
  labeled; feature mean and standard deviation: numpy's on the pooled values.

"Equal" to float rounding, once Prometheus' own arithmetic is accounted for: `rate()`
extrapolates each replica's increase by a factor of its own. Each replica's series start
at 0 (scraped before any row) and end when it stops, so Prometheus' extrapolation
(promql/functions.go, extrapolatedRate) multiplies the increase of replica i by
f_i = 1 + 1 / (2 (n_i - 1)), n_i being its samples in the range: no extrapolation
towards the start (the counter was 0 there), half an average scrape interval past the
end. The expected values are therefore scikit-learn's and numpy's with every row of
replica i weighted by f_i (`sample_weight`), n_i read from the leaf that scraped it;
the unweighted pooled values are printed beside them (they differ by ~1e-4).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry

from _prometheus import Prometheus, tail_file, wait_for
from conftest import require_binary
from mlwatcher_exporter import ModelMonitor, naming

ROOT = Path(__file__).resolve().parent.parent
LEAF_CONFIG = ROOT / "config" / "prometheus.yml"
CENTRAL_CONFIG = ROOT / "config" / "prometheus-central.yml"
RULE_FILES = sorted((ROOT / "config" / "rules").glob("*.yml"))
JOB = "mlwatcher"
ENV = "production"
MODEL = "digits"
N_ROWS = 1800
LABELED_SHARE = 0.3
N_REPLICAS = 3
LEAVES = {"leaf-a": (0, 1), "leaf-b": (2,)}
BATCH = 30
SEED = 7
MIN_SAMPLES = 10  # scrapes of each replica before it stops
# Float rounding: sums over a few hundred rows and a division.
TOLERANCE = 1e-9

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


@dataclass
class Stream:
    proba: np.ndarray        # (N_ROWS, 10)
    features: np.ndarray     # (N_ROWS, 4)
    labels: np.ndarray       # (N_ROWS,) float, NaN where unlabeled
    replica: np.ndarray      # (N_ROWS,) which replica gets the row


def make_stream() -> Stream:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    digits = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.4, random_state=SEED, stratify=digits.target)
    # A weakly regularised model on few pixels: accuracy well under 1 and per-class
    # recalls that differ, so that wrong pooling shows.
    pixels = [18, 19, 20, 21, 26, 27, 28, 29, 34, 35, 36, 37, 42, 43, 44, 45]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.05))
    model.fit(X_train[:, pixels], y_train)
    rng = np.random.default_rng(SEED)
    rows = rng.choice(len(y_test), N_ROWS)
    proba = model.predict_proba(X_test[rows][:, pixels])
    labels = y_test[rows].astype(float)
    labels[rng.random(N_ROWS) >= LABELED_SHARE] = np.nan
    features = X_test[rows][:, pixels[:4]]
    return Stream(proba, features, labels, rng.integers(0, N_REPLICAS, N_ROWS))


@dataclass
class Fleet:
    stream: Stream
    leaves: Dict[str, Prometheus]
    central: Prometheus
    targets: List[str]  # replica i's address

    def row_weights(self) -> np.ndarray:
        """Prometheus' extrapolation factor f_i of each row's replica (module docstring)."""
        factors = np.empty(N_REPLICAS)
        for name, leaf in self.leaves.items():
            for index in LEAVES[name]:
                (sample,) = leaf.query(f'count_over_time({naming.PREDICTIONS}_total{{class="0",'
                                       f'instance="{self.targets[index]}"}}[5m])')
                samples = float(sample["value"][1])
                assert samples >= 3, samples
                factors[index] = 1 + 1 / (2 * (samples - 1))
        return factors[self.stream.replica]

    def diagnostics(self) -> str:
        parts = [f"{name} log:\n{tail_file(p.log_path, 10)}" for name, p in self.leaves.items()]
        parts.append(f"central log:\n{tail_file(self.central.log_path, 10)}")
        return "\n".join(parts)


def _leaf_config(name: str, targets: List[str]) -> Dict[str, Any]:
    config = yaml.safe_load(LEAF_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    assert "prometheus" in config["global"]["external_labels"]
    config["global"]["external_labels"]["prometheus"] = name  # unique per server
    config["rule_files"] = [str(p) for p in RULE_FILES]
    (job,) = [dict(j) for j in config["scrape_configs"] if j["job_name"] == JOB]
    job.pop("file_sd_configs")
    job["static_configs"] = [{"targets": targets, "labels": {"env": ENV}}]
    config["scrape_configs"] = [job]
    return config


def _central_config(leaves: List[str]) -> Dict[str, Any]:
    config = yaml.safe_load(CENTRAL_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(p) for p in RULE_FILES]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": leaves}]
    return config


def _value(prometheus: Prometheus, expr: str) -> Dict[str, float]:
    """{label of interest or "": value} of an instant query."""
    out = {}
    for sample in prometheus.query(expr):
        labels = sample["metric"]
        key = labels.get("class", labels.get("le", labels.get("feature", "")))
        out[key] = float(sample["value"][1])
    return out


def _feed(monitors: List[ModelMonitor], stream: Stream) -> None:
    for index, monitor in enumerate(monitors):
        rows = np.flatnonzero(stream.replica == index)
        for start in range(0, len(rows), BATCH):
            part = rows[start:start + BATCH]
            monitor.observe(stream.proba[part], features=stream.features[part],
                            labels=stream.labels[part])
        monitor.flush()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    binary = require_binary("prometheus")
    workdir = tmp_path_factory.mktemp("fleet-e2e")
    stream = make_stream()
    monitors, servers, started = [], [], []
    try:
        for index in range(N_REPLICAS):
            monitor = ModelMonitor(model=MODEL, n_classes=10, window_seconds=1,
                                   feature_names=["p0", "p1", "p2", "p3"],
                                   registry=CollectorRegistry(), random_state=index)
            monitors.append(monitor)
            servers.append(monitor.start_http_server(port=0))
        targets = [s.url[len("http://"):-len("/metrics")] for s in servers]
        leaves = {}
        for name, replicas in LEAVES.items():
            (workdir / name).mkdir()
            leaf = Prometheus(binary, _leaf_config(name, [targets[i] for i in replicas]),
                              workdir / name)
            leaf.start()
            started.append(leaf)
            leaves[name] = leaf
        (workdir / "central").mkdir()
        central = Prometheus(
            binary, _central_config([p.url[len("http://"):] for p in leaves.values()]),
            workdir / "central")
        central.start()
        started.append(central)
        fleet = Fleet(stream, leaves, central, targets)

        # Every replica's counters scraped at 0 before any row: each rate() then starts
        # from a zero, as in production where the exporter starts with the service.
        def zeros_scraped() -> bool:
            return all(
                len(leaf.query(f'{naming.PREDICTIONS}_total{{class="0"}} == 0'))
                == len(LEAVES[name]) for name, leaf in leaves.items())

        wait_for(zeros_scraped, 90, lambda: "replicas not scraped\n" + fleet.diagnostics())
        _feed(monitors, stream)

        # The leaves have scraped every replica's final counters...
        def final_scraped() -> bool:
            for name, leaf in leaves.items():
                for index in LEAVES[name]:
                    expected = int((stream.replica == index).sum())
                    got = leaf.query(f'sum(mlwatcher_predictions_total{{instance='
                                     f'"{targets[index]}"}})')
                    if not got or float(got[0]["value"][1]) != expected:
                        return False
            return True

        wait_for(final_scraped, 90, lambda: "final counters not scraped\n"
                 + fleet.diagnostics())

        # ... a few more times (a replica lives for more than two scrapes)...
        def scraped_often() -> bool:
            return all(
                float(sample["value"][1]) >= MIN_SAMPLES
                for leaf in leaves.values() for sample in leaf.query(
                    f'count_over_time({naming.PREDICTIONS}_total{{class="0"}}[5m])'))

        wait_for(scraped_often, 90, lambda: "replicas not scraped often\n"
                 + fleet.diagnostics())
        # ... and then the stream ends: the replicas stop.
        for server in servers:
            server.shutdown()
        servers = []
        yield fleet
    finally:
        for server in servers:
            server.shutdown()
        for monitor in monitors:
            monitor.close()
        for prometheus in started:
            prometheus.stop()


def _settled(fleet: Fleet, exprs: List[str]) -> Dict[str, Dict[str, float]]:
    """The central's values of `exprs` once they stop changing (the replicas stopped,
    so every rate over their life is constant) and the leaves' stale series are gone."""
    last: Dict[str, Dict[str, float]] = {}

    def stable() -> Dict[str, Dict[str, float]]:
        nonlocal last
        now = {expr: _value(fleet.central, expr) for expr in exprs}
        done = all(now[e] for e in exprs) and now == last
        last = now
        return now if done else {}

    return wait_for(stable, 120, lambda: f"central values not stable: {last}\n"
                    + fleet.diagnostics(), interval=2.0)


@pytest.fixture(scope="module")
def central(fleet: Fleet) -> Dict[str, Dict[str, float]]:
    sel = f'{{job="{JOB}",env="{ENV}",model="{MODEL}"}}'
    exprs = [f"model:mlwatcher_accuracy:ratio_rate5m{sel}",
             f"model_class:mlwatcher_recall:ratio_rate5m{sel}",
             f"model_class:mlwatcher_predicted_class:ratio_rate5m{sel}",
             f"model:mlwatcher_prediction_pred1:mean_rate5m{sel}",
             f"model:mlwatcher_prediction_pred1:p50_rate5m{sel}",
             f"model:mlwatcher_labeled_predictions:increase5m{sel}",
             f"model_class:mlwatcher_precision:ratio_rate5m{sel}",
             f"model_class:mlwatcher_f1:ratio_rate5m{sel}",
             f"model_feature:mlwatcher_feature:mean_rate5m{sel}",
             f"model_feature:mlwatcher_feature:std_rate5m{sel}"]
    values = _settled(fleet, exprs)
    return {expr.split("{")[0]: value for expr, value in values.items()}


def test_central_holds_only_the_fleet_sums(fleet: Fleet,
                                           central: Dict[str, Dict[str, float]]) -> None:
    assert not fleet.central.query("mlwatcher_predictions_total"), "raw series federated"
    # The fleet sums of both servers, told apart by their external label.
    leaves = {s["metric"]["prometheus"] for s in fleet.central.query(
        "model_class:mlwatcher_labeled_predictions:rate5m")}
    assert leaves == set(LEAVES)


def test_fleet_accuracy_and_recall_equal_scikit_learn(fleet: Fleet,
                                                      central: Dict[str, Dict[str, float]]
                                                      ) -> None:
    from sklearn.metrics import accuracy_score, recall_score

    stream = fleet.stream
    weights = fleet.row_weights()
    labeled = ~np.isnan(stream.labels)
    y_true = stream.labels[labeled].astype(int)
    y_pred = stream.proba[labeled].argmax(axis=1)
    w = weights[labeled]
    expected = accuracy_score(y_true, y_pred, sample_weight=w)
    got = central["model:mlwatcher_accuracy:ratio_rate5m"][""]
    assert got == pytest.approx(expected, rel=TOLERANCE)
    # Not what one leaf alone says: the central pools both.
    leaf_a = _value(fleet.leaves["leaf-a"], "model:mlwatcher_accuracy:ratio_rate5m")[""]
    in_a = labeled & np.isin(stream.replica, LEAVES["leaf-a"])
    assert leaf_a == pytest.approx(accuracy_score(
        stream.labels[in_a].astype(int), stream.proba[in_a].argmax(axis=1),
        sample_weight=weights[in_a]), rel=TOLERANCE)
    assert abs(leaf_a - got) > 1e-6
    recalls = recall_score(y_true, y_pred, labels=range(10), average=None, zero_division=0,
                           sample_weight=w)
    got_recall = central["model_class:mlwatcher_recall:ratio_rate5m"]
    assert set(got_recall) == {str(c) for c in range(10)}
    for cls in range(10):
        assert got_recall[str(cls)] == pytest.approx(recalls[cls], rel=TOLERANCE), cls
    unweighted = accuracy_score(y_true, y_pred)
    plain_recalls = recall_score(y_true, y_pred, labels=range(10), average=None,
                                 zero_division=0)
    recall_gap = max(abs(got_recall[str(c)] - plain_recalls[c]) for c in range(10))
    print(f"\nfleet accuracy {got:.9f} = scikit-learn weighted by the extrapolation "
          f"factors {sorted(set(np.round(weights, 5)))} ({expected:.9f}); unweighted "
          f"{unweighted:.9f}; leaf-a alone {leaf_a:.6f}; largest recall difference from "
          f"the unweighted {recall_gap:.1e}")


def test_fleet_class_shares_and_mean_confidence_equal_numpy(
        fleet: Fleet, central: Dict[str, Dict[str, float]]) -> None:
    stream = fleet.stream
    weights = fleet.row_weights()
    predicted = stream.proba.argmax(axis=1)
    shares = np.bincount(predicted, weights=weights, minlength=10) / weights.sum()
    got = central["model_class:mlwatcher_predicted_class:ratio_rate5m"]
    for cls in range(10):
        assert got[str(cls)] == pytest.approx(shares[cls], rel=TOLERANCE, abs=1e-12), cls
    pred1 = stream.proba.max(axis=1)
    assert central["model:mlwatcher_prediction_pred1:mean_rate5m"][""] == pytest.approx(
        np.average(pred1, weights=weights), rel=TOLERANCE)
    # The fleet's labeled rows in 5 minutes (rate x 300): every labeled row, extrapolated.
    labeled = ~np.isnan(stream.labels)
    assert central["model:mlwatcher_labeled_predictions:increase5m"][""] == pytest.approx(
        weights[labeled].sum(), rel=TOLERANCE)


def test_fleet_median_confidence_within_one_bucket(fleet: Fleet,
                                                   central: Dict[str, Dict[str, float]]
                                                   ) -> None:
    edges = np.array(sorted(float(e) for e in _value(
        fleet.central, 'sum by (le) (model_le:mlwatcher_prediction_pred1_bucket:rate5m)')
        if e != "+Inf"))
    assert len(edges) >= 5
    exact = float(np.median(fleet.stream.proba.max(axis=1)))
    got = central["model:mlwatcher_prediction_pred1:p50_rate5m"][""]
    bucket_of = lambda v: int(np.searchsorted(edges, v, side="left"))  # noqa: E731
    assert abs(bucket_of(got) - bucket_of(exact)) <= 1, (got, exact, edges)
    print(f"\nfleet median pred1 {got:.4f} from the histogram, exact {exact:.4f}, "
          f"edges {edges.tolist()}")


def test_fleet_precision_and_f1_equal_scikit_learn(fleet: Fleet,
                                                   central: Dict[str, Dict[str, float]]
                                                   ) -> None:
    from sklearn.metrics import f1_score, precision_score

    stream = fleet.stream
    weights = fleet.row_weights()
    labeled = ~np.isnan(stream.labels)
    y_true = stream.labels[labeled].astype(int)
    y_pred = stream.proba[labeled].argmax(axis=1)
    w = weights[labeled]
    every = list(range(10))
    precisions = precision_score(y_true, y_pred, labels=every, average=None,
                                 zero_division=0, sample_weight=w)
    f1s = f1_score(y_true, y_pred, labels=every, average=None, zero_division=0,
                   sample_weight=w)
    got_precision = central["model_class:mlwatcher_precision:ratio_rate5m"]
    got_f1 = central["model_class:mlwatcher_f1:ratio_rate5m"]
    predicted = set(y_pred.tolist())
    assert len(predicted) >= 8  # most classes are predicted among the labeled rows
    for cls in every:
        if cls in predicted:  # else 0 / 0: NaN in PromQL, 0 in scikit-learn
            assert got_precision[str(cls)] == pytest.approx(precisions[cls], rel=TOLERANCE)
        assert got_f1[str(cls)] == pytest.approx(f1s[cls], rel=TOLERANCE, abs=1e-12), cls
    # What the window gauges' correct / predicted would give with 30 % labeled is far off.
    all_predicted = np.bincount(stream.proba.argmax(axis=1), minlength=10)
    correct = np.bincount(y_true[y_true == y_pred], minlength=10)
    naive = correct / np.maximum(all_predicted, 1)
    assert max(abs(naive[c] - precisions[c]) for c in predicted) > 0.3
    print(f"\nfleet precision {[round(got_precision[str(c)], 4) for c in every]}, "
          f"F1 {[round(got_f1[str(c)], 4) for c in every]} = scikit-learn's (weighted)")


def test_fleet_feature_mean_and_std_equal_numpy(fleet: Fleet,
                                                central: Dict[str, Dict[str, float]]
                                                ) -> None:
    weights = fleet.row_weights()
    means = central["model_feature:mlwatcher_feature:mean_rate5m"]
    stds = central["model_feature:mlwatcher_feature:std_rate5m"]
    assert set(means) == set(stds) == {"p0", "p1", "p2", "p3"}
    for column in range(4):
        values = fleet.stream.features[:, column]
        mean = np.average(values, weights=weights)
        std = np.sqrt(np.average((values - mean) ** 2, weights=weights))
        assert means[f"p{column}"] == pytest.approx(mean, rel=TOLERANCE)
        # Sum of squares minus the squared mean: a cancellation of a few digits.
        assert stds[f"p{column}"] == pytest.approx(std, rel=1e-7)
