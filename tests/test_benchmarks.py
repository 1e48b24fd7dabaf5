"""Smoke test of benchmarks/run.py: it runs with tiny sizes and writes its table.

Benchmarks are not tests: nothing here asserts a timing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


def load_run():
    spec = importlib.util.spec_from_file_location("mlwatcher_benchmarks_run", RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run():
    return load_run()


@pytest.mark.slow
def test_quick_run_writes_every_section(run, tmp_path):
    output = tmp_path / "benchmarks.md"
    assert run.main(["--quick", "--output", str(output)]) == 0
    text = output.read_text()
    assert run.BEGIN in text and run.END in text
    for title in ("## Machine", "## Targets", "## 1. Added latency", "digits demo model",
                  "## 2. CPU per monitored row", "## 3. `observe` under contention",
                  "## 4. Window statistics", "## 5. One scrape", "## 6. Memory held"):
        assert title in text
    # Every target has a verdict in the summary, and the counters were exact.
    summary = text.split("## Targets", 1)[1].split("## 1.", 1)[0]
    assert summary.count("**met**") + summary.count("**missed**") == len(run.VERDICTS) >= 18
    # The window statistics agree with the straightforward reference computation.
    assert "**NO**" not in text


def test_rerun_replaces_only_the_generated_section(run, tmp_path):
    output = tmp_path / "benchmarks.md"
    output.write_text(f"# Title\n\nHand-written.\n\n{run.BEGIN}\nold\n{run.END}\n\nMore prose.\n")
    run.write_report(output, "new table")
    text = output.read_text()
    assert text.startswith("# Title\n\nHand-written.\n\n")
    assert "new table" in text and "old" not in text
    assert text.endswith(f"{run.END}\n\nMore prose.\n")


def test_reference_statistics_match_ours(run):
    sample = run.make_sample(300, 4)
    assert run.same_numbers(run.ours(sample), run.reference(sample))


@pytest.mark.slow
def test_serve_load_quick_run_loses_nothing(capsys):
    spec = importlib.util.spec_from_file_location(
        "mlwatcher_serve_load", RUN.parent / "serve_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick"]) == 0  # 0: the server counted every accepted row
    out = capsys.readouterr().out
    assert "| JSON |" in out and "| NPZ |" in out and " yes |" in out and " NO |" not in out


def test_bulk_processing_quick_run(capsys):
    """benchmarks/bulk_processing.py runs both implementations and prints its table."""
    spec = importlib.util.spec_from_file_location(
        "mlwatcher_bulk_processing", RUN.parent / "bulk_processing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--quick", "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert "request path, compiled" in lines[1] and "bulk per row, numpy" in lines[1]
    assert [line.split(" | ")[0] for line in lines[3:]] == ["| 1", "| 100"]
