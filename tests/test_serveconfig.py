"""The service configuration: models inheriting the top-level options, every problem at
once with its key path."""

from pathlib import Path

import pytest

from mlwatcher_exporter.configfile import ConfigError
from mlwatcher_exporter.serveconfig import MAX_MODELS, load_serve_config, parse_serve_config

ROOT = Path(__file__).parent.parent


def test_the_shipped_files():
    service = load_serve_config(ROOT / "config" / "serve.yml")
    assert [m.model for m in service.models] == ["fraud", "digits"]
    assert service.models[1].window_seconds == 30 and service.models[0].window_seconds == 60
    assert service.api.max_body_bytes == 16 << 20 and service.api.token_env == "MLWATCHER_TOKEN"
    single = load_serve_config(ROOT / "config" / "mlwatcher.yml")
    assert [m.model for m in single.models] == ["default"]


def test_top_level_options_are_defaults_of_every_model():
    service = parse_serve_config({"reservoir_size": 50, "models": [
        {"model": "a"}, {"model": "b", "reservoir_size": 7, "n_classes": 3}]})
    assert [(m.model, m.reservoir_size, m.n_classes) for m in service.models] == \
        [("a", 50, None), ("b", 7, 3)]


def test_every_problem_with_its_path():
    with pytest.raises(ConfigError) as error:
        parse_serve_config({"models": [{"model": "a", "n_classes": 1}, {"model": "a"},
                                       {"model": "a"}, {}, "x",
                                       {"model": "c", "n_classes": 2,
                                        "class_names": ["u", "v", "w"]}],
                            "serve": {"workers": 0, "colour": 1, "body_timeout": -1},
                            "http": {"port": 70000}})
    problems = error.value.problems
    assert "models[0].n_classes == 1, must be an int >= 2 or null" in problems[0] or any(
        p.startswith("models[0].n_classes == 1") for p in problems)
    for start in ("models[2].model == 'a', must be unique (models[1] has it too)",
                  "models[3].model: missing", "models[4]: must be a mapping",
                  "models[5].class_names has 3 names", "serve.workers == 0",
                  "serve.colour: unknown option", "serve.body_timeout == -1",
                  "http.port == 70000"):
        assert any(p.startswith(start) for p in problems), (start, problems)


def test_bounds_of_the_list():
    with pytest.raises(ConfigError, match="must be a non-empty list"):
        parse_serve_config({"models": []})
    with pytest.raises(ConfigError, match=f"must have at most {MAX_MODELS}"):
        parse_serve_config({"models": [{"model": str(i)} for i in range(MAX_MODELS + 1)]})


def test_a_relative_token_file_is_next_to_the_configuration(tmp_path):
    path = tmp_path / "serve.yml"
    path.write_text("serve:\n  token_file: secrets/token\n")
    assert load_serve_config(path).api.token_file == str(tmp_path / "secrets" / "token")


def test_file_names_are_relative_to_the_file(tmp_path, monkeypatch):
    folder = tmp_path / "conf"
    folder.mkdir()
    path = folder / "serve.yml"
    path.write_text("models:\n  - model: a\n    reference: a.json\n"
                    "history:\n  directory: windows\n")
    monkeypatch.chdir(tmp_path)
    (model,) = load_serve_config(path).models
    assert model.reference == str(folder / "a.json")
    assert model.history.directory == str(folder / "windows")
