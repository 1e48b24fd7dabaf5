"""Shared test fixtures: fresh registries, a hand-driven clock, external binaries."""

from __future__ import annotations

import os
import shutil
import pytest
from prometheus_client import CollectorRegistry

REQUIRE_PROMETHEUS = os.environ.get("MLWATCHER_REQUIRE_PROMETHEUS") == "1"


def require_binary(name: str) -> str:
    """Return the path of `name`; skip without it, but fail when CI requires it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package 'prometheus')"
        if REQUIRE_PROMETHEUS:
            pytest.fail(message + " and MLWATCHER_REQUIRE_PROMETHEUS=1", pytrace=False)
        pytest.skip(message)
    return path


class ManualClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def promtool() -> str:
    return require_binary("promtool")


@pytest.fixture
def prometheus_binary() -> str:
    return require_binary("prometheus")
