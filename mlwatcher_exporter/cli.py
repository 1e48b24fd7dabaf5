"""The ``mlwatcher-exporter`` command: the demo, ``serve``, configuration checks, the bridges."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Callable, List, Optional

from ._version import __version__
from .bridge.cli import add_commands as add_bridge_commands
from .config import DEFAULT_PORT, ConfigError

__all__ = ["main", "build_parser"]

SCENARIOS = ("healthy", "input-drift", "weak-model", "cycle")


def _demo_option(name: str, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type: parse the text, then apply the demo's bound for `name`."""

    def convert(text: str) -> Any:
        from .demo import check_arguments

        value = parse(text)  # a ValueError here: argparse says "invalid <name> value"
        try:
            check_arguments(**{name: value})
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return value

    convert.__name__ = name
    return convert


def _add_demo(subparsers: "argparse._SubParsersAction") -> None:
    demo = subparsers.add_parser(
        "demo",
        usage="%(prog)s [options]",
        help="serve metrics of a digits classifier fed healthy, drifting or weak-model traffic",
        description=(
            "Train classifiers on scikit-learn's bundled digits data (no download), then "
            "stream predictions with labels through a monitored predict_proba and serve "
            "/metrics. Two models see the same inputs: 'digits' (production, follows the "
            "scenario) and 'digits-canary' (a challenger). Scenarios: healthy; input-drift "
            "(pixel values inverted); weak-model (production replaced by a model trained on "
            "a heavily unbalanced set); cycle (all three in turn). A bad option or an "
            "address that cannot be listened on ends with one error line and exit code 2."
        ),
    )
    demo.add_argument("--port", type=_demo_option("port", int), default=DEFAULT_PORT,
                      help=f"port of /metrics (default {DEFAULT_PORT}; 0 picks a free one)")
    demo.add_argument("--addr", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    demo.add_argument("--window-seconds", type=_demo_option("window_seconds", float),
                      default=10.0, help="window length in seconds (default 10)")
    demo.add_argument("--scenario", choices=SCENARIOS, default="cycle",
                      help="traffic to simulate (default cycle)")
    demo.add_argument("--duration", type=_demo_option("duration", float), default=0.0,
                      help="stop after this many seconds (default 0: run until Ctrl-C)")
    demo.add_argument("--windows-per-scenario", type=_demo_option("windows_per_scenario", int),
                      default=6,
                      help="with --scenario cycle, windows before switching (default 6)")
    demo.add_argument("--rows-per-second", type=_demo_option("rows_per_second", float),
                      default=200.0, help="predictions per second (default 200)")
    demo.add_argument("--reservoir-size", type=_demo_option("reservoir_size", int),
                      default=10_000, help="rows sampled per window (default 10000)")
    demo.add_argument("--seed", type=_demo_option("seed", int), default=0,
                      help="random seed (default 0)")
    demo.add_argument("--web-config", default=None, metavar="FILE",
                      help="a web.yml (exporter-toolkit format) for TLS and basic auth")
    demo.add_argument("--history-dir", default=None, metavar="DIR",
                      help="also write each model's closed windows to rotating JSON-lines "
                      "files in DIR (docs/history.md; default: in memory only)")
    demo.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    try:
        return run_demo(
            port=args.port,
            addr=args.addr,
            window_seconds=args.window_seconds,
            scenario=args.scenario,
            duration=args.duration,
            windows_per_scenario=args.windows_per_scenario,
            rows_per_second=args.rows_per_second,
            reservoir_size=args.reservoir_size,
            seed=args.seed,
            web_config=args.web_config,
            history_dir=args.history_dir,
        )
    except (ValueError, OSError) as error:
        print(f"mlwatcher-exporter demo: error: {error}", file=sys.stderr)
        return 2


def _add_check_config(subparsers: "argparse._SubParsersAction") -> None:
    check = subparsers.add_parser(
        "check-config",
        help="validate a configuration file and list every problem",
        description="Validate a YAML configuration: the monitor's (config/mlwatcher.yml) or, "
        "with --bridge, the Anodot bridge's (config/anodot.yml). Exit 0 when it is valid; "
        "exit 2 with every problem printed on stderr, one per line with its key path.",
    )
    check.add_argument("path", help="the YAML file")
    check.add_argument("--bridge", action="store_true",
                       help="check an Anodot bridge configuration")
    check.set_defaults(func=_run_check_config)


def _run_check_config(args: argparse.Namespace) -> int:
    from .bridge.config import load_config as load_bridge_config
    from .config import memory_estimate
    from .serveconfig import load_serve_config

    try:
        if args.bridge:
            bridge = load_bridge_config(args.path)
            print(f"{args.path}: OK ({len(bridge.targets)} scrape target(s))")
            return 0
        service = load_serve_config(args.path)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    sizes = [memory_estimate(settings) for settings in service.models]
    memory = None if None in sizes else sum(s or 0 for s in sizes)
    size = ("" if memory is None else
            f", window buffers up to {memory / 1024 ** 2:.1f} MiB")
    names = ", ".join(repr(settings.model) for settings in service.models)
    print(f"{args.path}: OK (model{'s' if len(service.models) > 1 else ''} {names}{size})")
    from .seriesreport import series_report  # the series each model will publish

    for settings in service.models:
        report = series_report(settings)
        print(f"  {report}" if report else f"  model {settings.model!r}: series unknown "
              "until its classes and features are learned (declare n_classes or "
              "class_names, and feature_names, to see them)")
    return 0


def _add_serve(subparsers: "argparse._SubParsersAction") -> None:
    serve = subparsers.add_parser(
        "serve",
        help="host the monitors of several models: /metrics and an ingest API",
        description="Host the monitors of the models of a configuration file in one process: "
        "producers in other processes POST batches to /api/v1/models/{model}/observations "
        "(JSON, .npy or .npz; described at /api/v1/openapi.json) and Prometheus scrapes "
        "/metrics. Listens on 127.0.0.1 unless --listen (or http.addr) says otherwise; "
        "beyond loopback a bearer token is required, read from the environment variable "
        "MLWATCHER_TOKEN (serve.token_env) or from a file, never from the command line. A "
        "bad configuration, token or address ends with one error line and exit code 2.",
    )
    serve.add_argument("--config", required=True, help="the YAML file (config/mlwatcher.yml)")
    serve.add_argument("--listen", default=None,
                       help="address to bind (default http.addr of the file: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None,
                       help=f"port (default http.port of the file: {DEFAULT_PORT}; 0 picks one)")
    serve.add_argument("--token-file", default=None,
                       help="file holding the bearer token (default serve.token_file)")
    serve.add_argument("--web-config", default=None,
                       help="a web.yml for TLS (exporter-toolkit format)")
    serve.set_defaults(func=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from .service import run_serve

    try:
        return run_serve(args.config, args.listen, args.port, args.token_file, args.web_config)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    except (ValueError, OSError) as error:
        print(f"mlwatcher-exporter serve: error: {error}", file=sys.stderr)
        return 2


def _add_profile(subparsers: "argparse._SubParsersAction") -> None:
    profile = subparsers.add_parser(
        "profile",
        help="build a reference profile (drift, label-free estimates) from reference data",
        description="Read reference data (CSV, NPZ, or Parquet with pyarrow; layout in "
        "docs/drift.md) for the model of a configuration file and write its reference "
        "profile, to be loaded with `reference: FILE`. Exit 2 with one error line on a "
        "bad file.",
    )
    profile.add_argument("--config", required=True, help="the model's YAML file")
    profile.add_argument("data", metavar="DATA", help="reference data (.csv, .npz, .parquet)")
    profile.add_argument("-o", "--output", required=True, help="the profile file to write")
    profile.add_argument("--calibration", choices=("isotonic", "sigmoid"), default="isotonic",
                         help="calibration of the probabilities on the labels "
                         "(default isotonic; sigmoid for a few hundred labels)")
    profile.add_argument("--bins", type=int, default=10, help="quantile bins (default 10)")
    profile.add_argument("--points", type=int, default=1000,
                         help="points per distribution for KS and Wasserstein (default 1000)")
    profile.set_defaults(func=_run_profile)


def _run_profile(args: argparse.Namespace) -> int:
    from .profiledata import run_profile

    return run_profile(args.config, args.data, args.output, args.calibration, args.bins,
                       args.points)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="mlwatcher-exporter",
        description="Watch machine-learning classifiers in production and expose "
        "per-window statistics of predictions, features and labels as Prometheus metrics.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default=None,
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="default: the command's own (INFO; WARNING for anodot-send)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(subparsers)
    _add_check_config(subparsers)
    _add_serve(subparsers)
    _add_profile(subparsers)
    add_bridge_commands(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``mlwatcher-exporter`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level or "INFO",
                        format="%(asctime)s %(levelname)s %(message)s")
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
