"""Configuration files: defaults documented, every problem reported with its key path."""

from pathlib import Path

import pytest

from mlwatcher_exporter.config import (
    ConfigError,
    HttpSettings,
    MonitorSettings,
    check_settings,
    load_config,
    parse_config,
)

FIXTURES = Path(__file__).parent / "fixtures" / "config"
SHIPPED = Path(__file__).parent.parent / "config" / "mlwatcher.yml"


def test_shipped_file_documents_every_default():
    assert load_config(SHIPPED) == MonitorSettings()
    text = SHIPPED.read_text()
    for option in MonitorSettings.__dataclass_fields__:
        assert f"\n{option}:" in text, option
    for option in HttpSettings.__dataclass_fields__:
        assert f"  {option}:" in text, option


def test_valid_file():
    settings = load_config(FIXTURES / "valid.yml")
    assert settings.model == "churn" and settings.class_names == ("stays", "leaves")
    assert settings.window_seconds == 30.0 and settings.categorical_features == ("plan",)
    assert settings.http == HttpSettings(addr="127.0.0.1", port=0)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        load_config(FIXTURES / "many_problems.yml")
    problems = caught.value.problems
    expected = [
        "model == ''", "window_seconds == -5", "reservoir_size == 2.5", "threshold == 1.5",
        "max_categories == 0", "random_state == 'seed'", "colour: unknown option",
        "http.port == 70000", "http.host: unknown option", "class_names has 2 names",
        "categorical_features[0] == 'z'",
    ]
    for words in expected:
        assert any(p.startswith(words) for p in problems), (words, problems)
    assert len(problems) == len(expected)
    assert str(FIXTURES / "many_problems.yml") in str(caught.value)


def test_empty_and_malformed_documents(tmp_path):
    assert parse_config(None) == MonitorSettings()
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_config([1, 2])
    broken = tmp_path / "broken.yml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="http == 5"):
        parse_config({"http": 5})


def test_check_settings_messages():
    assert check_settings(window_seconds=1, reservoir_size=1) == []
    assert check_settings(feature_names=["a", "a"]) == [
        "feature_names == ['a', 'a'], must not repeat a name"]
    assert check_settings(categorical_features=[3], feature_names=["a"]) == [
        "categorical_features[0] == 3, must be < 1 (the number of feature_names)"]
    assert check_settings(n_classes=True) == ["n_classes == True, must be an int >= 2 or null"]
