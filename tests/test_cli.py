"""The command line and the demo, run as a user would: a real process, a real scrape."""

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlwatcher_exporter.cli import main
from mlwatcher_exporter.demo import scenario_at

ROOT = Path(__file__).parent.parent


def start_demo(*args):
    process = subprocess.Popen(
        [sys.executable, "-m", "mlwatcher_exporter", "demo", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    first = process.stdout.readline()
    assert first.startswith("Serving metrics at http://127.0.0.1:"), first + process.stderr.read()
    return process, first.split()[-1]


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def wait_for(url, name, labels, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples = scrape(url)
        key = (name, tuple(sorted(labels.items())))
        if key in samples:
            return samples
        time.sleep(0.2)
    raise AssertionError(f"{name}{labels} never appeared at {url}")


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "check-config"):
        assert command in out


def test_demo_help_explains_options(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    for option in ("--port", "--window-seconds", "--scenario", "--duration", "10150"):
        assert option in out


def test_check_config(capsys, tmp_path):
    assert main(["check-config", str(ROOT / "config" / "mlwatcher.yml")]) == 0
    bad = tmp_path / "bad.yml"
    bad.write_text("window_seconds: 0\nfoo: 1\n")
    assert main(["check-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "window_seconds == 0" in err and "foo: unknown option" in err


def test_scenario_cycle():
    assert [scenario_at("cycle", i, 2) for i in range(7)] == [
        "healthy", "healthy", "input-drift", "input-drift", "weak-model", "weak-model", "healthy"]
    assert scenario_at("weak-model", 5, 2) == "weak-model"


def test_demo_serves_both_models_and_stops_after_duration():
    process, url = start_demo("--window-seconds", "1", "--duration", "5", "--scenario", "healthy")
    try:
        samples = wait_for(url, "mlwatcher_accuracy", {"model": "digits"})
        assert samples[("mlwatcher_accuracy", (("model", "digits"),))] > 0.8
        samples = wait_for(url, "mlwatcher_accuracy", {"model": "digits-canary"})
        key = ("mlwatcher_feature",
               (("feature", "pixel_3_3"), ("model", "digits"), ("stat", "mean")))
        assert key in samples
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "scenario=healthy" in out and "accuracy=" in out
    assert out.rstrip().endswith("Demo stopped.")


def test_demo_input_drift_inverts_pixels_and_stops_on_sigint():
    process, url = start_demo("--window-seconds", "1", "--scenario", "input-drift")
    try:
        samples = wait_for(url, "mlwatcher_feature",
                           {"model": "digits", "feature": "pixel_0_0", "stat": "min"})
        # pixel_0_0 is always 0 in the digits data: inverted, it is always 16.
        key = ("mlwatcher_feature",
               (("feature", "pixel_0_0"), ("model", "digits"), ("stat", "min")))
        assert samples[key] == 16.0
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Demo stopped." in out


def test_log_level_before_or_after_the_command():
    from mlwatcher_exporter.cli import build_parser

    parser = build_parser()
    before = parser.parse_args(["--log-level", "DEBUG", "anodot-send", "--config", "c", "f"])
    after = parser.parse_args(["anodot-send", "--config", "c", "--log-level", "ERROR", "f"])
    neither = parser.parse_args(["anodot-send", "--config", "c", "f"])
    assert (before.log_level, after.log_level, neither.log_level) == ("DEBUG", "ERROR", None)
