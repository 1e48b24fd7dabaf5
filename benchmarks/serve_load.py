"""Load test of ``mlwatcher-exporter serve``: many concurrent producers on loopback.

Starts ``serve`` in its own process (so the clients' Python does not share its GIL),
then for each body format (JSON, NPY) runs `--clients` producer threads, each posting
batches of `--rows` rows over its own keep-alive connection for `--seconds` seconds.
Reports accepted rows per second, request latency percentiles and the error rate side
by side, and checks that the server counted exactly the rows it accepted (nothing
accepted is lost). Not a test: nothing here asserts a timing::

    .venv/bin/python benchmarks/serve_load.py --clients 16 --rows 100 --seconds 10
    .venv/bin/python benchmarks/serve_load.py --quick   # a few seconds, small sizes
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N_CLASSES = 10
N_FEATURES = 20
CONFIG = f"""\
models:
  - model: load
    n_classes: {N_CLASSES}
    window_seconds: 5
    reservoir_size: 10000
serve:
  max_connections: 256
  workers: 4
"""


def start_server(config: Path) -> Tuple[subprocess.Popen, str, int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "mlwatcher_exporter", "serve", "--config", str(config),
         "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = process.stdout.readline() if process.stdout else ""
    if not line.startswith("mlwatcher-exporter serve: models"):
        process.kill()
        raise SystemExit(f"serve did not start: {line!r}")
    url = line.split(" on ", 1)[1].split()[0]
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    return process, host, int(port)


def bodies(rows: int, seed: int) -> Dict[str, Tuple[bytes, str]]:
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(N_CLASSES), size=rows)
    features = rng.normal(size=(rows, N_FEATURES))
    labels = rng.integers(0, N_CLASSES, size=rows)
    document = {"proba": proba.tolist(), "features": features.tolist(),
                "labels": labels.tolist()}
    buffer = io.BytesIO()
    np.savez(buffer, proba=proba, features=features, labels=labels)
    return {"json": (json.dumps(document).encode(), "application/json"),
            "npz": (buffer.getvalue(), "application/x-npz")}


def producer(host: str, port: int, body: bytes, kind: str, until: float,
             latencies: List[float], outcome: Dict[str, int], lock: threading.Lock) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    mine: List[float] = []
    accepted = errors = 0
    while time.perf_counter() < until:
        started = time.perf_counter()
        try:
            conn.request("POST", "/api/v1/models/load/observations", body,
                         {"Content-Type": kind})
            response = conn.getresponse()
            data = response.read()
            if response.status == 200:
                accepted += json.loads(data)["accepted_rows"]
            else:
                errors += 1
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)
        mine.append(time.perf_counter() - started)
    conn.close()
    with lock:
        latencies.extend(mine)
        outcome["accepted"] += accepted
        outcome["errors"] += errors


def counted(host: str, port: int) -> float:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("mlwatcher_predictions_total{"))


def run(clients: int, rows: int, seconds: float) -> List[Dict[str, object]]:
    results = []
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "serve.yml"
        config.write_text(CONFIG)
        for fmt, (body, kind) in bodies(rows, 0).items():
            process, host, port = start_server(config)
            try:
                latencies: List[float] = []
                outcome = {"accepted": 0, "errors": 0}
                lock = threading.Lock()
                until = time.perf_counter() + seconds
                threads = [threading.Thread(target=producer, args=(
                    host, port, body, kind, until, latencies, outcome, lock))
                    for _ in range(clients)]
                started = time.perf_counter()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                elapsed = time.perf_counter() - started
                server_rows = counted(host, port)
            finally:
                process.terminate()
                process.wait(timeout=30)
            lat = np.array(latencies) * 1000
            results.append({
                "format": fmt, "body_bytes": len(body), "requests": len(latencies),
                "rows_per_second": outcome["accepted"] / elapsed,
                "p50_ms": float(np.percentile(lat, 50)), "p90_ms": float(np.percentile(lat, 90)),
                "p99_ms": float(np.percentile(lat, 99)),
                "error_rate": outcome["errors"] / max(len(latencies), 1),
                "accepted": outcome["accepted"], "counted": server_rows,
            })
    return results


def markdown(results: List[Dict[str, object]], clients: int, rows: int, seconds: float) -> str:
    lines = [f"{clients} concurrent clients on loopback, batches of {rows} rows "
             f"({N_CLASSES} classes, {N_FEATURES} features, labels), {seconds:g} s per format; "
             f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
             f"{os.getloadavg()[0]:.1f} at the end.", "",
             "| body | bytes | requests | accepted rows/s | p50 ms | p90 ms | p99 ms | "
             "error rate | rows accepted = rows counted |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {'JSON' if r['format'] == 'json' else 'NPZ'} | {r['body_bytes']:,} | "
            f"{r['requests']:,} | {r['rows_per_second']:,.0f} | {r['p50_ms']:.1f} | "
            f"{r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['error_rate']:.2%} | "
            f"{r['accepted']:,} = {r['counted']:,.0f} "
            f"{'yes' if r['accepted'] == r['counted'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main(argv: List[str] = None) -> int:  # type: ignore[assignment]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="2 clients, 1 s per format")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.seconds = 2, 1.0
    results = run(args.clients, args.rows, args.seconds)
    print(markdown(results, args.clients, args.rows, args.seconds))
    return 0 if all(r["accepted"] == r["counted"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
