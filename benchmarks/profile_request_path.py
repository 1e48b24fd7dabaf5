"""Where a monitored call's time goes: the request path taken apart, and the bulk side
profiled (diagnostics for issue 8; ``benchmarks/run.py`` holds the figures).

Run with ``.venv/bin/python benchmarks/profile_request_path.py [--rows 1 100 10000]``.
Each step of the request path is timed alone, in the state a real call finds it (a
monitor that learned its schema, a window whose reservoir is full), as the median of
many interleaved blocks; the steps add up to about the whole call, which is timed too.
The bulk side (``monitor.flush()`` of a stage of staged batches, the window statistics,
a scrape) is profiled with cProfile, top functions by own time.

Unlike ``run.py`` this script reads the monitor's private parts: it is a microscope.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from run import fill_window, fmt_time, gc_off, new_monitor, table, workload  # noqa: E402

from mlwatcher_exporter import decorator  # noqa: E402

perf = time.perf_counter_ns


def median_per_call(funcs: Sequence[Callable[[], Any]], inner: int, repeats: int,
                    after: Optional[Callable[[], Any]] = None) -> List[float]:
    """Median seconds per call of each function, interleaved blocks of `inner` calls;
    `after` runs untimed after every block."""
    times: List[List[float]] = [[] for _ in funcs]
    with gc_off():
        for r in range(repeats):
            for k in range(len(funcs)):
                i = (k + r) % len(funcs)
                func = funcs[i]
                start = perf()
                for _ in range(inner):
                    func()
                times[i].append((perf() - start) / inner * 1e-9)
                if after is not None:
                    after()
    return [statistics.median(t) for t in times]


def request_path(n: int, repeats: int) -> Tuple[str, Dict[str, float]]:
    """The steps of one decorated call with features and labels, timed alone."""
    _, X, y = workload(n, seed=n)
    monitor = new_monitor(f"profile{n}")

    proba = workload(n, seed=n + 1)[0]

    def stub(X: np.ndarray) -> np.ndarray:
        return proba

    watched = monitor.watch(stub)
    fill_window(monitor, 20_000)
    intake, staging = monitor._intake, monitor._staging
    key = id(monitor)
    observing_var = decorator._OBSERVING
    stage = staging._fresh_stage()
    assert stage is not None
    threshold = monitor.threshold
    inner = max(1, min(200, 20_000 // n))

    def empty() -> None:
        pass

    def bare() -> Any:
        return stub(X)

    def whole() -> Any:
        with monitor.labels(y):
            return watched(X)

    def labels_block() -> None:
        with monitor.labels(y):
            pass

    def guard() -> None:  # the watch wrapper's re-entrancy guard around the call
        observing = observing_var.get()
        if key in observing:
            return
        token = observing_var.set(observing + (key,))
        try:
            stub(X)
        finally:
            observing_var.reset(token)

    if not isinstance(observing_var.get(), tuple):  # an older guard: a frozenset

        def guard() -> None:  # noqa: F811
            observing = observing_var.get()
            if key in observing:
                return
            token = observing_var.set(observing | {key})
            try:
                stub(X)
            finally:
                observing_var.reset(token)

    def find_features() -> None:
        args = (X,)
        if args and type(args[0]) is np.ndarray and args[0].ndim == 2:
            return

    def current_labels() -> None:
        monitor.current_labels()

    def start_worker() -> None:
        monitor._start_worker()

    def observe_quietly() -> None:
        monitor.observe_quietly(proba, X, y)

    def offer() -> None:
        intake.offer(proba, X, y, threshold, False)

    def check_proba() -> None:
        intake._proba(proba, False)

    def check_features() -> None:
        intake._features(X, n)

    def check_labels() -> None:
        intake._labels(y, n, False)

    def put() -> None:
        staging.put(proba, X, y, 1, threshold, None)

    lock = staging.lock
    clock = staging._clock

    def lock_and_clock() -> None:
        with lock:
            clock()

    def copy_proba() -> None:
        stage.proba[0:n] = proba

    def copy_features() -> None:
        assert stage.features is not None
        stage.features[0:n] = X

    def copy_labels() -> None:
        stage.labels[0:n] = y

    def bookkeeping() -> None:  # Stage.add's per-batch record
        batches: List[Any] = []
        batches.append((n, threshold, True, 1))

    def floor() -> None:
        np.copyto(buf_p, proba)
        np.copyto(buf_x, X)
        np.copyto(buf_y, y)

    buf_p, buf_x, buf_y = np.empty_like(proba), np.empty_like(X), np.empty_like(y)
    steps = [
        ("the loop and a call (empty function)", empty, None),
        ("bare stub call", bare, None),
        ("whole decorated call, labels block included", whole, monitor.flush),
        ("labels block: `with monitor.labels(y): pass`", labels_block, None),
        ("watch wrapper: _OBSERVING get, extend, set, reset, call", guard, None),
        ("features argument check", find_features, None),
        ("monitor.current_labels() (contextvar get)", current_labels, None),
        ("monitor._start_worker()", start_worker, None),
        ("monitor.observe_quietly(...) whole", observe_quietly, monitor.flush),
        ("intake.offer(...) whole", offer, monitor.flush),
        ("  intake._proba: to_proba_table, width check", check_proba, None),
        ("  intake._features: O(1) ndarray checks", check_features, None),
        ("  intake._labels: O(1) ndarray checks", check_labels, None),
        ("  staging.put(...) whole", put, monitor.flush),
        ("    lock + clock()", lock_and_clock, None),
        ("    stage.proba[a:b] = proba", copy_proba, None),
        ("    stage.features[a:b] = X", copy_features, None),
        ("    stage.labels[a:b] = y", copy_labels, None),
        ("    per-batch record: a tuple appended", bookkeeping, None),
        ("copy floor: np.copyto x 3", floor, None),
    ]
    out: Dict[str, float] = {}
    for name, func, after in steps:
        funcs = [empty, func]
        if after is None:
            t = median_per_call(funcs, inner, repeats)
        else:
            t = median_per_call(funcs, inner, repeats, after)
        out[name] = t[1] - (t[0] if func is not empty else 0.0)
    staging.release(stage)
    monitor.close()
    rows = [[name, fmt_time(value)] for name, value in out.items()]
    return table(["step (loop overhead subtracted)", "median per call"], rows), out


def bulk_profile(n: int, calls: int, top: int = 14) -> str:
    """cProfile of ``monitor.flush()`` after `calls` staged calls of `n` rows."""
    _, X, y = workload(n, seed=n)
    proba = workload(n, seed=n + 1)[0]
    monitor = new_monitor(f"bulk{n}")
    watched = monitor.watch(lambda X: proba)
    fill_window(monitor, 200_000)  # a window well past its reservoir: few rows kept
    profiler = cProfile.Profile()
    total = 0.0
    for _ in range(5):
        for _ in range(calls):
            with monitor.labels(y):
                watched(X)
        start = perf()
        profiler.enable()
        monitor.flush()
        profiler.disable()
        total += (perf() - start) * 1e-9
    monitor.close()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    rows = calls * n * 5
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    body = "\n".join(lines[lines.index(next(x for x in lines if "ncalls" in x)):])
    return (f"flush of {calls:,} staged calls of {n:,} rows (a window past 200,000 rows), "
            f"5 times: "
            f"{fmt_time(total / rows)} per row under cProfile\n\n```\n{body}\n```")


def statistics_profile(top: int = 14) -> str:
    """cProfile of one window's statistics (10,000 sampled rows, 20 features)."""
    proba, X, y = workload(20_000)
    monitor = new_monitor("stats")
    monitor.observe(proba, X, y)
    monitor.close_window()  # the first window's statistics import what they need
    monitor.observe(proba, X, y)
    profiler = cProfile.Profile()
    profiler.enable()
    stats_ = monitor.close_window()
    profiler.disable()
    monitor.close()
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).strip_dirs().sort_stats("tottime").print_stats(top)
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    body = "\n".join(lines[lines.index(next(x for x in lines if "ncalls" in x)):])
    assert stats_ is not None
    return (f"close_window() with 20,000 rows staged, compute_seconds "
            f"{fmt_time(stats_.compute_seconds)}\n\n```\n{body}\n```")


def gil_hold(repeats: int = 20) -> str:
    """Longest time the statistics keep another thread from running: a thread that
    sleeps 0.5 ms in a loop measures its wake-up lateness while a window is computed."""
    proba, X, y = workload(20_000)
    monitor = new_monitor("gil")
    late: List[float] = []
    stop = threading.Event()

    def ticker() -> None:
        while not stop.is_set():
            start = perf()
            time.sleep(0.0005)
            late.append((perf() - start) * 1e-9 - 0.0005)

    thread = threading.Thread(target=ticker)
    thread.start()
    time.sleep(0.05)
    baseline = list(late)
    late.clear()
    for _ in range(repeats):
        monitor.observe(proba, X, y)
        monitor.close_window()
    stop.set()
    thread.join()
    monitor.close()
    return (f"A thread sleeping 0.5 ms in a loop wakes late by (p50 / p99 / max): idle "
            f"{fmt_time(float(np.percentile(baseline, 50)))} / "
            f"{fmt_time(float(np.percentile(baseline, 99)))} / {fmt_time(max(baseline))}; "
            f"while windows are observed and computed "
            f"{fmt_time(float(np.percentile(late, 50)))} / "
            f"{fmt_time(float(np.percentile(late, 99)))} / {fmt_time(max(late))}.")


def bulk_numpy_ops(n: int = 10_000, repeats: int = 30) -> str:
    """The numpy calls the bulk processing makes per stage, at `n` rows, each timed
    alone, beside numpy alternatives that give the same numbers."""
    from mlwatcher_exporter.counts import PRED1_EDGES

    proba, X, y = workload(n)
    n_classes = proba.shape[1]
    predicted = proba.argmax(axis=1)
    pred1 = proba.max(axis=1)
    flat = proba.reshape(-1)
    index = np.arange(0, n * n_classes, n_classes)
    dest = np.empty_like(proba)
    dest_x = np.empty_like(X)

    def hist_search() -> Any:
        return np.bincount(np.searchsorted(PRED1_EDGES, pred1, side="left"),
                           minlength=PRED1_EDGES.size + 1)

    def hist_compare() -> Any:
        above = [np.count_nonzero(pred1 > edge) for edge in PRED1_EDGES]
        cumulative = np.array([n, *above])
        return np.append(cumulative[:-1] - cumulative[1:], cumulative[-1])

    def correct_masked() -> Any:
        labeled = y >= 0
        labeled.all()
        return (np.bincount(y, minlength=n_classes),
                np.bincount(y[y == predicted], minlength=n_classes))

    def correct_one_bincount() -> Any:
        both = np.bincount(y + n_classes * (y == predicted), minlength=2 * n_classes)
        return both[:n_classes] + both[n_classes:], both[n_classes:]

    assert (hist_search() == hist_compare()).all()
    assert all((a == b).all() for a, b in zip(correct_masked(), correct_one_bincount()))
    ops = [
        ("predicted = proba.argmax(axis=1)", lambda: proba.argmax(axis=1)),
        ("top probability: flat.take(index + predicted)", lambda: flat.take(index + predicted)),
        ("(for comparison) proba.max(axis=1)", lambda: proba.max(axis=1)),
        ("validity: proba.min() and proba.max()", lambda: (proba.min(), proba.max())),
        ("class counts: np.bincount(predicted)",
         lambda: np.bincount(predicted, minlength=n_classes)),
        ("pred1 histogram: searchsorted + bincount (as now)", hist_search),
        ("pred1 histogram: 12 x count_nonzero(pred1 > edge), same counts", hist_compare),
        ("labels: >= 0, all, two bincounts with a mask (as now)", correct_masked),
        ("labels: one bincount of y + n_classes * (y == predicted), same counts",
         correct_one_bincount),
        ("pred1.sum()", lambda: pred1.sum()),
        ("(floor) np.copyto of proba", lambda: np.copyto(dest, proba)),
        ("(floor) np.copyto of features", lambda: np.copyto(dest_x, X)),
    ]
    names = [name for name, _ in ops]
    times = median_per_call([func for _, func in ops], 1, repeats)
    rows = [[name, fmt_time(t), fmt_time(t / n)] for name, t in zip(names, times)]
    return table(["numpy call", f"per {n:,}-row stage", "per row"], rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[1, 100, 10_000])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args(argv)
    for n in args.rows:
        text, _ = request_path(n, args.repeats)
        print(f"## Request path, {n:,} row(s)\n\n{text}\n")
    for n, calls in ((1, 17_000), (100, 170), (10_000, 3)):
        if n in args.rows:
            print(f"## Bulk processing, {n:,}-row calls\n\n{bulk_profile(n, calls)}\n")
    print(f"## The bulk side's numpy calls\n\n{bulk_numpy_ops()}\n")
    print(f"## Window statistics\n\n{statistics_profile()}\n")
    print(f"## GIL\n\n{gil_hold()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
