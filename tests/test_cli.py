"""The command line and the demo, run as a user would: a real process, a real scrape."""

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from mlwatcher_exporter.cli import main
from mlwatcher_exporter.config import MonitorSettings
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


# The demo answers /metrics at once and trains its models after (a few seconds, more on
# a loaded machine): the first window's series come that much later.
DEMO_WARMUP_SECONDS = 120.0


def wait_for(url, name, labels, timeout=DEMO_WARMUP_SECONDS):
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
    assert "config/mlwatcher.yml: OK (model 'default')" in capsys.readouterr().out
    bad = tmp_path / "bad.yml"
    bad.write_text("window_seconds: 0\nfoo: 1\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{bad} has 2 problems:\n")
    assert "window_seconds == 0" in err and "foo: unknown option" in err


def test_check_config_prints_the_memory_estimate(capsys, tmp_path):
    path = tmp_path / "sized.yml"
    path.write_text("n_classes: 2\nfeature_names: [a, b, c]\nreservoir_size: 100000\n")
    assert main(["check-config", str(path)]) == 0
    assert "window buffers up to 18.3 MiB" in capsys.readouterr().out


def test_check_config_of_the_bridge(capsys, tmp_path):
    assert main(["check-config", "--bridge", str(ROOT / "config" / "anodot.yml")]) == 0
    assert "OK (1 scrape target(s))" in capsys.readouterr().out
    assert main(["check-config", "--bridge", str(ROOT / "config" / "mlwatcher.yml")]) == 2
    assert "anodot.base_url: required" in capsys.readouterr().err


BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n"
    for i in range(8))


@pytest.mark.parametrize("content, problem", [
    ("1: x\n", "1: unknown option"),
    ("null: x\n", "null: unknown option"),
    ("model: a\nmodel: b\n", "model: duplicate key (first on line 1)"),
    (BOMB, "a: anchor &a is not allowed"),
    ("reservoir_size: 1000000000000\n", "reservoir_size == 1000000000000, must be an int <="),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "invalid YAML: unacceptable character"),
    ("- a list\n", "top level must be a mapping, got list"),
    (None, "cannot read: is a directory"),
    ("missing", "cannot read: No such file or directory"),
])
def test_check_config_exits_2_with_the_problem(capsys, tmp_path, content, problem):
    path = tmp_path / "c.yml"
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content != "missing":
        path.write_text(content)
    started = time.monotonic()
    assert main(["check-config", str(path)]) == 2
    assert time.monotonic() - started < 5
    captured = capsys.readouterr()
    assert captured.out == "" and f"  {problem}" in captured.err, captured.err


def test_check_config_as_a_process_prints_no_traceback(tmp_path):
    for name, content in (("bomb.yml", BOMB), ("keys.yml", "1: a\nnull: b\n")):
        path = tmp_path / name
        path.write_text(content)
        result = subprocess.run(
            [sys.executable, "-m", "mlwatcher_exporter", "check-config", str(path)],
            capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and " problem" in result.stderr
        assert result.stdout == ""


OPTIONS = [*MonitorSettings.__dataclass_fields__, "addr", "port", "anodot", "base_url",
           "spool", "directory", "scrape", "targets", "url", "sending", "batch_size"]
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.text(max_size=12) | st.sampled_from(OPTIONS))
KEYS = st.sampled_from(OPTIONS) | st.none() | st.booleans() | st.integers() | st.text(max_size=8)
STRUCTURES = st.recursive(
    SCALARS,
    lambda inner: (st.lists(inner, max_size=6)
                   | st.dictionaries(KEYS, inner, max_size=6)),
    max_leaves=30,
)
YAML_PIECES = st.sampled_from([
    "model", "http", "port", "reservoir_size", ":", ": ", "- ", "\n", "  ", "[", "]", "{",
    "}", ",", "&a ", "*a", "!!binary ", "!!set ", "<<: ", "? ", "'", '"', "#", "---\n",
    "1e999", "null", "~", "0x1f", "1_000", "2001-12-14", "\t", "|\n", ">\n", "%YAML 1.1\n",
])
TEXTS = st.lists(YAML_PIECES | st.text(max_size=6), max_size=40).map("".join)


def check_config_in_process(data, capsys, path, *options):
    path.write_bytes(data)
    code = main(["check-config", *options, str(path)])
    captured = capsys.readouterr()
    assert code in (0, 2)
    if code == 2:
        first = captured.err.splitlines()[0]
        assert first.startswith(f"{path} has ") and " problem" in first, captured.err
        assert len(captured.err.splitlines()) >= 2 and captured.out == ""
    else:
        assert captured.out.startswith(f"{path}: OK") and captured.err == ""
    return code


HYPOTHESIS = settings(max_examples=150, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


@HYPOTHESIS
@given(STRUCTURES)
def test_check_config_of_any_structure_exits_0_or_2(capsys, tmp_path, document):
    text = yaml.safe_dump(document, allow_unicode=True)
    check_config_in_process(text.encode("utf-8"), capsys, tmp_path / "s.yml")


@HYPOTHESIS
@given(STRUCTURES)
def test_check_config_of_any_bridge_structure_exits_0_or_2(capsys, tmp_path, document):
    text = yaml.safe_dump(document, allow_unicode=True)
    check_config_in_process(text.encode("utf-8"), capsys, tmp_path / "s.yml", "--bridge")


@HYPOTHESIS
@given(TEXTS)
def test_check_config_of_any_text_exits_0_or_2(capsys, tmp_path, text):
    check_config_in_process(text.encode("utf-8"), capsys, tmp_path / "t.yml")


@HYPOTHESIS
@given(st.binary(max_size=200))
def test_check_config_of_any_bytes_exits_0_or_2(capsys, tmp_path, data):
    check_config_in_process(data, capsys, tmp_path / "b.yml")


def test_check_config_accepts_a_generated_valid_document(capsys, tmp_path):
    text = yaml.safe_dump({"model": "m", "class_names": ["a", "b"], "http": {"port": 0}})
    assert check_config_in_process(text.encode(), capsys, tmp_path / "ok.yml") == 0


def test_scenario_cycle():
    assert [scenario_at("cycle", i, 2) for i in range(7)] == [
        "healthy", "healthy", "input-drift", "input-drift", "weak-model", "weak-model", "healthy"]
    assert scenario_at("weak-model", 5, 2) == "weak-model"


def test_demo_serves_both_models_and_stops_after_duration(tmp_path):
    history = tmp_path / "history"
    process, url = start_demo("--window-seconds", "1", "--duration", "5", "--scenario", "healthy",
                              "--history-dir", str(history))
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
    # --history-dir: one JSON line per closed window of each model.
    for model in ("digits", "digits-canary"):
        records = [json.loads(line) for line in
                   (history / f"{model}.jsonl").read_text().splitlines()]
        assert records and all(record["model"] == model for record in records)


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
