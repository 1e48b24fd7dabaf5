"""The demo command's arguments and errors, run as a user would: a real process.

Serving and scenarios are tested in test_cli.py; here, every bad option and every address
that cannot be listened on ends with one error line and exit code 2, never a traceback.
"""

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mlwatcher_exporter.demo import MAX_RESERVOIR_SIZE, MAX_ROWS_PER_SECOND, check_arguments

ROOT = Path(__file__).parent.parent
ERROR = "mlwatcher-exporter demo: error: "


def run_demo_command(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "mlwatcher_exporter", "demo", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout,
    )


def assert_one_line_error(result, *expected):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "Serving metrics" not in result.stdout, result.stdout
    lines = result.stderr.strip().splitlines()
    # argparse puts its one-line usage before the error; runtime errors have none.
    assert len(lines) <= 2 and (len(lines) == 1 or lines[0].startswith("usage: ")), lines
    assert lines[-1].startswith(ERROR), lines
    for text in expected:
        assert text in lines[-1], lines


@pytest.mark.parametrize("option, value, expected", [
    ("--port", "70000", "port == 70000, must be a TCP port in [0, 65535]"),
    ("--port", "-1", "port == -1"),
    ("--port", "http", "invalid port value: 'http'"),
    ("--rows-per-second", "inf", "rows_per_second == inf, must be a finite number > 0"),
    ("--rows-per-second", "-5", "rows_per_second == -5.0"),
    ("--rows-per-second", "nan", "rows_per_second == nan"),
    ("--rows-per-second", "1e12", f"<= {MAX_ROWS_PER_SECOND}"),
    ("--window-seconds", "0", "window_seconds == 0.0, must be a finite number > 0"),
    ("--window-seconds", "inf", "window_seconds == inf"),
    ("--duration", "-1", "duration == -1.0, must be a finite number >= 0"),
    ("--duration", "nan", "duration == nan"),
    ("--windows-per-scenario", "0", "windows_per_scenario == 0, must be an int >= 1"),
    ("--reservoir-size", "0", "reservoir_size == 0"),
    ("--reservoir-size", "1000000000000", f"must be an int in [1, {MAX_RESERVOIR_SIZE}]"),
    ("--seed", "-1", "seed == -1"),
    ("--scenario", "chaos", "invalid choice: 'chaos'"),
])
def test_bad_option_is_one_line_and_exit_2(option, value, expected):
    # --duration first, so that an option wrongly accepted still ends (the last one wins).
    result = run_demo_command("--duration", "1", option, value)
    assert_one_line_error(result, f"argument {option}: ", expected)


def test_port_in_use_is_one_line_and_exit_2_before_any_training():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_demo_command("--port", str(port), "--duration", "30")
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{port}: Address already in use")
    assert result.stdout == ""


def test_sigint_while_the_models_train_stops_cleanly():
    process = subprocess.Popen(
        [sys.executable, "-m", "mlwatcher_exporter", "demo", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("Serving metrics at http://127.0.0.1:"), first
        # The port is bound before the models are trained (about 2 s): the signal
        # arrives while they train, and ends the demo there (within the fit under way,
        # tens of seconds on a loaded machine).
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=180)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err, err
    assert out.strip().endswith("Demo stopped."), out


def test_check_arguments_accepts_the_defaults_and_the_bounds():
    check_arguments()
    check_arguments(port=0, duration=0, rows_per_second=MAX_ROWS_PER_SECOND,
                    reservoir_size=MAX_RESERVOIR_SIZE, seed=2**32 - 1, scenario="weak-model")


@pytest.mark.parametrize("arguments, message", [
    (dict(port=65536), "port == 65536, must be a TCP port"),
    (dict(port=True), "port == True"),
    (dict(port=80.0), "port == 80.0"),
    (dict(window_seconds="10"), "window_seconds == '10', must be a finite number > 0"),
    (dict(window_seconds=float("-inf")), "window_seconds == -inf"),
    (dict(duration=float("inf")), "duration == inf"),
    (dict(rows_per_second=0), "rows_per_second == 0, must be a finite number > 0"),
    (dict(scenario="chaos"), "scenario == 'chaos', must be one of"),
    (dict(seed=2**32), "seed == 4294967296"),
])
def test_check_arguments_names_argument_value_and_bound(arguments, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        check_arguments(**arguments)


def test_web_config_puts_the_demo_behind_basic_auth(tmp_path):
    """--web-config: the demo serves /metrics as the web.yml says (basic auth here)."""
    import base64
    import urllib.error
    import urllib.request

    bcrypt = pytest.importorskip("bcrypt")
    web = tmp_path / "web.yml"
    digest = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    web.write_text(f"basic_auth_users:\n  prometheus: '{digest}'\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlwatcher_exporter", "demo", "--port", "0", "--duration",
         "120", "--web-config", str(web)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )

    def status(url, credentials=None):
        request = urllib.request.Request(url)
        if credentials:
            token = base64.b64encode(credentials.encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    try:
        first = process.stdout.readline()
        match = re.match(r"Serving metrics at (\S+)", first)
        assert match, first
        assert status(match.group(1)) == 401
        assert status(match.group(1), "prometheus:s3cret") == 200
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=180)


def test_bad_web_config_exits_2_before_serving(tmp_path):
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: missing.crt\n")
    result = run_demo_command("--port", "0", "--duration", "5", "--web-config", str(web))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "Serving metrics" not in result.stdout
    assert result.stderr.startswith(ERROR) and "key_file: missing" in result.stderr
