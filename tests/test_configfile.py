"""The configuration loader: bounds, refused anchors and aliases, duplicate keys, key paths."""

import os
import pickle
import time
import tracemalloc

import pytest

from mlwatcher_exporter.configfile import (
    _parse,
    _PurePythonLoader,
    _StrictLoader,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    MAX_PROBLEMS_SHOWN,
    ConfigError,
    join_path,
    key_text,
    load_yaml,
    parse_yaml,
    unknown_keys,
)


def problems_of(text, source="t.yml"):
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, source)
    return caught.value.problems


def billion_laughs(levels=9, width=9):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        name, previous = chr(97 + level), chr(96 + level)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_plain_documents():
    assert parse_yaml("") is None
    assert parse_yaml("a: [1, 2.5, true, null, x]\nb: {c: d}") == {
        "a": [1, 2.5, True, None, "x"], "b": {"c": "d"}}
    assert parse_yaml("\ufeffa: 1".encode("utf-16")) == {"a": 1}


def test_error_format_singular_plural_and_shortened():
    assert str(ConfigError(["x: bad"], "f.yml")) == "f.yml has 1 problem:\n  x: bad"
    many = ConfigError([f"k{i}: bad" for i in range(MAX_PROBLEMS_SHOWN + 7)], "f.yml")
    text = str(many)
    assert text.startswith(f"f.yml has {MAX_PROBLEMS_SHOWN + 7} problems:\n")
    assert text.endswith("  ... and 7 more") and len(many.problems) == MAX_PROBLEMS_SHOWN + 7
    copy = pickle.loads(pickle.dumps(many))
    assert copy.problems == many.problems and copy.source == "f.yml"
    assert isinstance(many, ValueError)


def test_duplicate_keys_are_errors_with_their_paths():
    problems = problems_of("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n")
    assert problems == ["b.c: duplicate key (first on line 3)",
                        "a: duplicate key (first on line 1)"]
    assert problems_of("1: x\n1.0: y") == ["1.0: duplicate key (first on line 1)"]


def test_anchors_and_aliases_are_refused_each_with_its_path():
    problems = problems_of("base: &b {port: 1}\nhttp: *b\nlist: [1, *b]\n")
    assert problems == [
        "base: anchor &b is not allowed (anchors and aliases are refused; line 1, column 7)",
        "http: alias *b is not allowed (anchors and aliases are refused; line 2, column 7)",
        "list[1]: alias *b is not allowed (anchors and aliases are refused; line 3, column 11)",
    ]
    assert problems_of("*undefined") == [
        "top level: alias *undefined is not allowed (anchors and aliases are refused; "
        "line 1, column 1)"]


def test_billion_laughs_fails_fast_in_bounded_memory():
    text = billion_laughs()
    assert len(text) < 500  # expanded, 9**9 = 387 million strings
    tracemalloc.start()
    started = time.perf_counter()
    try:
        problems = problems_of(text)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0 and peak < 2 * 1024 * 1024, (elapsed, peak)
    assert len(problems) == 9 + 8 * 9  # each anchor and each alias, once
    assert str(ConfigError(problems)).count("\n") == MAX_PROBLEMS_SHOWN + 1


def test_billion_laughs_file_through_load_yaml(tmp_path):
    path = tmp_path / "lol.yml"
    path.write_text(billion_laughs())
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="anchors and aliases are refused"):
        load_yaml(path)
    assert time.perf_counter() - started < 2.0


def test_merge_keys_tags_and_non_scalar_keys():
    assert problems_of("<<: {a: 1}") == [
        "top level: merge keys (<<) are not allowed (line 1, column 1)"]
    assert problems_of("a: !!set {x, y}") == [
        "a: unsupported YAML tag 'tag:yaml.org,2002:set' (line 1, column 4)"]
    assert problems_of("a: !python/object:os.system x")[0].startswith(
        "a: could not determine a constructor for the tag '!python/object:os.system'")
    assert problems_of("? [1]\n: 2") == [
        "top level: a key must be a string or a number, not a list (line 1, column 3)"]
    assert problems_of("a: 2001-13-45")[0].startswith("a: month must be in 1..12")
    assert problems_of("a: " + "9" * 5000)[0].startswith("a: ")


def test_numeric_and_null_keys_keep_their_yaml_text():
    assert parse_yaml("2: a\nnull: b\ntrue: c") == {2: "a", None: "b", True: "c"}
    assert [key_text(k) for k in (1, None, True, "x", 2.5)] == ["1", "null", "true", "x", "2.5"]
    assert join_path("", 1) == "1" and join_path("http", None) == "http.null"
    assert unknown_keys({1: 0, None: 0, "port": 0}, ["port"]) == [
        "1: unknown option, expected one of ['port']",
        "null: unknown option, expected one of ['port']"]


def test_bounds_on_depth_and_nodes():
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    assert problems_of(deep) == [f"nested more than {MAX_DEPTH} levels deep (line 1), the limit"]
    assert parse_yaml("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)) is not None
    many = "[" + ",".join(["0"] * MAX_NODES) + "]"
    started = time.perf_counter()
    assert problems_of(many) == [
        f"more than {MAX_NODES} values (the limit); is this a config file?"]
    assert time.perf_counter() - started < 10
    assert problems_of("---\na\n---\nb")[0].startswith(
        "invalid YAML: expected a single document in the stream in 't.yml', line 2")


def test_syntax_errors_name_the_file_on_one_line():
    (problem,) = problems_of("model: [unclosed\n", "my.yml")
    assert problem.startswith("invalid YAML: while parsing a flow sequence in 'my.yml', line 1")
    assert "\n" not in problem


def test_files_that_cannot_be_read(tmp_path):
    def problem(path):
        with pytest.raises(ConfigError) as caught:
            load_yaml(path)
        assert caught.value.source == os.fspath(path)
        return caught.value.problems

    assert problem(tmp_path / "missing.yml") == ["cannot read: No such file or directory"]
    assert problem(tmp_path) == ["cannot read: is a directory"]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert problem(fifo) == ["cannot read: not a regular file"]
    huge = tmp_path / "huge.yml"
    with open(huge, "wb") as stream:
        stream.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    assert problem(huge) == [f"cannot read: larger than {MAX_FILE_BYTES} bytes (the limit)"]
    binary = tmp_path / "binary.yml"
    binary.write_bytes(bytes(range(256)) * 4)
    assert problem(binary)[0].startswith("invalid YAML: unacceptable character #x0000")
    latin = tmp_path / "latin.yml"
    latin.write_bytes("model: caf\u00e9\n".encode("latin-1"))
    assert "UTF-8" in problem(latin)[0]
    assert problem(str(tmp_path / "nul\0.yml"))[0].startswith("cannot read: ")


@pytest.mark.parametrize("text", [
    "a: [1, 2.5, true, null, x]\nb: {c: d}",
    "a: 1\nb:\n  c: 1\n  c: 2\na: 3\n",
    "base: &b {port: 1}\nhttp: *b\nlist: [1, *b]\n",
    billion_laughs(),
    "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
    "<<: {a: 1}\n? [1]\n: 2\nx: !!set {a}\n",
])
def test_the_pure_python_parser_gives_the_same_answers(text):
    """Where PyYAML lacks libyaml, the pure-Python parser must refuse the same things."""
    def answer(loader):
        try:
            return _parse(text, "t.yml", _loader=loader)
        except ConfigError as error:
            return error.problems

    assert answer(_PurePythonLoader) == answer(_StrictLoader)
