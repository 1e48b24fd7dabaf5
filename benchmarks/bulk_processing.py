"""The compiled kernel against the numpy path, side by side in one run.

Each measurement runs in a fresh process (``MLWATCHER_PURE`` is read at import), the
implementations alternated, for calls of 1, 100 and 10,000 rows (10 classes, 20 float
features, integer labels):

* *request path*: a ``monitor.watch``-decorated stub model called inside
  ``with monitor.labels(y):``, minus the same stub undecorated (minimum over blocks, per
  call; background worker off, staged rows processed between blocks, untimed);
* *bulk*: the thread CPU of ``monitor.flush()`` per row after staging whole stages of
  such calls, the window statistics excluded (one long window).

Usage::

    python benchmarks/bulk_processing.py [--repeats 5] [--against PATH]

``--against PATH`` adds a third column: the package found at PATH (another checkout),
imported through ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional

_CHILD = r"""
import json, sys, time
import numpy as np
from prometheus_client import CollectorRegistry
from mlwatcher_exporter import ModelMonitor
n_rows, total = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
monitor = ModelMonitor(model="bench", registry=CollectorRegistry(), background=False,
                       window_seconds=1e6, random_state=0)
calls = max(total // n_rows, 1)
proba = rng.dirichlet(np.full(10, 0.3), size=n_rows)
features = rng.normal(size=(n_rows, 20))
labels = rng.integers(0, 10, n_rows)

def stub(X):
    return proba

watched = monitor.watch(stub)
with monitor.labels(labels):
    watched(features)
monitor.flush()

def block(function, n):
    start = time.perf_counter()
    for _ in range(n):
        with monitor.labels(labels):
            function(features)
    return (time.perf_counter() - start) / n

inner = min(calls, 2000)
bare, decorated = [], []
for _ in range(7):
    bare.append(block(stub, inner))
    decorated.append(block(watched, inner))
    monitor.flush()
spent = []
for _ in range(5):
    for _ in range(calls):
        monitor.observe_quietly(proba, features, labels)
    start = time.thread_time()
    monitor.flush()
    spent.append(time.thread_time() - start)
print(json.dumps([min(decorated) - min(bare), min(spent) / (calls * n_rows)]))
"""


def _measure(n_rows: int, env: Dict[str, str], total: int) -> List[float]:
    # From a neutral directory: with ``-c`` the current one comes first on sys.path.
    out = subprocess.run([sys.executable, "-c", _CHILD, str(n_rows), str(total)], env=env,
                         check=True, capture_output=True, text=True,
                         cwd=tempfile.gettempdir())
    return [float(value) for value in json.loads(out.stdout)]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--against", default=None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    args = parser.parse_args(argv)
    total, sizes = (200, (1, 100)) if args.quick else (30_000, (1, 100, 10_000))
    variants = {"compiled": dict(os.environ, MLWATCHER_PURE="0"),
                "numpy": dict(os.environ, MLWATCHER_PURE="1")}
    if args.against:
        variants["other checkout"] = dict(os.environ, PYTHONPATH=args.against)
    print(f"load average: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    names = list(variants)
    print("| rows per call | " + " | ".join(f"request path, {name}" for name in names)
          + " | " + " | ".join(f"bulk per row, {name}" for name in names) + " |")
    print("|---" * (2 * len(names) + 1) + "|")
    for n_rows in sizes:
        runs: Dict[str, List[List[float]]] = {name: [] for name in names}
        for _ in range(args.repeats):
            for name, env in variants.items():
                runs[name].append(_measure(n_rows, env, total))
        request = [statistics.median(r[0] for r in runs[name]) for name in names]
        bulk = [statistics.median(r[1] for r in runs[name]) for name in names]
        print(f"| {n_rows:,} | " + " | ".join(f"{v * 1e6:.2f} µs" for v in request) + " | "
              + " | ".join(f"{v * 1e9:.0f} ns" for v in bulk) + " |")


if __name__ == "__main__":
    main()
