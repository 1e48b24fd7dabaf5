"""Per-window cost of drift and label-free estimation (docs/drift.md).

    .venv/bin/python benchmarks/drift_cost.py [--rows 10000] [--repeats 7] [--quick]

One window of 10,000 sampled rows x 30 features (25 continuous, 5 categorical) and 10
classes, judged against a reference profile of 10,000 rows: every method of every
feature, the prediction drift and the CBPE estimates (what the exporter does once per
window, off the request path). Beside it, scipy computing the same statistics on the
same data (ks_2samp, wasserstein_distance, jensenshannon, chi2_contingency, numpy PSI),
with the reference kept as its 10,000 raw rows. Evidently's drift preset takes ~1.8 s of
wall time for the same shape on this machine (issue 11; not installed here). Prints
min and median wall seconds of each.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlwatcher_exporter.judge import judge_window  # noqa: E402
from mlwatcher_exporter.reference import fit_reference  # noqa: E402
from mlwatcher_exporter.window import WindowSample, predicted_classes  # noqa: E402

N_CONTINUOUS, N_CATEGORICAL, N_CLASSES = 25, 5, 10


def _data(rng: np.random.Generator, rows: int, shift: float):
    continuous = rng.normal(shift, 1.0, size=(rows, N_CONTINUOUS))
    categorical = rng.integers(0, 8, size=(rows, N_CATEGORICAL)).astype(float)
    logits = continuous[:, :N_CLASSES] * 2
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    return np.hstack([continuous, categorical]), proba


def _time(func: Callable[[], object], repeats: int) -> List[float]:
    times = []
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            func()
            times.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return times


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="1000 rows, 2 repeats")
    args = parser.parse_args(argv)
    rows, repeats = (1000, 2) if args.quick else (args.rows, args.repeats)
    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(N_CONTINUOUS)] + [f"k{i}" for i in range(N_CATEGORICAL)]
    ref_x, ref_p = _data(rng, rows, 0.0)
    labels = ref_p.argmax(axis=1)
    profile = fit_reference(ref_p, ref_x, labels, classes=list(range(N_CLASSES)),
                            feature_names=names, categorical_features=names[N_CONTINUOUS:])
    win_x, win_p = _data(rng, rows, 0.2)
    predicted = predicted_classes(win_p, 0.5)
    sample = WindowSample(win_p, predicted, win_x, np.ones(rows, bool), np.full(rows, -1),
                          rows, np.bincount(predicted, minlength=N_CLASSES))

    def ours() -> object:
        return judge_window(sample, profile, feature_names=names)

    def with_scipy() -> object:
        from scipy import stats
        from scipy.spatial.distance import jensenshannon

        out = []
        for column in range(N_CONTINUOUS):
            ref, cur = ref_x[:, column], win_x[:, column]
            edges = np.quantile(ref, np.arange(1, 10) / 10)
            r = np.bincount(np.searchsorted(edges, ref), minlength=10) / ref.size
            c = np.bincount(np.searchsorted(edges, cur), minlength=10) / cur.size
            re, ce = np.where(r > 0, r, 1e-4), np.where(c > 0, c, 1e-4)
            q25, q75 = np.quantile(ref, [0.25, 0.75])
            out.append((np.sum((ce - re) * np.log(ce / re)), jensenshannon(r, c, base=2),
                        stats.ks_2samp(ref, cur).statistic,
                        stats.wasserstein_distance(ref, cur) / (q75 - q25)))
        for column in range(N_CONTINUOUS, N_CONTINUOUS + N_CATEGORICAL):
            r = np.bincount(ref_x[:, column].astype(int), minlength=8).astype(float)
            c = np.bincount(win_x[:, column].astype(int), minlength=8).astype(float)
            rs, cs = r / r.sum(), c / c.sum()
            out.append((np.sum((cs - rs) * np.log(cs / rs)), jensenshannon(rs, cs, base=2),
                        stats.chi2_contingency(np.vstack([r, c]), correction=False)[1]))
        return out

    ours()  # warm: imports, first allocations
    with_scipy()
    mine = _time(ours, repeats)
    theirs = _time(with_scipy, repeats)
    print(f"window {rows} rows x {N_CONTINUOUS + N_CATEGORICAL} features, {N_CLASSES} "
          f"classes, reference {rows} rows, {repeats} repeats")
    print(f"mlwatcher judge_window (all drift methods + prediction drift + CBPE): "
          f"min {min(mine):.4f} s, median {statistics.median(mine):.4f} s")
    print(f"scipy, same feature statistics on raw reference rows:              "
          f"min {min(theirs):.4f} s, median {statistics.median(theirs):.4f} s")
    print("Evidently DataDriftPreset, same shape (issue 11, this machine): ~1.8 s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
