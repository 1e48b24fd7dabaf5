"""Tests of mlwatcher_exporter.bridge.config: YAML loading, validation, token reading."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Dict

import pytest
import yaml

from mlwatcher_exporter.bridge.config import (
    BridgeConfig, ConfigError, DeadLetterOptions, MappingOptions, SendOptions, SpoolOptions,
    Target, load_config, parse_config, read_token,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "anodot.yml"


def minimal(**extra: Any) -> Dict[str, Any]:
    data: Dict[str, Any] = {"anodot": {"base_url": "http://127.0.0.1:1"},
                            "spool": {"directory": "/tmp/spool"}}
    data.update(extra)
    return data


def test_example_file_loads_and_documents_every_default() -> None:
    config = load_config(EXAMPLE)
    raw = yaml.safe_load(EXAMPLE.read_text())
    for section, cls in (("mapping", MappingOptions), ("sending", SendOptions),
                         ("spool", SpoolOptions), ("dead_letter", DeadLetterOptions)):
        documented = set(raw[section]) - {"directory"}
        assert documented == {f.name for f in fields(cls)}, f"{section} is not fully documented"
        assert getattr(config, section) == cls(), f"{section} defaults differ from the code"
    assert config.interval_seconds == BridgeConfig.interval_seconds
    assert config.token_env == "ANODOT_TOKEN" and config.token_file is None
    assert config.scrape_timeout_seconds == 10 and config.metrics_port is None


def test_minimal_config_gets_the_defaults() -> None:
    config = parse_config(minimal())
    assert config.sending == SendOptions() and config.mapping == MappingOptions()
    assert config.spool_directory == "/tmp/spool" and config.targets == ()


def test_targets_as_urls_or_mappings() -> None:
    config = parse_config(minimal(scrape={"targets": [
        "http://127.0.0.1:8000/metrics",
        {"url": "http://127.0.0.1:8001/metrics", "properties": {"instance": "b", "shard": 2}},
    ]}))
    assert config.targets == (
        Target("http://127.0.0.1:8000/metrics", {}),
        Target("http://127.0.0.1:8001/metrics", {"instance": "b", "shard": "2"}),
    )


def test_every_problem_is_reported_with_its_key_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({
            "anodot": {"base_url": "ftp://x", "token_env": None, "tokn": 1},
            "interval_seconds": 0,
            "scrape": {"targets": ["not a url", {"url": "http://h/m", "properties": {"a": ""}}]},
            "mapping": {"counters": "sum", "properties": {"what": "x"}},
            "sending": {"batch_size": 5000, "points_per_second": "fast"},
            "spool": {"max_bytes": 10},
            "metrics": {"port": 70000},
            "extra": 1,
        }, "test.yml")
    problems = info.value.problems
    expected = [
        "extra: unknown key",
        "anodot.tokn: unknown key",
        "anodot.base_url: 'ftp://x' is not an http(s) address",
        "interval_seconds: 0",
        "scrape.targets[0].url: 'not a url'",
        "scrape.targets[1].properties",
        "metrics.port: 70000",
        "spool.directory: required",
        "mapping.counters: counters == 'sum', must be one of ['delta', 'gauge']",
        "sending.batch_size: batch_size == 5000, must be <= 1000",
        "sending.points_per_second: points_per_second == 'fast', must be a number",
        "spool.max_bytes: max_bytes == 10, must be >= 1024",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in problems), (text, problems)
    assert str(info.value).startswith(f"test.yml has {len(problems)} problems:")


def test_infinite_durations_are_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(interval_seconds=float("inf"),
                             scrape={"timeout_seconds": float("inf")}))
    assert [p.split(":")[0] for p in info.value.problems] == [
        "interval_seconds", "scrape.timeout_seconds"]


def test_cross_field_checks() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(mapping={"properties": {"ver": "2"}},
                             sending={"backoff_initial_seconds": 10, "backoff_max_seconds": 1}))
    text = str(info.value)
    assert "mapping.properties: properties.ver is reserved" in text
    assert "sending.backoff_max_seconds" in text


def test_base_url_with_a_token_query_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(anodot={"base_url": "https://h/?token=SECRET99"}))
    assert "SECRET99" not in str(info.value)


@pytest.mark.parametrize("url", ["http://h/#frag", "http://h:port/", "http://[::1/"])
def test_base_url_the_client_would_refuse_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="anodot.base_url: "):
        parse_config(minimal(anodot={"base_url": url}))


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("anodot: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    bad.write_text("- a list")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)


def test_token_from_environment() -> None:
    config = parse_config(minimal(anodot={"base_url": "http://h", "token_env": "MY_TOKEN"}))
    assert read_token(config, {"MY_TOKEN": " abc \n"}) == "abc"
    with pytest.raises(ConfigError, match="MY_TOKEN is not set"):
        read_token(config, {})


def test_token_from_file_wins(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("from-file\n")
    config = parse_config(minimal(anodot={"base_url": "http://h", "token_file": str(path)}))
    assert read_token(config, {"ANODOT_TOKEN": "from-env"}) == "from-file"
    path.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        read_token(config, {})
    path.write_text("two words")
    with pytest.raises(ConfigError) as info:
        read_token(config, {})
    assert "two" not in str(info.value)


def test_missing_token_file_is_reported(tmp_path: Path) -> None:
    config = parse_config(minimal(anodot={"base_url": "http://h",
                                          "token_file": str(tmp_path / "nope")}))
    with pytest.raises(ConfigError, match="cannot read"):
        read_token(config, {})


def test_naming_is_read_and_checked() -> None:
    config = parse_config(minimal(mapping={"naming": "mlwatcher-v1"}))
    assert config.mapping.naming == "mlwatcher-v1"
    with pytest.raises(ConfigError, match="mapping.naming: naming == 'v1', must be one of"):
        parse_config(minimal(mapping={"naming": "v1"}))
