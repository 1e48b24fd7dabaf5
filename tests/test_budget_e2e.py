"""The series budget on a real Prometheus: a model too wide for its cap keeps its target.

Issue 10, "Prove it": a model with 2,000 continuous features and 500 classes would
publish about 35,000 series (``estimate_series``). Under the default budget
(``fleet.max_series`` 2500) it publishes at most 2500, says in
``mlwatcher_series_dropped_total`` what it left out, and a real Prometheus whose job has
``sample_limit: 10000`` keeps the target: ``up == 1``, no "sample limit exceeded", and
every published series stored; a second job with a limit below that fails with
"sample limit exceeded", so the first one's success is the budget's doing.

One monitor with its own registry, no background thread, one closed window of 300
random rows (every one labeled, so that the per-class scores exist), served on
127.0.0.1; one Prometheus scraping it every second, with an empty rule file list (the
recorded series would also carry the `model` label).
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Set

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from _prometheus import Prometheus, fast_config, tail_file, wait_for
from conftest import require_binary
from mlwatcher_exporter import ModelMonitor, naming
from mlwatcher_exporter.budget import PART_OF, PARTS, estimate_series
from mlwatcher_exporter.fleetcounts import FleetLayout

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "prometheus.yml"
JOB = "mlwatcher"
MODEL = "wide"
N_CLASSES = 500
N_FEATURES = 2000
N_ROWS = 300
# The default budget. 2500 series per model stay well under the job's sample_limit of
# 10000, so the default needs no change here; a scrape holding several such models
# would need max_series <= sample_limit / models (docs/scaling.md).
MAX_SERIES = FleetLayout().max_series
SAMPLE_LIMIT = 10_000
# A second job on the same target with a limit below what the model publishes: its
# scrapes must fail, so that the first job's success says something.
TIGHT_JOB = "mlwatcher-tight"
TIGHT_LIMIT = MAX_SERIES // 2
SEED = 10

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


@dataclass
class Page:
    """One scrape of the model's /metrics, as the exporter served it."""

    series: int  # sample lines with model="wide"
    by_part: Dict[str, int]  # those lines per budget part ("core": the rest)
    classes: Dict[str, Set[str]]  # per part, the `class` label values on the page
    values: Dict[str, Dict[str, float]]  # the budget's own series, by `family` or ""


@dataclass
class Served:
    page: Page
    target: str  # host:port
    url: str


def _part(family: str) -> str:
    """The budget part of a metric family (its name as the parser gives it)."""
    return PART_OF.get(family, "core")


def read_page(url: str) -> Page:
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    series = 0
    by_part = {part: 0 for part in ("core",) + PARTS}
    classes: Dict[str, Set[str]] = {part: set() for part in by_part}
    values: Dict[str, Dict[str, float]] = {}
    budget = {naming.PUBLISHED_SERIES, naming.SERIES_LIMIT, naming.SERIES_DROPPED + "_total"}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model") != MODEL:
                continue
            series += 1
            part = _part(family.name)
            by_part[part] += 1
            if "class" in sample.labels:
                classes[part].add(sample.labels["class"])
            if sample.name in budget:
                values.setdefault(sample.name, {})[sample.labels.get("family", "")] = (
                    sample.value)
    return Page(series, by_part, classes, values)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    rng = np.random.default_rng(SEED)
    # A long window: with background=False a scrape closes a due window, and an empty
    # next window would publish other series than the one checked here.
    monitor = ModelMonitor(model=MODEL, n_classes=N_CLASSES,
                           feature_names=[f"x{i}" for i in range(N_FEATURES)],
                           window_seconds=3600, reservoir_size=100, background=False,
                           registry=CollectorRegistry(), random_state=SEED)
    server = None
    try:
        monitor.observe(rng.dirichlet(np.ones(N_CLASSES), N_ROWS),
                        features=rng.normal(size=(N_ROWS, N_FEATURES)),
                        labels=rng.integers(0, N_CLASSES, N_ROWS))
        monitor.close_window()
        server = monitor.start_http_server(port=0)
        assert server.url.startswith("http://127.0.0.1:"), server.url
        # This first scrape also builds the window's families once (later scrapes reuse
        # them), so that Prometheus' 1 s scrape timeout meets the quick ones.
        page = read_page(server.url)
        yield Served(page, server.url[len("http://"):-len("/metrics")], server.url)
    finally:
        if server is not None:
            server.shutdown()
        monitor.close()


def test_page_stays_under_the_cap_and_reports_what_was_dropped(served: Served) -> None:
    page = served.page
    estimate = estimate_series(N_CLASSES, N_FEATURES, 0, 10, FleetLayout())
    assert sum(estimate.values()) > 30_000  # far beyond the cap without the budget
    assert page.values[naming.SERIES_LIMIT][""] == MAX_SERIES
    assert page.series <= MAX_SERIES
    assert page.values[naming.PUBLISHED_SERIES][""] == page.series
    dropped = page.values[naming.SERIES_DROPPED + "_total"]
    assert set(dropped) == set(PARTS)
    # The core is never cut, and is exactly what estimate_series says.
    assert page.by_part["core"] == estimate["core"]
    # Each part: what is on the page plus what the budget counts as dropped is the
    # estimate; the per-class gauges are cut class by class from the end, and once a
    # part is cut the later ones are left out whole.
    for part in PARTS:
        assert page.by_part[part] + dropped[part] == estimate[part], part
    kept = page.classes["class_statistics"]
    assert 0 < len(kept) < N_CLASSES
    assert kept == {str(c) for c in range(len(kept))}  # the first classes, column order
    assert dropped["class_statistics"] == 6 * (N_CLASSES - len(kept))
    assert dropped["feature_counters"] == 5 * N_FEATURES
    assert dropped["feature_statistics"] == (len(naming.STATS) + 1) * N_FEATURES
    assert dropped["confusion_matrix"] == dropped["feature_histograms"] == 0
    assert page.by_part["feature_counters"] == page.by_part["feature_statistics"] == 0


def _prometheus_config(target: str) -> dict:
    config = fast_config(CONFIG, [], JOB, target)
    (job,) = config["scrape_configs"]
    job.pop("file_sd_configs", None)
    job["sample_limit"] = SAMPLE_LIMIT
    config["scrape_configs"].append(dict(job, job_name=TIGHT_JOB, sample_limit=TIGHT_LIMIT))
    return config


def test_prometheus_with_sample_limit_keeps_the_target(
        served: Served, tmp_path_factory: pytest.TempPathFactory) -> None:
    binary = require_binary("prometheus")
    workdir = tmp_path_factory.mktemp("budget-e2e")
    prometheus = Prometheus(binary, _prometheus_config(served.target), workdir)
    errors: List[str] = []
    try:
        prometheus.start()

        def target(job: str) -> dict:
            targets = prometheus.api("targets")["activeTargets"]
            ours = [t for t in targets if t["labels"].get("job") == job]
            return ours[0] if ours else {}

        def healthy() -> bool:
            ours = target(JOB)
            if ours.get("lastError"):
                errors.append(ours["lastError"])
            return ours.get("health") == "up" and not ours["lastError"]

        def diagnostics() -> str:
            return (f"target errors {errors[-5:]}\nprometheus log:\n"
                    f"{tail_file(prometheus.log_path)}")

        wait_for(healthy, 90, lambda: "target not up\n" + diagnostics())
        assert not [e for e in errors if "sample limit" in e], diagnostics()
        published = served.page.series
        assert TIGHT_LIMIT < published
        tight = wait_for(lambda: "sample limit exceeded" in target(TIGHT_JOB).get(
            "lastError", "") and target(TIGHT_JOB), 30,
            lambda: f"{TIGHT_JOB}: {target(TIGHT_JOB)}\n" + diagnostics())
        assert tight["health"] == "down"
        instance = f'job="{JOB}",instance="{served.target}"'

        def up(job: str) -> List[float]:
            return [float(s["value"][1]) for s in prometheus.query(f'up{{job="{job}"}}')]

        # Waited for rather than read once: on a loaded machine one scrape of the
        # healthy job may still time out (1 s) now and then.
        wait_for(lambda: up(JOB) == [1.0], 30, lambda: f"up {up(JOB)}\n" + diagnostics())
        assert up(TIGHT_JOB) == [0.0]

        def stored() -> float:
            found = prometheus.query(f'count({{model="{MODEL}",{instance}}})')
            return float(found[0]["value"][1]) if found else 0.0

        # The scrape that made the target healthy is stored whole.
        assert wait_for(lambda: stored() == published, 30,
                        lambda: f"count {stored()} != published {published}\n"
                        + diagnostics())
        (scraped,) = prometheus.query(f"scrape_samples_scraped{{{instance}}}")
        assert float(scraped["value"][1]) == published <= SAMPLE_LIMIT
        # The tight job's failed scrapes store nothing: one series each, of JOB.
        (gauge,) = prometheus.query(f'{naming.PUBLISHED_SERIES}{{model="{MODEL}"}}')
        assert float(gauge["value"][1]) == published
        dropped = {s["metric"]["family"]: float(s["value"][1]) for s in prometheus.query(
            f'{naming.SERIES_DROPPED}_total{{model="{MODEL}"}}')}
        assert dropped == served.page.values[naming.SERIES_DROPPED + "_total"]
        print(f"\n{published} series published (cap {MAX_SERIES}, sample_limit "
              f"{SAMPLE_LIMIT}), dropped {dropped}; target up; with sample_limit "
              f"{TIGHT_LIMIT}: {tight['lastError']!r}")
    finally:
        prometheus.stop()
