"""Reading configuration files: one loader and one error for the monitor and the bridge.

:func:`load_yaml` reads a YAML file within fixed bounds and returns plain Python data
(dicts, lists, strings, numbers, booleans, None). A file that is too large, is not a
regular file, is not UTF-8 (or UTF-16 with a BOM) text, uses anchors or aliases, repeats
a key, nests too deeply or has too many nodes raises :class:`ConfigError`, which lists
every problem found, each prefixed with its key path::

    config/mlwatcher.yml has 2 problems:
      http.port: duplicate key (first on line 12)
      feature_names[1]: anchors and aliases are not allowed (line 7, column 5)

Aliases are refused, never expanded, so a "billion laughs" file fails in the time it
takes to read it. The bounds are :data:`MAX_FILE_BYTES`, :data:`MAX_DEPTH` and
:data:`MAX_NODES`.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = [
    "ConfigError",
    "MAX_FILE_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_PROBLEMS_SHOWN",
    "check_file",
    "load_yaml",
    "parse_yaml",
    "read_yaml",
    "join_path",
    "key_text",
    "unknown_keys",
]

#: Largest configuration file read, in bytes (1 MiB: some 50,000 feature names).
MAX_FILE_BYTES = 1024 * 1024
#: Deepest nesting of mappings and lists (the shipped files use 3 levels).
MAX_DEPTH = 32
#: Most YAML nodes (scalars, lists, mappings) in one file: reading that many takes about
#: a second and 20 MB.
MAX_NODES = 50_000
#: Problems printed by ``str(ConfigError)``; :attr:`ConfigError.problems` keeps them all.
MAX_PROBLEMS_SHOWN = 50

PathLike = Union[str, "os.PathLike[str]"]
T = TypeVar("T")

# The C parser when PyYAML was built with libyaml: about six times faster.
_Parser: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_DEFAULT_TAGS = {
    "tag:yaml.org,2002:map": MappingNode,
    "tag:yaml.org,2002:seq": SequenceNode,
}


class ConfigError(ValueError):
    """A configuration with problems.

    Parameters
    ----------
    problems : iterable of str
        Each as ``"key.path: message"`` (or ``"key.path == value, must ..."``).
    source : str, default="configuration"
        The file name or another description of where the configuration came from.

    Attributes
    ----------
    problems : list of str
        Every problem found.
    source : str
        As given.

    Examples
    --------
    >>> error = ConfigError(["http.port == 70000, must be <= 65535"], "my.yml")
    >>> print(error)
    my.yml has 1 problem:
      http.port == 70000, must be <= 65535
    """

    def __init__(self, problems: Iterable[str], source: str = "configuration") -> None:
        self.problems = [str(p) for p in problems]
        self.source = str(source)
        count = len(self.problems)
        lines = [f"{self.source} has {count} problem{'' if count == 1 else 's'}:"]
        lines += [f"  {p}" for p in self.problems[:MAX_PROBLEMS_SHOWN]]
        if count > MAX_PROBLEMS_SHOWN:
            lines.append(f"  ... and {count - MAX_PROBLEMS_SHOWN} more")
        super().__init__("\n".join(lines))

    def __reduce__(self) -> Any:
        return (type(self), (self.problems, self.source))


def key_text(key: Any) -> str:
    """The text of a mapping key in a key path: strings as they are, others as YAML.

    >>> key_text("port"), key_text(1), key_text(None), key_text(True)
    ('port', '1', 'null', 'true')
    """
    if isinstance(key, str):
        return key
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return repr(key)


def join_path(path: str, key: Any) -> str:
    """The key path of mapping key ``key`` inside ``path`` (positions are ``path[0]``).

    >>> join_path("", "http"), join_path("http", "port"), join_path("http", 1)
    ('http', 'http.port', 'http.1')
    """
    return f"{path}.{key_text(key)}" if path else key_text(key)


def unknown_keys(
    data: Mapping[Any, Any], allowed: Sequence[str], path: str = ""
) -> List[str]:
    """Problems for every key of ``data`` not in ``allowed`` (non-string keys included).

    >>> unknown_keys({"port": 1, 2: 3, "colour": 4}, ["addr", "port"], "http")
    ["http.2: unknown option, expected one of ['addr', 'port']", \
"http.colour: unknown option, expected one of ['addr', 'port']"]
    """
    expected = sorted(allowed)
    return [
        f"{join_path(path, key)}: unknown option, expected one of {expected}"
        for key in data
        if not isinstance(key, str) or key not in allowed
    ]


def _where(node: Node) -> str:
    mark = node.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}"


# What to_python returns for a node it reported as a problem; mappings leave such keys out.
_SKIP = object()


class _Fatal(Exception):
    """A problem after which the rest of the document cannot be read."""


class _StrictLoader(Composer, _Parser):  # type: ignore[misc, valid-type]
    """A safe YAML loader that refuses anchors, aliases and documents beyond the bounds.

    PyYAML's own composer is replaced by this one, which never registers an anchor nor
    follows an alias: each is recorded as a problem and read as null. Duplicate and
    non-scalar keys are found by :meth:`to_python`, which builds the data with key paths.
    """

    _parser_class: Any = _Parser

    def __init__(self, stream: Union[str, bytes], source: str) -> None:
        self._parser_class.__init__(self, stream)
        self.anchors: dict = {}
        self.source = source
        self.problems: List[str] = []
        self._depth = 0
        self._nodes = 0

    # ---------------------------------------------------------------- composing
    def compose_node(self, parent: Optional[Node], index: Any) -> Node:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Fatal(f"more than {MAX_NODES} values (the limit); is this a config file?")
        event: Any = self.peek_event()
        node: Any
        if isinstance(event, yaml.AliasEvent):
            self.get_event()
            marks: Any = (event.start_mark, event.end_mark)  # C or Python marks
            node = ScalarNode("tag:yaml.org,2002:null", "", *marks)
            node.alias = event.anchor
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Fatal(f"nested more than {MAX_DEPTH} levels deep (line "
                         f"{event.start_mark.line + 1}), the limit")
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            event.anchor = None  # never registered, so no alias can refer to it
        node = super().compose_node(parent, index)
        if anchor is not None:
            node.anchor = anchor
        self._depth -= 1
        return node

    # ---------------------------------------------------------------- constructing
    def to_python(self, node: Node, path: str) -> Any:
        """Build plain data from ``node``, recording each problem under its key path."""
        shown = path or "top level"
        for attribute, sign in (("alias", "*"), ("anchor", "&")):
            name = getattr(node, attribute, None)
            if name is not None:
                self.problems.append(f"{shown}: {attribute} {sign}{name} is not allowed "
                                     f"(anchors and aliases are refused; {_where(node)})")
        if getattr(node, "alias", None) is not None:
            return _SKIP
        if type(node) is _DEFAULT_TAGS.get(node.tag):
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            items = [self.to_python(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
            return [None if item is _SKIP else item for item in items]
        if isinstance(node, ScalarNode):
            try:
                return self.construct_object(node, deep=True)
            except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
                problem = getattr(exc, "problem", None) or str(exc)
                self.problems.append(f"{shown}: {problem} ({_where(node)})")
                return _SKIP
        self.problems.append(f"{shown}: unsupported YAML tag {node.tag!r} ({_where(node)})")
        return _SKIP

    def _mapping(self, node: MappingNode, path: str) -> dict:
        result: dict = {}
        first_line: dict = {}
        where = path or "top level"
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                kind = "list" if isinstance(key_node, SequenceNode) else "mapping"
                self.problems.append(
                    f"{where}: a key must be a string or a number, not a {kind} "
                    f"({_where(key_node)})")
                continue
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problems.append(f"{where}: merge keys (<<) are not allowed "
                                     f"({_where(key_node)})")
                continue
            key = self.to_python(key_node, path)
            if key is _SKIP:
                continue
            if key in first_line:
                self.problems.append(
                    f"{join_path(path, key)}: duplicate key (first on line {first_line[key]})")
                continue
            first_line[key] = key_node.start_mark.line + 1
            value = self.to_python(value_node, join_path(path, key))
            if value is not _SKIP:
                result[key] = value
        return result


def parse_yaml(text: Union[str, bytes], source: str = "<string>") -> Any:
    """Parse one YAML document within the bounds; raise ConfigError listing every problem.

    Parameters
    ----------
    text : str or bytes
        The document; bytes are decoded as UTF-8 (or UTF-16 with a byte order mark).
    source : str, default="<string>"
        Where the text came from, for the messages.

    Returns
    -------
    object
        Plain data: dict, list, str, int, float, bool, None (and the values of the
        standard YAML scalar tags such as ``!!binary`` or ``!!timestamp``). An empty
        document gives None.

    Raises
    ------
    ConfigError
        For invalid YAML, anchors or aliases, duplicate keys, more than one document or
        a document beyond :data:`MAX_DEPTH` or :data:`MAX_NODES`.

    Examples
    --------
    >>> parse_yaml("http: {port: 0}")
    {'http': {'port': 0}}
    >>> parse_yaml("a: 1\\na: 2", "x.yml")
    Traceback (most recent call last):
      ...
    mlwatcher_exporter.configfile.ConfigError: x.yml has 1 problem:
      a: duplicate key (first on line 1)
    """
    data, problems = _parse(text, source)
    if problems:
        raise ConfigError(problems, source)
    return data


class _PurePythonLoader(_StrictLoader, yaml.SafeLoader):
    """The same loader on PyYAML's pure-Python parser (where libyaml is missing)."""

    _parser_class = yaml.SafeLoader


def _parse(text: Union[str, bytes], source: str,
           _loader: Any = _StrictLoader) -> Tuple[Any, List[str]]:
    """The data and the problems that did not stop the reading (ConfigError for those that
    did); the data leaves out what the problems are about."""
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError([f"larger than {MAX_FILE_BYTES} bytes (the limit)"], source)
    loader = _loader(text, source)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.to_python(node, "")
        if data is _SKIP:
            data = None
    except _Fatal as exc:
        raise ConfigError([str(exc)], source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"invalid YAML: {_yaml_message(exc, source)}"], source) from None
    except RecursionError:  # pragma: no cover - MAX_DEPTH keeps far below the limit
        raise ConfigError(["nested too deeply"], source) from None
    finally:
        loader.dispose()
    return data, loader.problems


def _yaml_message(exc: yaml.YAMLError, source: str) -> str:
    """PyYAML's message on one line, naming ``source`` instead of ``<byte string>``."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    for name in ('"<byte string>"', '"<unicode string>"', '"<file>"'):
        text = text.replace(name, repr(source))
    return text[:500]


def _read(path: PathLike) -> Tuple[str, bytes]:
    """The name and the bytes of the file at ``path``; ConfigError if it cannot be read."""
    source = os.fsdecode(os.fspath(path))
    try:
        info = os.stat(source)
        if stat.S_ISDIR(info.st_mode):
            problem = "cannot read: is a directory"
        elif not stat.S_ISREG(info.st_mode):
            problem = "cannot read: not a regular file"
        else:
            with open(source, "rb") as stream:
                data = stream.read(MAX_FILE_BYTES + 1)
            if len(data) <= MAX_FILE_BYTES:
                return source, data
            problem = f"cannot read: larger than {MAX_FILE_BYTES} bytes (the limit)"
    except OSError as exc:
        problem = f"cannot read: {exc.strerror or type(exc).__name__}"
    except ValueError as exc:  # e.g. a NUL character in the path
        problem = f"cannot read: {exc}"
    raise ConfigError([problem], source)


def load_yaml(path: PathLike) -> Any:
    """Read the YAML file at ``path`` within the bounds (see :func:`parse_yaml`).

    Raises
    ------
    ConfigError
        Also when the file is missing, unreadable, a directory, not a regular file, larger
        than :data:`MAX_FILE_BYTES` or not text.
    """
    data, problems = read_yaml(path)
    if problems:
        raise ConfigError(problems, os.fsdecode(os.fspath(path)))
    return data


def read_yaml(path: PathLike) -> Tuple[Any, List[str]]:
    """Like :func:`load_yaml`, but return the problems that did not stop the reading.

    Anchors, aliases, duplicate keys and values of unknown tags are such problems: the
    data leaves them out, so that a caller can check the rest and report every problem
    at once. ConfigError is raised for the others (unreadable file, invalid YAML, bounds).

    Returns
    -------
    data : object
        As :func:`parse_yaml` returns.
    problems : list of str
        ``"key.path: message"`` for each problem.
    """
    source, data = _read(path)
    return _parse(data, source)


def check_file(path: PathLike, parse: Callable[[Any, str], T]) -> T:
    """Read the file at ``path`` and check it with ``parse(data, source)``.

    ``parse`` raises ConfigError for the problems of the data; this raises one
    ConfigError with those of the file first, then those of the data.
    """
    data, problems = read_yaml(path)
    source = os.fsdecode(os.fspath(path))
    try:
        result = parse(data, source)
    except ConfigError as error:
        raise ConfigError(problems + error.problems, source) from None
    if problems:
        raise ConfigError(problems, source)
    return result
