"""Helpers of the end-to-end test: processes, a Prometheus HTTP API client, Grafana emulation.

Everything listens on 127.0.0.1 only. Processes are started with their own session and
stopped by their own pid (terminate, then kill), never by name.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Sequence, TypeVar

import yaml

LOOPBACK = "127.0.0.1"
T = TypeVar("T")


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], Optional[T]], timeout: float, message: Callable[[], str],
             interval: float = 0.25) -> T:
    """Call `check` until it returns something truthy; fail with `message()` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"after {timeout:.0f} s: {message()}")
        time.sleep(interval)


def stop_process(process: Optional[subprocess.Popen], timeout: float = 10.0) -> None:
    """Terminate `process` (SIGTERM), then kill it if it does not exit in `timeout` s."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


class LineReader:
    """Drains a process's stdout in a thread, keeping every line for later checks."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: Deque[str] = deque(maxlen=10_000)
        self.arrivals: Deque[float] = deque(maxlen=10_000)  # time.monotonic() per line
        self.first_line_at: Optional[float] = None  # time.monotonic() of its arrival
        self._process = process
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, args=(process,), daemon=True)
        self._thread.start()

    def _drain(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._lock:
                if self.first_line_at is None:
                    self.first_line_at = time.monotonic()
                self.lines.append(line.rstrip("\n"))
                self.arrivals.append(time.monotonic())

    def close(self, timeout: float = 5.0) -> None:
        """After the process exited: let the thread reach end of file, close the pipe."""
        self._thread.join(timeout)
        if self._process.stdout is not None:
            self._process.stdout.close()

    def snapshot(self) -> List[str]:
        with self._lock:
            return list(self.lines)

    def first(self, predicate: Callable[[str], bool]) -> Optional[str]:
        return next((line for line in self.snapshot() if predicate(line)), None)

    def first_at(self, predicate: Callable[[str], bool]) -> Optional[float]:
        """time.monotonic() at which the first line matching `predicate` arrived."""
        with self._lock:
            pairs = list(zip(self.lines, self.arrivals))
        return next((at for line, at in pairs if predicate(line)), None)

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.snapshot()[-n:])


def tail_file(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------------------

def fast_config(base: Path, rule_files: Sequence[Path], job: str, target: str,
                interval: str = "1s") -> Dict[str, Any]:
    """config/prometheus.yml, made fast and pointed at one loopback target.

    Keeps the shipped file's structure and the scrape job named `job`; sets every
    interval to `interval`, the rule files to absolute paths and the job's only target.
    """
    config = yaml.safe_load(base.read_text())
    config["global"].update(scrape_interval=interval, scrape_timeout=interval,
                            evaluation_interval=interval)
    config["rule_files"] = [str(path) for path in rule_files]
    jobs = [dict(j) for j in config["scrape_configs"] if j["job_name"] == job]
    assert jobs, f"{base} has no scrape job {job!r}"
    jobs[0]["static_configs"] = [{"targets": [target]}]
    config["scrape_configs"] = jobs
    return config


class Prometheus:
    """A real prometheus server on a loopback port with its own storage folder."""

    def __init__(self, binary: str, config: Dict[str, Any], workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = workdir / "prometheus.log"
        self.process: Optional[subprocess.Popen] = None
        self.url = ""

    def start(self, timeout: float = 60.0, attempts: int = 3) -> None:
        """Start and wait until /-/ready answers; retry on another port if bind fails."""
        for attempt in range(attempts):
            port = free_port()
            self.url = f"http://{LOOPBACK}:{port}"
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [self.binary,
                     f"--config.file={self.config_path}",
                     f"--storage.tsdb.path={self.workdir / 'data'}",
                     f"--web.listen-address={LOOPBACK}:{port}",
                     "--log.level=info"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            try:
                wait_for(self._ready, timeout, lambda: (
                    f"prometheus not ready at {self.url}; log:\n{tail_file(self.log_path)}"))
                return
            except AssertionError:
                exited = self.process.poll() is not None
                self.stop()
                if not exited or attempt == attempts - 1:
                    raise

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        stop_process(self.process)

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path>; return `data`, raise on an error status."""
        query = urllib.parse.urlencode(params, doseq=True)
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        if body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> List[Dict[str, Any]]:
        """Evaluate `expr` now; return the samples (vector) or series (matrix)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("vector", "matrix"):
            return data["result"]
        return [data["result"]]  # scalar or string: one value

    def label_values(self, label: str, match: Optional[str] = None) -> List[str]:
        params = {"match[]": match} if match else {}
        return sorted(self.api(f"label/{label}/values", **params))

    def alerts(self) -> List[Dict[str, Any]]:
        return self.api("alerts")["alerts"]

    def rule_groups(self) -> List[Dict[str, Any]]:
        return self.api("rules")["groups"]

    def rules(self) -> List[Dict[str, Any]]:
        return [rule for group in self.rule_groups() for rule in group["rules"]]


class PromQLError(AssertionError):
    """Prometheus answered a query with an error."""


# --------------------------------------------------------------------------------------
# What Grafana would send: variables and built-ins substituted
# --------------------------------------------------------------------------------------

LABEL_VALUES = re.compile(r"^label_values\((?:(.*),)?\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$", re.S)
# Grafana's $__rate_interval is max(4 x scrape interval, step + scrape interval); with 1 s
# scrapes any few seconds will do.
BUILTINS = {"$__rate_interval": "20s"}
_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|{}\[\]])")


def _regex_escape(value: str) -> str:
    # As Grafana's Prometheus data source: escaped for a regex inside a PromQL string.
    return _REGEX_SPECIAL.sub(r"\\\\\1", value)


def format_value(values: Sequence[str], variable: Dict[str, Any]) -> str:
    """A variable's values as Grafana interpolates them into a Prometheus query."""
    if not variable.get("multi") and not variable.get("includeAll"):
        return values[0].replace("\\", "\\\\").replace("'", "\\'")
    escaped = [_regex_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def substitute(text: str, values: Dict[str, str]) -> str:
    """Replace $name / ${name} (longest names first) and the built-ins."""
    for name in sorted(values, key=len, reverse=True):
        text = text.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    for name, value in BUILTINS.items():
        text = text.replace(name, value)
    return text


def resolve_variables(dashboard: Dict[str, Any], prometheus: Prometheus) -> Dict[str, str]:
    """The values Grafana gives the dashboard's variables on first load.

    Query variables run their label_values() in order (so later ones see earlier ones);
    an "All" variable gets every value, a single-value one its first value (what Grafana
    selects when `current` is empty), a multi-value one without "All" its first value too.
    """
    values: Dict[str, str] = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = LABEL_VALUES.match(substitute(variable["definition"], values).strip())
        assert match, f"not a label_values() query: {variable['definition']}"
        selector, label = match.group(1), match.group(2)
        found = prometheus.label_values(label, selector.strip() if selector else None)
        assert found, f"variable {variable['name']}: {variable['definition']} found no value"
        chosen = found if variable.get("includeAll") else found[:1]
        values[variable["name"]] = format_value(chosen, variable)
    return values


def panel_targets(dashboard: Dict[str, Any]) -> Iterable[tuple]:
    """(panel title, refId, expr) of every target, rows' nested panels included."""
    for panel in dashboard["panels"]:
        for inner in [panel] + panel.get("panels", []):
            for target in inner.get("targets", []):
                yield inner["title"], target["refId"], target["expr"]


# --------------------------------------------------------------------------------------
# Rule expressions
# --------------------------------------------------------------------------------------

_SELECTOR = re.compile(r"(?<![\w:])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")


def selectors(expr: str) -> List[str]:
    """The instant-vector selectors of the series an expression reads (ranges and offsets
    dropped), e.g. `mlwatcher_feature{stat=~"mean|iqr"}`, `up{job=~"mlwatcher.*"}`."""
    found = []
    braces = [m.span() for m in re.finditer(r"\{[^}]*\}", expr)]
    for match in _SELECTOR.finditer(expr):
        if any(start < match.start() < end for start, end in braces):
            continue  # a word inside label matchers
        name, matchers = match.group(1), match.group(2) or ""
        if name == "up" or name.startswith("mlwatcher") or ":mlwatcher_" in name:
            after = expr[match.end():].lstrip()
            if after.startswith("("):  # a function, not a series
                continue
            found.append(name + matchers)
    return list(dict.fromkeys(found))
