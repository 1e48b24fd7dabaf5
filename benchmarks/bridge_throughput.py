"""Throughput of the Anodot bridge against the fake Anodot server on 127.0.0.1.

Builds a registry of ``--series`` gauges, snapshots it ``--rounds`` times into a fresh
spool, then delivers the spool to the fake server (running in a child process, so it
does not share the bridge's interpreter lock) with the client-side rate limits lifted,
and prints one markdown table row:

    python benchmarks/bridge_throughput.py [--series 5000] [--rounds 20] [--no-fsync]

Snapshot = collect + map + fsync'd spool append; delivery = spool read + HTTP POST of
1000-point batches + acknowledgement (fsync'd). Delivery is bounded by the fake
server's own Python validation of each point; the "bridge CPU" column divides by the
bridge process's CPU time instead, i.e. what the bridge itself could push.
A benchmark, not a test: nothing is
asserted. Real Anodot accounts are limited to a few thousand points per second
(2000/s by default in config/anodot.yml), far below these numbers.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from prometheus_client import CollectorRegistry, Gauge  # noqa: E402

from fake_anodot import FakeAnodot  # noqa: E402
from mlwatcher_exporter.bridge.anodot import AnodotBridge  # noqa: E402
from mlwatcher_exporter.bridge.config import SendOptions, SpoolOptions  # noqa: E402


def _serve(conn: "multiprocessing.connection.Connection") -> None:
    """Run the fake server in its own process (its own core and GIL), report what it accepted."""
    with FakeAnodot() as fake:
        conn.send((fake.url, fake.token))
        conn.recv()  # wait for "stop"
        conn.send((len(fake.accepted), len(fake.rejected)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=5000, help="gauge series (default 5000)")
    parser.add_argument("--rounds", type=int, default=20, help="snapshots (default 20)")
    parser.add_argument("--no-fsync", action="store_true", help="spool without fsync")
    args = parser.parse_args()

    registry = CollectorRegistry()
    gauge = Gauge("mlwatcher_feature", "bench", ["model", "feature", "stat"], registry=registry)
    for i in range(args.series):
        gauge.labels("digits", f"f{i // 9}", f"s{i % 9}").set(i * 0.5)
    sending = SendOptions(points_per_second=1e9, requests_per_minute=1e9, timeout_seconds=30)
    spool = SpoolOptions(fsync=not args.no_fsync, max_bytes=2**34, segment_bytes=2**26,
                         max_age_seconds=1e9)
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=_serve, args=(child,), daemon=True)
    server.start()
    try:
        url, token = parent.recv()
        with tempfile.TemporaryDirectory() as tmp:
            clock = [time.time()]
            bridge = AnodotBridge(url, token, tmp, registry, sending=sending, spool=spool,
                                  metrics_registry=None, _clock=lambda: clock[0])
            try:
                start = time.perf_counter()
                for _ in range(args.rounds):
                    bridge.snapshot()
                    clock[0] += 1  # one snapshot per second of point time
                snapshot_s = time.perf_counter() - start
                start, cpu = time.perf_counter(), time.process_time()
                result = bridge.flush()
                deliver_s = time.perf_counter() - start
                deliver_cpu = time.process_time() - cpu
            finally:
                bridge.close()
        parent.send("stop")
        accepted, rejected = parent.recv()
    finally:
        server.join(10)
        if server.is_alive():
            server.terminate()
    total = args.series * args.rounds
    if result.pending or accepted != total or rejected:
        print(f"incomplete run: pending={result.pending} accepted={accepted} rejected={rejected}",
              file=sys.stderr)
        return 1
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print("| points | fsync | snapshot (points/s) | delivery (points/s) "
          "| delivery, bridge CPU only (points per CPU-second) | end to end (points/s) | machine |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {total} | {'off' if args.no_fsync else 'on'} | {total / snapshot_s:,.0f} "
          f"| {total / deliver_s:,.0f} | {total / deliver_cpu:,.0f} "
          f"| {total / (snapshot_s + deliver_s):,.0f} | {machine} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
