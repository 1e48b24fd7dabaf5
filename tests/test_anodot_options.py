"""Tests of the option groups of mlwatcher_exporter.bridge.config: direct-API validation."""

from __future__ import annotations

import pytest

from mlwatcher_exporter.bridge.config import (
    DeadLetterOptions, MappingOptions, SendOptions, SpoolOptions, field_problems,
)


@pytest.mark.parametrize("cls, kwargs, error, match", [
    (SendOptions, {"batch_size": 0}, ValueError, "batch_size == 0, must be >= 1"),
    (SendOptions, {"batch_size": 1001}, ValueError, "batch_size == 1001, must be <= 1000"),
    (SendOptions, {"batch_size": 1.5}, TypeError, "batch_size == 1.5, must be an integer"),
    (SendOptions, {"points_per_second": 0}, ValueError, "points_per_second == 0, must be > 0"),
    (SendOptions, {"timeout_seconds": float("nan")}, ValueError, "must be a finite number"),
    (SendOptions, {"backoff_jitter": 2}, ValueError, "backoff_jitter == 2, must be <= 1"),
    (SendOptions, {"backoff_multiplier": True}, TypeError, "backoff_multiplier == True"),
    (SpoolOptions, {"fsync": "yes"}, TypeError, "fsync == 'yes', must be true or false"),
    (SpoolOptions, {"segment_bytes": 2048, "max_bytes": 2048}, ValueError,
     "segment_bytes == 2048, must be <= max_bytes / 2"),
    (MappingOptions, {"counters": "sum"}, ValueError, "counters == 'sum', must be one of"),
    (MappingOptions, {"include_prefixes": "mlwatcher_"}, TypeError,
     "include_prefixes == 'mlwatcher_', must be a list of strings"),
    (MappingOptions, {"properties": {"env": ""}}, ValueError, "properties.env == ''"),
    (MappingOptions, {"properties": {"what": "x"}}, ValueError, "properties.what is reserved"),
    (DeadLetterOptions, {"max_bytes": -1}, ValueError, "max_bytes == -1, must be >= 0"),
])
def test_invalid_values_raise_naming_argument_value_and_bound(
    cls: type, kwargs: dict, error: type, match: str
) -> None:
    with pytest.raises(error, match=match.replace("(", r"\(").replace(")", r"\)")):
        cls(**kwargs)


def test_field_problems_lists_all_and_unknown_keys() -> None:
    found = field_problems(SendOptions, {"batch_size": -1, "bogus": 1, "timeout_seconds": 0})
    assert [key for key, _ in found] == ["batch_size", "bogus", "timeout_seconds"]


def test_lists_become_tuples_and_property_values_strings() -> None:
    options = MappingOptions(include_prefixes=["a_"],  # type: ignore[arg-type]
                             properties={"n": 3})  # type: ignore[dict-item]
    assert options.include_prefixes == ("a_",)
    assert options.properties == {"n": "3"}
