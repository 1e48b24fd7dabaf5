"""Bulk processing per row, the compiled kernel against the numpy path, in one run.

Each measurement runs in a fresh process (``MLWATCHER_PURE`` is read at import), the
implementations alternated, and reports the thread CPU of ``monitor.flush()`` per row after
staging whole stages of calls of 1, 100 and 10,000 rows (10 classes, 20 float features,
integer labels), the window statistics excluded (one long window). Usage::

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
monitor.observe_quietly(proba, features, labels)
monitor.flush()
spent = []
for _ in range(5):
    for _ in range(calls):
        monitor.observe_quietly(proba, features, labels)
    start = time.thread_time()
    monitor.flush()
    spent.append(time.thread_time() - start)
print(json.dumps(min(spent) / (calls * n_rows)))
"""


def _measure(n_rows: int, env: Dict[str, str]) -> float:
    # From a neutral directory: with ``-c`` the current one comes first on sys.path.
    out = subprocess.run([sys.executable, "-c", _CHILD, str(n_rows), "30000"], env=env,
                         check=True, capture_output=True, text=True,
                         cwd=tempfile.gettempdir())
    return float(json.loads(out.stdout))


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--against", default=None)
    args = parser.parse_args(argv)
    variants = {"compiled": dict(os.environ, MLWATCHER_PURE="0"),
                "numpy": dict(os.environ, MLWATCHER_PURE="1")}
    if args.against:
        variants["other checkout"] = dict(os.environ, PYTHONPATH=args.against)
    print(f"load average: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| rows per call | " + " | ".join(variants) + " |")
    print("|---" * (len(variants) + 1) + "|")
    for n_rows in (1, 100, 10_000):
        per_row: Dict[str, List[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, env in variants.items():
                per_row[name].append(_measure(n_rows, env))
        cells = [f"{statistics.median(values) * 1e9:.0f} ns" for values in per_row.values()]
        print(f"| {n_rows:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
