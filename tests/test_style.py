"""The code base stays clean: flake8 (setup.cfg's rules) and mypy on the package."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def run(*command):
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_flake8():
    result = run("flake8", "mlwatcher_exporter", "tests", "benchmarks", "dashboards")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy():
    result = run("mypy", "mlwatcher_exporter")
    assert result.returncode == 0, result.stdout + result.stderr
