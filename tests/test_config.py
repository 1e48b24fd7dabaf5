"""Configuration files: defaults documented, every problem reported with its key path."""

from pathlib import Path

import pytest

import numpy as np

from mlwatcher_exporter import ConfigError as PublicConfigError
from mlwatcher_exporter.bridge import ConfigError as BridgeConfigError
from mlwatcher_exporter.config import (
    LIMITS,
    MAX_RESERVOIR_CELLS,
    MAX_RESERVOIR_SIZE,
    ConfigError,
    HttpSettings,
    MonitorSettings,
    check_monitor_arguments,
    check_settings,
    load_config,
    memory_estimate,
    parse_config,
)

FIXTURES = Path(__file__).parent / "fixtures" / "config"
SHIPPED = Path(__file__).parent.parent / "config" / "mlwatcher.yml"


def file_problems(tmp_path, text):
    """The problems load_config finds in a file of ``text``."""
    path = tmp_path / "c.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.source == str(path)
    return caught.value.problems


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
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="http: must be a mapping with addr and port, got 5"):
        parse_config({"http": 5})


def test_check_settings_messages():
    assert check_settings(window_seconds=1, reservoir_size=1) == []
    assert check_settings(feature_names=["a", "a"]) == [
        "feature_names == ['a', 'a'], must not repeat a name"]
    assert check_settings(categorical_features=[3], feature_names=["a"]) == [
        "categorical_features[0] == 3, must be < 1 (the number of feature_names)"]
    assert check_settings(n_classes=True) == [
        "n_classes == True, must be an int in [2, 1000] or null"]


def test_one_config_error_for_the_monitor_and_the_bridge():
    assert ConfigError is PublicConfigError is BridgeConfigError


def test_unknown_keys_list_every_option_including_http():
    with pytest.raises(ConfigError) as caught:
        parse_config({"colour": 1})
    (problem,) = caught.value.problems
    assert problem.startswith("colour: unknown option, expected one of [")
    for option in list(MonitorSettings.__dataclass_fields__):
        assert repr(option) in problem, option


@pytest.mark.parametrize("document, problem", [
    ({1: "x"}, "1: unknown option"),
    ({None: "x"}, "null: unknown option"),
    ({True: "x"}, "true: unknown option"),
    ({"http": {0: 1}}, "http.0: unknown option"),
    ({"http": [1]}, "http: must be a mapping"),
])
def test_non_string_keys_are_problems_not_crashes(document, problem):
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    assert caught.value.problems[0].startswith(problem), caught.value.problems


def test_huge_values_are_refused_before_allocating(tmp_path):
    text = "reservoir_size: 1000000000000\nn_classes: 100000\nmax_categories: 10**9\n"
    assert file_problems(tmp_path, text) == [
        f"reservoir_size == 1000000000000, must be an int <= {MAX_RESERVOIR_SIZE} (the limit)",
        "n_classes == 100000, must be an int <= 1000 (the limit)",
        "max_categories == '10**9', must be an int in [1, 1000]",
    ]
    assert set(LIMITS) <= set(MonitorSettings.__dataclass_fields__)


def test_lists_longer_than_their_bound_are_refused():
    with pytest.raises(ConfigError, match=r"feature_names has 10001 items, must have at most"):
        parse_config({"feature_names": [f"f{i}" for i in range(10_001)]})


def test_reservoir_times_columns_is_bounded():
    names = [f"f{i}" for i in range(997)]  # + 2 classes + 3 = 1002 columns
    settings = parse_config({"n_classes": 2, "feature_names": names,
                             "reservoir_size": MAX_RESERVOIR_CELLS // 1002})
    assert memory_estimate(settings) <= 3 * 8 * MAX_RESERVOIR_CELLS
    with pytest.raises(ConfigError) as caught:
        parse_config({"n_classes": 2, "feature_names": names, "reservoir_size": 100_000})
    (problem,) = caught.value.problems
    assert problem.startswith(f"reservoir_size == 100000, must be <= {MAX_RESERVOIR_CELLS // 1002}")


def test_memory_estimate():
    assert memory_estimate(MonitorSettings()) is None
    settings = MonitorSettings(reservoir_size=1000, class_names=("a", "b"), feature_names=("x",))
    assert memory_estimate(settings) == 3 * 1000 * (2 + 1 + 3) * 8
    assert memory_estimate(MonitorSettings(reservoir_size=10, n_classes=2), n_features=5) == 2400


# ---------------------------------------------------------------- keyword arguments
def test_keyword_arguments_are_normalised():
    settings = check_monitor_arguments(
        model="m", class_names=np.array(["no", "yes"]), feature_names=("a", "b"),
        categorical_features=["b", 0], window_seconds=5, threshold=1, reservoir_size=np.int64(8))
    assert settings.class_names == ("no", "yes") and settings.feature_names == ("a", "b")
    assert settings.categorical_features == ("b", 0)
    assert settings.window_seconds == 5.0 and isinstance(settings.window_seconds, float)
    assert settings.threshold == 1.0 and type(settings.reservoir_size) is int
    assert check_monitor_arguments() == MonitorSettings()
    assert check_monitor_arguments(categorical_features=None).categorical_features == ()


@pytest.mark.parametrize("arguments, error, message", [
    ({"feature_names": "amount"}, TypeError,
     "feature_names == 'amount', must be a list of feature names or null"),
    ({"categorical_features": "plan"}, TypeError,
     "categorical_features == 'plan', must be a list of feature names or column indices"),
    ({"categorical_features": [1.5]}, TypeError,
     "categorical_features[0] == 1.5, must be a feature name or a column index"),
    ({"class_names": {"a": 1, "b": 2}}, TypeError, "class_names == {'a': 1, 'b': 2}, must be"),
    ({"class_names": [[1], [2]]}, TypeError, "class_names[0] == [1], must be a string"),
    ({"class_names": ["a"]}, ValueError, "class_names == ['a'], must name at least 2 classes"),
    ({"n_classes": 2.0}, TypeError, "n_classes == 2.0, must be an int in [2, 1000] or null"),
    ({"window_seconds": float("inf")}, ValueError, "window_seconds == inf, must be a finite"),
    ({"window_seconds": "60"}, TypeError, "window_seconds == '60', must be a number"),
    ({"threshold": 2}, ValueError, "threshold == 2, must be a number in [0, 1]"),
    ({"random_state": -1}, ValueError, "random_state == -1, must be an int >= 0 or null"),
    ({"model": None}, TypeError, "model == None, must be a non-empty string"),
    ({"reservoir_size": 10 ** 12}, ValueError, "reservoir_size == 1000000000000, must be"),
    ({"modle": "x"}, ValueError, "unknown argument 'modle', expected one of ["),
    ({"threshold": "x" * 10_000}, TypeError, "threshold == 'xxxx"),
])
def test_keyword_argument_errors_name_argument_value_and_expectation(arguments, error, message):
    with pytest.raises(error) as caught:
        check_monitor_arguments(**arguments)
    if message is not None:
        assert str(caught.value).startswith(message), str(caught.value)
    assert len(str(caught.value)) < 300  # values are shortened, never printed whole


def test_every_keyword_argument_problem_is_named_and_the_first_sets_the_type():
    with pytest.raises(TypeError) as caught:
        check_monitor_arguments(feature_names="amount", threshold=7)
    assert str(caught.value) == ("feature_names == 'amount', must be a list of feature names "
                                 "or null; threshold == 7, must be a number in [0, 1]")


def test_files_and_keyword_arguments_share_their_messages(tmp_path):
    with pytest.raises(TypeError) as direct:
        check_monitor_arguments(feature_names="amount")
    assert file_problems(tmp_path, "feature_names: amount\n") == [str(direct.value)]


def test_problems_of_the_file_and_of_the_values_are_reported_together(tmp_path):
    text = "model: a\nmodel: b\nthreshold: 2\nreservoir_size: *big\nhttp: {port: -1}\n"
    assert file_problems(tmp_path, text) == [
        "model: duplicate key (first on line 1)",
        "reservoir_size: alias *big is not allowed (anchors and aliases are refused; "
        "line 4, column 17)",
        "threshold == 2, must be a number in [0, 1]",
        "http.port == -1, must be a TCP port in [0, 65535] (0 picks a free one)",
    ]


def test_late_label_bounds_are_checked_in_files_and_arguments():
    settings = parse_config({"max_ids": 5000, "id_ttl_seconds": 3600})
    assert settings.max_ids == 5000 and settings.id_ttl_seconds == 3600.0
    with pytest.raises(ConfigError) as caught:
        parse_config({"max_ids": 0, "id_ttl_seconds": -1})
    assert caught.value.problems == [
        "max_ids == 0, must be an int >= 1",
        "id_ttl_seconds == -1, must be a number of seconds > 0",
    ]
    with pytest.raises(ValueError, match=r"max_ids == 10000001, must be an int <= 10000000"):
        check_monitor_arguments(max_ids=10_000_001)
    with pytest.raises(TypeError, match=r"id_ttl_seconds == '1h', must be a number"):
        check_monitor_arguments(id_ttl_seconds="1h")
    assert LIMITS["max_ids"] == 10_000_000


def test_file_names_in_a_file_are_relative_to_it(tmp_path, monkeypatch):
    folder = tmp_path / "conf"
    folder.mkdir()
    path = folder / "model.yml"
    path.write_text("reference: profiles/ref.json\nhistory:\n  directory: history\n")
    monkeypatch.chdir(tmp_path)  # not the file's folder
    settings = load_config(path)
    assert settings.reference == str(folder / "profiles" / "ref.json")
    assert settings.history.directory == str(folder / "history")
    path.write_text(f"reference: {tmp_path / 'abs.json'}\n")
    assert load_config(path).reference == str(tmp_path / "abs.json")
    # A mapping has no file: its names stay as given.
    assert parse_config({"reference": "ref.json"}).reference == "ref.json"
