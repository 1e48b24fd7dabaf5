"""The ``anodot-bridge`` and ``anodot-send`` commands.

``mlwatcher_exporter/cli.py`` adds them with :func:`add_commands`; they also run alone::

    python -m mlwatcher_exporter.bridge.cli anodot-bridge --config config/anodot.yml
    python -m mlwatcher_exporter.bridge.cli anodot-send --config config/anodot.yml FILE

The token is read from the environment variable or file named in the configuration,
never from the command line. Exit codes: 0 success, 1 some points not delivered,
2 invalid configuration or arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from typing import List, Optional

from prometheus_client import CollectorRegistry

from ..exposition import MetricsServer, start_http_server
from ..signals import stop_on_signals
from .anodot import AnodotBridge
from .client import AnodotClient
from .config import BridgeConfig, ConfigError, load_config, read_token
from .spool import DeadLetter
from .metrics import BridgeMetrics
from .spool import read_points
from .scrape import ScrapeSource
from .sender import Sender

__all__ = ["add_commands", "run_bridge", "run_send", "main"]

logger = logging.getLogger("mlwatcher_exporter.bridge")

_MAX_PROBLEMS_SHOWN = 20


def add_commands(subparsers: "argparse._SubParsersAction") -> None:
    """Add the ``anodot-bridge`` and ``anodot-send`` subcommands to ``subparsers``."""
    bridge = subparsers.add_parser(
        "anodot-bridge",
        help="forward /metrics of running exporters to Anodot through a durable spool",
        description="Scrape the /metrics targets of the configuration every interval, "
        "spool the points on disk and send them to Anodot. The token comes from the "
        "environment variable or file named in the configuration.",
    )
    bridge.add_argument("--config", required=True, metavar="FILE",
                        help="YAML configuration (see config/anodot.yml)")
    bridge.add_argument("--once", action="store_true",
                        help="scrape once, send everything spooled, exit (1 if points remain)")
    # SUPPRESS: given before the command (mlwatcher-exporter --log-level X ...), it stays.
    bridge.add_argument("--log-level", default=argparse.SUPPRESS,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: INFO")
    bridge.set_defaults(func=run_bridge)

    send = subparsers.add_parser(
        "anodot-send",
        help="send a file of Anodot points (ancestor JSON files, dead letters) to Anodot",
        description="Send the points of FILE (a JSON array, JSON lines as MLWatcher wrote "
        "them, or a dead-letter file) to Anodot, with the rate limits and retries of the "
        "configuration. Refused and undelivered points are written to --failed.",
    )
    send.add_argument("file", metavar="FILE", help="points to send")
    send.add_argument("--config", required=True, metavar="FILE",
                      help="YAML configuration (anodot and sending sections are used)")
    send.add_argument("--max-attempts", type=int, default=5,
                      help="requests per batch before giving up (default: 5)")
    send.add_argument("--failed", default=None, metavar="FILE",
                      help="where refused or undelivered points go (default: FILE.failed.jsonl)")
    send.add_argument("--log-level", default=argparse.SUPPRESS,
                      choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: WARNING")
    send.set_defaults(func=run_send)


def _setup_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mlwatcher_exporter").setLevel(level)


def _load(path: str) -> "tuple[BridgeConfig, str]":
    config = load_config(path)
    return config, read_token(config)


def run_bridge(args: argparse.Namespace) -> int:
    """Run ``anodot-bridge``; return the exit code."""
    _setup_logging(getattr(args, "log_level", None) or "INFO")
    try:
        config, token = _load(args.config)
        if not config.targets:
            raise ConfigError(["scrape.targets: anodot-bridge needs at least one target"],
                              args.config)
    except ConfigError as exc:
        print(f"anodot-bridge: {exc}", file=sys.stderr)
        return 2
    registry = CollectorRegistry()
    source = ScrapeSource(config.targets, config.scrape_timeout_seconds)
    bridge = AnodotBridge(
        config.base_url,
        token,
        config.spool_directory,
        source,
        mapping=config.mapping,
        sending=config.sending,
        spool=config.spool,
        dead_letter=config.dead_letter,
        metrics_registry=registry,
    )
    source.use_metrics(bridge.metrics)
    server: Optional[MetricsServer] = None
    try:
        if args.once:
            bridge.snapshot()
            result = bridge.flush()
            print(f"anodot-bridge: {result.accepted} points accepted, {result.rejected} refused, "
                  f"{result.pending} still spooled")
            return 0 if result.pending == 0 else 1
        if config.metrics_port is not None:
            server = start_http_server(config.metrics_port, config.metrics_address,
                                       registry=registry)
        logger.info("anodot-bridge: %d targets every %ss to %s, spool %s",
                    len(config.targets), config.interval_seconds, bridge.client.url,
                    config.spool_directory)
        with stop_on_signals(threading.Event()) as stop:
            bridge.start(config.interval_seconds)
            stop.wait()
        logger.info("anodot-bridge: stopping, %d points stay spooled", bridge.spool.pending_points)
        return 0
    finally:
        if server is not None:
            server.shutdown()
        bridge.close()


def run_send(args: argparse.Namespace) -> int:
    """Run ``anodot-send``; return the exit code."""
    _setup_logging(getattr(args, "log_level", None) or "WARNING")
    try:
        config, token = _load(args.config)
    except ConfigError as exc:
        print(f"anodot-send: {exc}", file=sys.stderr)
        return 2
    if args.max_attempts < 1:
        print(f"anodot-send: --max-attempts == {args.max_attempts}, must be >= 1", file=sys.stderr)
        return 2
    failed = args.failed or args.file + ".failed.jsonl"
    if os.path.abspath(failed) == os.path.abspath(args.file):
        print("anodot-send: --failed must differ from FILE", file=sys.stderr)
        return 2
    try:
        loaded = read_points(args.file)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"anodot-send: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    for number, problem in loaded.problems[:_MAX_PROBLEMS_SHOWN]:
        print(f"anodot-send: {args.file}:{number}: skipped, {problem}", file=sys.stderr)
    if len(loaded.problems) > _MAX_PROBLEMS_SHOWN:
        print(f"anodot-send: ... {len(loaded.problems) - _MAX_PROBLEMS_SHOWN} more lines skipped",
              file=sys.stderr)
    # Anodot wants each series in time order; a stable sort keeps the file's order otherwise.
    points = sorted(loaded.points, key=lambda p: p["timestamp"])
    dead = DeadLetter(failed, max_bytes=2**62)
    client = AnodotClient(config.base_url, token, config.sending.timeout_seconds)
    sender = Sender(client, config.sending, BridgeMetrics(registry=None), dead)
    accepted = refused = undelivered = 0
    size = config.sending.batch_size
    try:
        for start in range(0, len(points), size):
            chunk = points[start:start + size]
            result = sender.deliver(chunk, max_attempts=args.max_attempts)
            assert result is not None
            if result.kind == "retry":
                rest = points[start:]
                dead.write(rest, "undelivered", result.status, None, f"gave up: {result.reason}")
                undelivered = len(rest)
                break
            accepted += result.accepted
            refused += result.rejected
    finally:
        client.close()
    print(f"anodot-send: {accepted} points accepted, {refused} refused, {undelivered} not "
          f"delivered, {len(loaded.problems)} unreadable"
          + (f"; see {failed}" if refused or undelivered else ""))
    return 0 if refused == undelivered == len(loaded.problems) == 0 else 1


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m mlwatcher_exporter.bridge.cli``."""
    parser = argparse.ArgumentParser(prog="mlwatcher-exporter")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_commands(subparsers)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
