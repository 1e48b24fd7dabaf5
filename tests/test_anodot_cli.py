"""Tests of mlwatcher_exporter.bridge.cli: anodot-bridge and anodot-send, in and out of process."""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import pytest
import yaml

from fake_anodot import FakeAnodot, SequenceExporter, wait_until
from mlwatcher_exporter.bridge import cli
from mlwatcher_exporter.bridge.spool import Spool
from mlwatcher_exporter.config import DEFAULT_PORT

REPO = Path(__file__).resolve().parent.parent


def make_parser() -> argparse.ArgumentParser:
    """Build the parser the way mlwatcher_exporter/cli.py does."""
    parser = argparse.ArgumentParser(prog="mlwatcher-exporter")
    subparsers = parser.add_subparsers(dest="command", required=True)
    cli.add_commands(subparsers)
    return parser


def run(argv: Sequence[str]) -> int:
    args = make_parser().parse_args(list(argv))
    return int(args.func(args))


def write_config(tmp_path: Path, fake: FakeAnodot, targets: Sequence[str] = (),
                 **sections: Dict[str, Any]) -> Path:
    token_file = tmp_path / "token"
    token_file.write_text(fake.token + "\n")
    data: Dict[str, Any] = {
        "anodot": {"base_url": fake.url, "token_env": None, "token_file": str(token_file)},
        "interval_seconds": 0.02,
        "scrape": {"timeout_seconds": 5, "targets": list(targets)},
        "sending": {"backoff_initial_seconds": 0.005, "backoff_max_seconds": 0.05,
                    "timeout_seconds": 5, "points_per_second": 1e6,
                    "requests_per_minute": 1e7},
        "spool": {"directory": str(tmp_path / "spool")},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    path = tmp_path / "anodot.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def point(what: str, value: float, ts: int, **props: str) -> Dict[str, Any]:
    return {"properties": {"what": what, "target_type": "gauge", **props}, "tags": {},
            "timestamp": ts, "value": value}


# ---------------------------------------------------------------------- parser
def test_add_commands_registers_both_commands_with_callables() -> None:
    parser = make_parser()
    args = parser.parse_args(["anodot-bridge", "--config", "c.yml"])
    assert args.func is cli.run_bridge and args.config == "c.yml" and not args.once
    args = parser.parse_args(["anodot-send", "--config", "c.yml", "points.json"])
    assert args.func is cli.run_send and args.file == "points.json"


def test_no_command_line_option_takes_a_token(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        make_parser().parse_args(["anodot-bridge", "--config", "c.yml", "--token", "x"])
    help_text = make_parser()._subparsers._group_actions[0].choices["anodot-send"].format_help()
    assert "--token" not in help_text


# ---------------------------------------------------------------------- anodot-send
def test_send_replays_an_ancestor_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeAnodot() as fake:
        config = write_config(tmp_path, fake, sending={"batch_size": 2})
        now = int(time.time())
        lines = [json.dumps(point("cpu", float(i), now - 10 + i, server_id="5")) + ","
                 for i in range(5)]
        lines.insert(2, "{not json},")
        lines.append(json.dumps(point("bad", 1.0, now, region="us.east")))  # '.' refused
        source = tmp_path / "MLmetrics.json"
        source.write_text("\n".join(lines) + "\n")

        code = run(["anodot-send", "--config", str(config), str(source)])

    out = capsys.readouterr()
    assert code == 1
    assert [p["value"] for p in fake.accepted] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert "MLmetrics.json:3: skipped, not valid JSON" in out.err
    assert "5 points accepted, 1 refused, 0 not delivered, 1 unreadable" in out.out
    failed = [json.loads(x) for x in Path(str(source) + ".failed.jsonl").read_text().splitlines()]
    assert [(f["reason"], f["point"]["properties"]["what"]) for f in failed] == [
        ("rejected", "bad")]
    assert fake.token not in out.out + out.err


def test_send_writes_undelivered_points_and_they_can_be_replayed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = int(time.time())
    source = tmp_path / "points.jsonl"
    source.write_text("".join(json.dumps(point("x", float(i), now)) + "\n" for i in range(3)))
    with FakeAnodot() as fake:
        config = write_config(tmp_path, fake)
        fake.fail_next("500", count=2)
        assert run(["anodot-send", "--config", str(config), "--max-attempts", "2",
                    str(source)]) == 1
        assert fake.accepted == []
        failed = Path(str(source) + ".failed.jsonl")
        assert [json.loads(x)["reason"] for x in failed.read_text().splitlines()] == [
            "undelivered"] * 3
        # The failed file is itself a valid input: replay it once the API is back.
        assert run(["anodot-send", "--config", str(config), "--failed",
                    str(tmp_path / "again.jsonl"), str(failed)]) == 0
    assert [p["value"] for p in fake.accepted] == [0.0, 1.0, 2.0]


def test_send_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    with FakeAnodot() as fake:
        config = write_config(tmp_path, fake)
        source = tmp_path / "p.jsonl"
        source.write_text("")
        assert run(["anodot-send", "--config", str(config), "--failed", str(source),
                    str(source)]) == 2


# ---------------------------------------------------------------------- configuration errors
def test_invalid_config_exits_2_listing_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump({
        "anodot": {"base_url": "ftp://x"},
        "sending": {"batch_size": 5000},
        "spool": {},
    }))
    assert run(["anodot-bridge", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "anodot.base_url" in err and "sending.batch_size" in err and "spool.directory" in err


def test_missing_token_exits_2_without_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLW_TEST_TOKEN", raising=False)
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({
        "anodot": {"base_url": "http://127.0.0.1:9", "token_env": "MLW_TEST_TOKEN"},
        "scrape": {"targets": ["http://127.0.0.1:9/metrics"]},
        "spool": {"directory": str(tmp_path / "spool")},
    }))
    assert run(["anodot-bridge", "--config", str(path)]) == 2
    assert "MLW_TEST_TOKEN is not set" in capsys.readouterr().err
    assert not (tmp_path / "spool").exists()


# ---------------------------------------------------------------------- anodot-bridge
def test_bridge_once_scrapes_and_sends(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeAnodot() as fake, SequenceExporter(models=("a",)) as exporter:
        config = write_config(tmp_path, fake, [exporter.url],
                              mapping={"properties": {"env": "test"}})
        assert run(["anodot-bridge", "--config", str(config), "--once"]) == 0
    assert capsys.readouterr().out.strip().endswith("1 points accepted, 0 refused, 0 still spooled")
    # The counter's first scrape only sets its baseline; the gauge is sent.
    assert [p["properties"] for p in fake.accepted] == [{
        "what": "mlwatcher_test_sequence", "model": "a", "env": "test", "ver": "1",
        "target_type": "gauge"}]


def start_bridge(config: Path, log: Any) -> "subprocess.Popen[bytes]":
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "mlwatcher_exporter.bridge.cli", "anodot-bridge",
         "--config", str(config), "--log-level", "INFO"],
        stdout=log, stderr=log, env=env, cwd=str(REPO),
    )


def first_occurrences(points: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    seen = set()
    out = []
    for p in points:
        key = (p["timestamp"], p["value"])
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def settled(read: Callable[[], int], quiet: float = 1.0, timeout: float = 30.0) -> int:
    """`read()` once it has not changed for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the value never settled"
        time.sleep(0.05)
        if read() != value:
            value, since = read(), time.monotonic()
    return value


@pytest.mark.slow
def test_killed_and_restarted_bridge_delivers_every_spooled_point_in_order(tmp_path: Path) -> None:
    """SIGKILL the bridge process at random moments while the API fails at random.

    Guarantee checked (at-least-once): every scrape whose points reached the spool is
    accepted; the only scrape a kill may lose is the one in flight at that moment;
    duplicates are exact copies; each series arrives in time order; the counter's
    increases add up exactly across restarts.
    """
    rng = random.Random(20240601)
    with FakeAnodot(fault_rate=0.3, seed=5, retry_after="0", slow_seconds=0.02) as fake, \
            SequenceExporter() as exporter:
        config = write_config(tmp_path, fake, [exporter.url], sending={"batch_size": 4})
        log_path = tmp_path / "bridge.log"
        kills: List[int] = []
        with open(log_path, "ab") as log:
            for _ in range(4):
                before = exporter.served
                proc = start_bridge(config, log)
                try:
                    wait_until(lambda: exporter.served >= before + 3, 30, "scrapes")
                    time.sleep(rng.uniform(0.0, 0.3))
                finally:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                # A scrape sent just before the kill may reach the exporter's handler
                # after it: the lost one is the last served once nothing more arrives.
                kills.append(settled(lambda: exporter.served))

            before = exporter.served
            proc = start_bridge(config, log)
            try:
                wait_until(lambda: exporter.served >= before + 3, 30, "scrapes")
                last = exporter.pause()
                # The last scrape's points: its gauges, and its counter increase 3n + 1.
                wait_until(
                    lambda: all(
                        last in fake.accepted_values("mlwatcher_test_sequence", model=m)
                        and 3 * last + 1 in fake.accepted_values("mlwatcher_test_events_total",
                                                                 model=m)
                        for m in exporter.models),
                    30, "the last scrape to be accepted")
            finally:
                proc.terminate()
                code = proc.wait(10)
        assert code == 0

    faults = {k for k, v in fake.requests.items() if k != "ok" and v}
    assert len(faults) >= 4, f"too few fault kinds were exercised: {fake.requests}"
    assert fake.rejected == []
    assert fake.order_violations == []
    for model in exporter.models:
        gauge = [p for p in fake.accepted if p["properties"]["what"] == "mlwatcher_test_sequence"
                 and p["properties"]["model"] == model]
        unique = first_occurrences(gauge)
        values = [int(p["value"]) for p in unique]
        assert values == sorted(set(values)), "a series arrived out of order"
        assert [p["timestamp"] for p in unique] == sorted(p["timestamp"] for p in unique)
        assert values[0] == 1 and values[-1] == last
        missing = set(range(1, last + 1)) - set(values)
        assert missing <= set(kills), f"lost scrapes {sorted(missing - set(kills))}"

        counter = first_occurrences([
            p for p in fake.accepted if p["properties"]["what"] == "mlwatcher_test_events_total"
            and p["properties"]["model"] == model])
        assert all(p["properties"]["target_type"] == "counter" for p in counter)
        assert sum(p["value"] for p in counter) == exporter.total(last) - exporter.total(1)

    log_text = log_path.read_text()
    assert fake.token not in log_text
    assert "token=REDACTED" in log_text, "the startup line shows the redacted address"
    with Spool(tmp_path / "spool") as spool:
        assert spool.pending_points <= 4  # at most the batch in flight at the stop


# ---------------------------------------------------------------------- honest exit codes
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_shipped_config_scrapes_the_exporters_default_port() -> None:
    raw = yaml.safe_load((REPO / "config" / "anodot.yml").read_text())
    [target] = raw["scrape"]["targets"]
    assert target["url"] == f"http://127.0.0.1:{DEFAULT_PORT}/metrics"


def test_once_exits_1_when_every_target_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = [f"http://127.0.0.1:{closed_port()}/metrics", f"http://127.0.0.1:{closed_port()}/m"]
    with FakeAnodot() as fake:
        config = write_config(tmp_path, fake, dead)
        assert run(["anodot-bridge", "--config", str(config), "--once"]) == 1
    err = capsys.readouterr().err
    assert "anodot-bridge: 2 of 2 scrape targets could not be read" in err
    assert "Traceback" not in err and fake.requests == {}


def test_once_exits_1_when_one_of_two_targets_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeAnodot() as fake, SequenceExporter(models=("a",)) as exporter:
        targets = [exporter.url, f"http://127.0.0.1:{closed_port()}/metrics"]
        config = write_config(tmp_path, fake, targets)
        assert run(["anodot-bridge", "--config", str(config), "--once"]) == 1
    assert "1 of 2 scrape targets could not be read" in capsys.readouterr().err
    assert fake.accepted_values("mlwatcher_test_sequence", model="a") == [1.0]


def test_once_exits_1_when_nothing_could_be_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeAnodot() as fake, SequenceExporter(models=("a",)) as exporter:
        config = write_config(tmp_path, fake, [exporter.url])
        fake.fail_next("503")
        assert run(["anodot-bridge", "--config", str(config), "--once"]) == 1
        out = capsys.readouterr()
        assert "0 points accepted, 0 refused, 1 still spooled" in out.out
        assert "1 points not delivered" in out.err
        # The next round delivers what the first left in the spool, and exits 0.
        assert run(["anodot-bridge", "--config", str(config), "--once"]) == 0
    assert fake.accepted_values("mlwatcher_test_sequence", model="a") == [1.0, 2.0]


def test_once_exits_1_when_every_point_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeAnodot() as fake, SequenceExporter(models=("a",)) as exporter:
        config = write_config(tmp_path, fake, [exporter.url])
        (tmp_path / "token").write_text("not-the-token\n")  # Anodot answers 401
        assert run(["anodot-bridge", "--config", str(config), "--once"]) == 1
    out = capsys.readouterr()
    assert "0 points accepted, 1 refused, 0 still spooled" in out.out
    assert "dead-letter.jsonl" in out.err and fake.accepted == []


def run_process(*argv: str, timeout: float = 60) -> "subprocess.CompletedProcess[str]":
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "mlwatcher_exporter.bridge.cli", *argv],
                          capture_output=True, text=True, env=env, cwd=str(REPO),
                          timeout=timeout)


def assert_one_line_error(result: "subprocess.CompletedProcess[str]", *expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0]


def test_unwritable_spool_directory_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with FakeAnodot() as fake:
        config = write_config(tmp_path, fake, ["http://127.0.0.1:9/metrics"],
                              spool={"directory": str(tmp_path / "file" / "spool")})
        result = run_process("anodot-bridge", "--config", str(config), "--once")
    assert_one_line_error(result, "anodot-bridge: cannot use the spool directory",
                          str(tmp_path / "file" / "spool"))


def test_metrics_port_in_use_is_one_line_exit_2(tmp_path: Path) -> None:
    with FakeAnodot() as fake, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = write_config(tmp_path, fake, ["http://127.0.0.1:9/metrics"],
                              metrics={"port": port})
        result = run_process("anodot-bridge", "--config", str(config))
    assert_one_line_error(result, f"cannot serve its metrics on 127.0.0.1:{port}")


def test_bad_arguments_are_one_line_exit_2(tmp_path: Path) -> None:
    with FakeAnodot() as fake:
        config = write_config(tmp_path, fake)
        points = tmp_path / "p.jsonl"
        points.write_text("")
        assert_one_line_error(
            run_process("anodot-send", "--config", str(config), "--max-attempts", "0",
                        str(points)), "--max-attempts == 0, must be >= 1")
        assert_one_line_error(
            run_process("anodot-send", "--config", str(config), str(tmp_path)),
            "cannot read")
        (tmp_path / "file").write_text("")
        assert_one_line_error(
            run_process("anodot-send", "--config", str(config), "--failed",
                        str(tmp_path / "file" / "failed.jsonl"), str(points)),
            "cannot write --failed")
    # argparse's own errors: usage, then one error line, exit 2.
    result = run_process("anodot-bridge", "--once")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("required: --config")


def test_bridge_logs_its_metrics_address_and_serves_there(tmp_path: Path) -> None:
    with FakeAnodot() as fake, SequenceExporter(models=("a",)) as exporter:
        config = write_config(tmp_path, fake, [exporter.url], metrics={"port": 0})
        log_path = tmp_path / "bridge.log"
        with open(log_path, "ab") as log:
            proc = start_bridge(config, log)
            try:
                wait_until(lambda: "its own metrics are on" in log_path.read_text(), 30,
                           "the metrics address in the log")
                match = re.search(r"its own metrics are on (http://127\.0\.0\.1:\d+/metrics)",
                                  log_path.read_text())
                assert match, log_path.read_text()
                wait_until(lambda: fake.accepted_values("mlwatcher_test_sequence"), 30, "a point")
                pages = []

                def counted() -> bool:
                    # The fake accepts a point before the bridge has read its answer and
                    # counted it: scrape until the count is there.
                    with urllib.request.urlopen(match.group(1), timeout=5) as response:
                        pages.append(response.read().decode())
                    return bool(re.search(r"^mlwatcher_anodot_points_sent_total [1-9]",
                                          pages[-1], re.M))

                wait_until(counted, 30, "the sent point counted")
                page = pages[-1]
            finally:
                proc.terminate()
                code = proc.wait(10)
    assert code == 0
    assert "mlwatcher_anodot_points_sent_total" in page
    assert re.search(r"^mlwatcher_anodot_points_sent_total [1-9]", page, re.M)


def test_send_of_a_file_without_points_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeAnodot() as fake:
        config = write_config(tmp_path, fake)
        empty = tmp_path / "empty.json"
        empty.write_text("[]\n")
        assert run(["anodot-send", "--config", str(config), str(empty)]) == 1
    assert "empty.json holds no points, nothing was sent" in capsys.readouterr().err
    assert fake.accepted == [] and not Path(str(empty) + ".failed.jsonl").exists()


def test_once_exits_1_when_the_targets_give_nothing_to_send(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeAnodot() as fake, SequenceExporter(models=("a",)) as exporter:
        config = write_config(tmp_path, fake, [exporter.url],
                              mapping={"include_prefixes": ["nothing_matches_"]})
        assert run(["anodot-bridge", "--config", str(config), "--once"]) == 1
    out = capsys.readouterr()
    assert "0 points accepted, 0 refused, 0 still spooled" in out.out
    assert "the targets gave no point to send" in out.err and fake.accepted == []


def _basic_auth_web_config(tmp_path: Path, password: str) -> Path:
    bcrypt = pytest.importorskip("bcrypt")
    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  prometheus: '{digest}'\n")
    return path


def _status(url: str, auth: str = "") -> int:
    request = urllib.request.Request(url)
    if auth:
        import base64
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.mark.parametrize("where", ["flag", "config"])
def test_bridge_metrics_behind_basic_auth(tmp_path: Path, where: str) -> None:
    """--web-config (or metrics.web_config) puts the bridge's own metrics behind the
    web.yml's basic auth, as exporter-toolkit does for Prometheus' exporters."""
    web = _basic_auth_web_config(tmp_path, "s3cret")
    with FakeAnodot() as fake, SequenceExporter(models=("a",)) as exporter:
        extra = {"web_config": str(web)} if where == "config" else {}
        config = write_config(tmp_path, fake, [exporter.url], metrics={"port": 0, **extra})
        log_path = tmp_path / "bridge.log"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        argv = [sys.executable, "-m", "mlwatcher_exporter.bridge.cli", "anodot-bridge",
                "--config", str(config), "--log-level", "INFO"]
        if where == "flag":
            argv += ["--web-config", str(web)]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env, cwd=str(REPO))
            try:
                wait_until(lambda: "its own metrics are on" in log_path.read_text(), 30,
                           "the metrics address in the log")
                url = re.search(r"its own metrics are on (\S+)", log_path.read_text()).group(1)
                assert _status(url) == 401
                assert _status(url, "prometheus:wrong") == 401
                assert _status(url, "prometheus:s3cret") == 200
            finally:
                proc.terminate()
                proc.wait(10)


def test_bad_web_config_exits_2_with_its_problems(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  alice: plaintext\nlisten: 1\n")
    with FakeAnodot() as fake:
        config = write_config(tmp_path, fake, ["http://127.0.0.1:9/metrics"],
                              metrics={"port": 0})
        result = run_process("anodot-bridge", "--config", str(config), "--web-config", str(web))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{web} has 2 problems" in result.stderr
    assert "basic_auth_users.alice: not a bcrypt hash" in result.stderr
    assert "listen: unknown key" in result.stderr


def test_metrics_web_config_must_be_a_path(tmp_path: Path) -> None:
    with FakeAnodot() as fake:
        config = write_config(tmp_path, fake, ["http://127.0.0.1:9/metrics"],
                              metrics={"web_config": 5})
        result = run_process("anodot-bridge", "--config", str(config))
    assert result.returncode == 2
    assert "metrics.web_config: 5, must be a string" in result.stderr
