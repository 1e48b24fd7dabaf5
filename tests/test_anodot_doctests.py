"""Run the examples in the docstrings of the bridge's modules."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["client", "mapping", "ratelimit", "retry", "spool"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"mlwatcher_exporter.bridge.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
