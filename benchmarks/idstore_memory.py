"""Memory of the late-label id store at its bound, and its cost per id.

Run with ``.venv/bin/python benchmarks/idstore_memory.py [--max-ids N]``. A monitor is
fed batches of 1,000 predictions with ids until its store holds ``max_ids`` ids (and
then as many again, so that the oldest are evicted), three kinds of ids in turn:
integers, short strings and 36-character UUID strings. The memory the store holds is
measured with tracemalloc: everything allocated while the ids were created, observed
and processed, and still alive once the caller dropped its own references (so the id
objects the store keeps alive are counted, and the stages and window buffers, which
are the same without ids, are measured apart and left out). Also reported: the bulk
cost per recorded id (processing with ids minus the same without) and per joined
label (``observe_labels``), best of three runs.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlwatcher_exporter import ModelMonitor  # noqa: E402

BATCH = 1000


def make_ids(kind: str, start: int, n: int) -> List[object]:
    if kind == "int":
        return list(range(start, start + n))
    if kind == "short str":
        return [f"req-{i}" for i in range(start, start + n)]
    return [str(uuid.UUID(int=i + 1)) for i in range(start, start + n)]


def measure(kind: str, max_ids: int) -> Dict[str, float]:
    """Bytes per id held at the bound, and seconds per recorded id and joined label."""
    proba = np.random.default_rng(0).dirichlet(np.ones(10), BATCH)
    clock = [0.0]

    def run(with_ids: bool, traced: bool) -> Dict[str, float]:
        gc.collect()
        if traced:
            tracemalloc.start()
        monitor = ModelMonitor(model="bench", n_classes=10, registry=None, background=False,
                               reservoir_size=1000, window_seconds=1e9, max_ids=max_ids,
                               _clock=lambda: clock[0])
        record_seconds = 0.0
        for start in range(0, 2 * max_ids, BATCH):
            ids = make_ids(kind, start, BATCH) if with_ids else None
            monitor.observe_quietly(proba, ids=ids)
            began = time.perf_counter()
            monitor.flush()
            record_seconds += time.perf_counter() - began
            del ids
        gc.collect()
        held = 0
        if traced:
            held = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
        late = monitor._pipeline.late
        assert not with_ids or len(late.store) == max_ids
        join = make_ids(kind, 2 * max_ids - BATCH * 10, BATCH * 10)
        began = time.perf_counter()
        monitor.observe_labels(join, np.zeros(len(join), dtype=int))
        join_seconds = (time.perf_counter() - began) / len(join)
        assert not with_ids or late.counts.matched == len(join)
        monitor.close()
        return {"held": held, "record": record_seconds / (2 * max_ids), "join": join_seconds}

    # Memory under tracemalloc; timings without it (it slows every allocation), the
    # best of three runs.
    memory = run(True, True)["held"] - run(False, True)["held"]
    timed = [(run(True, False), run(False, False)) for _ in range(3)]
    return {
        "bytes_per_id": memory / max_ids,
        "record_us": min(full["record"] - bare["record"] for full, bare in timed) * 1e6,
        "join_us": min(full["join"] for full, _ in timed) * 1e6,
    }


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-ids", type=int, default=100_000)
    args = parser.parse_args(argv)
    print(f"id store at its bound: max_ids = {args.max_ids:,}, filled twice over "
          f"(batches of {BATCH})\n")
    print("| ids | bytes per id held | store at the bound | record, µs per id | "
          "join, µs per label |")
    print("|---|---|---|---|---|")
    for kind in ("int", "short str", "uuid str"):
        figures = measure(kind, args.max_ids)
        total = figures["bytes_per_id"] * args.max_ids / 2**20
        print(f"| {kind} | {figures['bytes_per_id']:.0f} | {total:.1f} MiB | "
              f"{figures['record_us']:.2f} | {figures['join_us']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
