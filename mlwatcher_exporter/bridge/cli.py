"""The ``anodot-bridge`` and ``anodot-send`` commands (``python -m mlwatcher_exporter.bridge.cli``
runs them alone; ``mlwatcher_exporter/cli.py`` adds them with :func:`add_commands`).

The token is read from the environment variable or file named in the configuration,
never from the command line. Exit codes: 0 success; 1 something was not read or not
delivered (a scrape target failed, points refused or still spooled, a file without
points); 2 invalid configuration or arguments, or the bridge could not start (spool
directory, port in use). Errors are one line each, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from typing import Any, List, Optional

from prometheus_client import CollectorRegistry

from ..exposition import MetricsServer, start_http_server
from ..signals import stop_on_signals
from .anodot import AnodotBridge, ScrapeSource
from .config import BridgeConfig, ConfigError, load_config, read_token
from .sender import AnodotClient, Sender
from .spool import DeadLetter, read_points

__all__ = ["add_commands", "run_bridge", "run_send", "main"]

logger = logging.getLogger("mlwatcher_exporter.bridge")

_MAX_PROBLEMS_SHOWN = 20
_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def add_commands(subparsers: "argparse._SubParsersAction") -> None:
    """Add the ``anodot-bridge`` and ``anodot-send`` subcommands to ``subparsers``."""
    bridge = subparsers.add_parser(
        "anodot-bridge",
        help="forward /metrics of running exporters to Anodot through a durable spool",
        description="Scrape the /metrics targets of the configuration every interval, "
        "spool the points on disk and send them to Anodot. The token comes from the "
        "environment variable or file named in the configuration.",
    )
    bridge.add_argument("--web-config", default=None, metavar="FILE",
                        help="a web.yml (exporter-toolkit format) for TLS and basic auth "
                        "on the bridge's own metrics (default metrics.web_config)")
    bridge.add_argument("--once", action="store_true",
                        help="scrape once, send everything spooled, exit: 0 if every target "
                        "was read and every point accepted, else 1")
    send = subparsers.add_parser(
        "anodot-send",
        help="send a file of Anodot points (ancestor JSON files, dead letters) to Anodot",
        description="Send the points of FILE (a JSON array, JSON lines as MLWatcher wrote "
        "them, a dead-letter file or a spool segment) to Anodot, with the rate limits and "
        "retries of the configuration. Refused and undelivered points are written to --failed.",
    )
    send.add_argument("file", metavar="FILE", help="points to send")
    send.add_argument("--max-attempts", type=int, default=5,
                      help="requests per batch before giving up (default: 5)")
    send.add_argument("--failed", default=None, metavar="FILE",
                      help="where refused or undelivered points go (default: FILE.failed.jsonl)")
    for parser, run, level, uses in ((bridge, run_bridge, "INFO", "see config/anodot.yml"),
                                     (send, run_send, "WARNING", "its anodot and sending "
                                      "sections are used")):
        parser.add_argument("--config", required=True, metavar="FILE",
                            help=f"YAML configuration ({uses})")
        # SUPPRESS: given before the command (mlwatcher-exporter --log-level X ...), it stays.
        parser.add_argument("--log-level", default=argparse.SUPPRESS, choices=_LEVELS,
                            help=f"default: {level}")
        parser.set_defaults(func=run)


def _start(command: str, args: argparse.Namespace, level: str) -> "tuple[BridgeConfig, str]":
    """Set up logging, then load the configuration and the token (ConfigError if invalid)."""
    level = getattr(args, "log_level", None) or level
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mlwatcher_exporter").setLevel(level)
    config = load_config(args.config)
    if command == "anodot-bridge" and not config.targets:
        raise ConfigError(["scrape.targets: anodot-bridge needs at least one target"], args.config)
    return config, read_token(config)


def _fail(command: str, message: Any, code: int = 2) -> int:
    print(f"{command}: {message}", file=sys.stderr)
    return code


def _total(registry: CollectorRegistry, *names: str) -> int:
    """Sum of the samples called one of ``names`` in ``registry`` (over all label values)."""
    return int(sum(s.value for m in registry.collect() for s in m.samples if s.name in names))


def run_bridge(args: argparse.Namespace) -> int:
    """Run ``anodot-bridge``; return the exit code."""
    try:
        config, token = _start("anodot-bridge", args, "INFO")
    except ConfigError as exc:
        return _fail("anodot-bridge", exc)
    registry = CollectorRegistry()
    source = ScrapeSource(config.targets, config.scrape_timeout_seconds)
    try:
        bridge = AnodotBridge(
            config.base_url, token, config.spool_directory, source, mapping=config.mapping,
            sending=config.sending, spool=config.spool, dead_letter=config.dead_letter,
            metrics_registry=registry,
        )
    except OSError as exc:
        return _fail("anodot-bridge", f"cannot use the spool directory "
                     f"{config.spool_directory!r}: {exc.strerror or exc}")
    source.use_metrics(bridge.metrics)
    server: Optional[MetricsServer] = None
    try:
        if args.once:
            return _once(bridge, registry, len(config.targets))
        if config.metrics_port is not None:
            try:
                server = start_http_server(
                    config.metrics_port, config.metrics_address, registry=registry,
                    web_config=args.web_config or config.metrics_web_config)
            except ConfigError as exc:  # the web.yml: every problem, one per line
                return _fail("anodot-bridge", exc)
            except (OSError, ValueError) as exc:
                return _fail("anodot-bridge", f"cannot serve its metrics on "
                             f"{config.metrics_address}:{config.metrics_port} (metrics.address, "
                             f"metrics.port): {getattr(exc, 'strerror', None) or exc}")
            logger.info("anodot-bridge: its own metrics are on %s", server.url)
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


def _once(bridge: AnodotBridge, registry: CollectorRegistry, targets: int) -> int:
    """One scrape and one flush; 1 unless every target was read, some point sent and every
    point accepted."""
    bridge.snapshot()
    result = bridge.flush()
    print(f"anodot-bridge: {result.accepted} points accepted, {result.rejected} refused, "
          f"{result.pending} still spooled")
    failed = _total(registry, "mlwatcher_anodot_scrape_failures_total")
    problems = [f"{failed} of {targets} scrape targets could not be read"] if failed else []
    if _total(registry, "mlwatcher_anodot_spool_errors_total",
              "mlwatcher_anodot_snapshot_errors_total"):
        problems.append("the scraped points could not be written to the spool")
    if result.rejected or result.pending:
        problems.append(f"{result.rejected + result.pending} points not delivered; "
                        f"refused ones are in {bridge.dead_letter.path}")
    if not (problems or result.accepted):
        problems.append("the targets gave no point to send (mapping.include_prefixes "
                        "let none through, or counters only set their baseline)")
    for problem in problems:
        _fail("anodot-bridge", problem)
    return 1 if problems else 0


def run_send(args: argparse.Namespace) -> int:
    """Run ``anodot-send``; return the exit code."""
    try:
        config, token = _start("anodot-send", args, "WARNING")
    except ConfigError as exc:
        return _fail("anodot-send", exc)
    if args.max_attempts < 1:
        return _fail("anodot-send", f"--max-attempts == {args.max_attempts}, must be >= 1")
    failed = args.failed or args.file + ".failed.jsonl"
    if os.path.abspath(failed) == os.path.abspath(args.file):
        return _fail("anodot-send", "--failed must differ from FILE")
    try:
        loaded = read_points(args.file)
    except (OSError, UnicodeDecodeError) as exc:
        return _fail("anodot-send", f"cannot read {args.file}: {exc}")
    try:  # find out now, not after sending, that refused points would have nowhere to go
        os.makedirs(os.path.dirname(os.path.abspath(failed)), exist_ok=True)
        open(failed, "ab").close()
    except OSError as exc:
        return _fail("anodot-send", f"cannot write --failed {failed}: {exc.strerror or exc}")
    for number, problem in loaded.problems[:_MAX_PROBLEMS_SHOWN]:
        _fail("anodot-send", f"{args.file}:{number}: skipped, {problem}")
    if len(loaded.problems) > _MAX_PROBLEMS_SHOWN:
        _fail("anodot-send", f"... {len(loaded.problems) - _MAX_PROBLEMS_SHOWN} more lines skipped")
    # Anodot wants each series in time order; a stable sort keeps the file's order otherwise.
    points = sorted(loaded.points, key=lambda p: p["timestamp"])
    dead = DeadLetter(failed, max_bytes=2**62)
    client = AnodotClient(config.base_url, token, config.sending.timeout_seconds)
    sender = Sender(client, config.sending, dead_letter=dead)
    accepted = refused = undelivered = 0
    size = config.sending.batch_size
    try:
        for start in range(0, len(points), size):
            result = sender.deliver(points[start:start + size], max_attempts=args.max_attempts)
            assert result is not None
            if result.kind == "retry":  # the rest of the file is given up on
                undelivered = dead.write(points[start:], "undelivered", result.status, None,
                                         f"gave up: {result.reason}")
                break
            accepted += result.accepted
            refused += result.rejected
    except OSError as exc:
        return _fail("anodot-send", f"cannot write {failed}: {exc.strerror or exc}")
    finally:
        client.close()
        if os.path.exists(failed) and os.path.getsize(failed) == 0:
            os.unlink(failed)
    if not loaded.points and not loaded.problems:
        return _fail("anodot-send", f"{args.file} holds no points, nothing was sent", 1)
    print(f"anodot-send: {accepted} points accepted, {refused} refused, {undelivered} not "
          f"delivered, {len(loaded.problems)} unreadable"
          + (f"; see {failed}" if refused or undelivered else ""))
    return 0 if refused == undelivered == len(loaded.problems) == 0 else 1


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m mlwatcher_exporter.bridge.cli``."""
    parser = argparse.ArgumentParser(prog="mlwatcher-exporter")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
