"""Reading a team config file: bounded bytes, then strict and bounded YAML, then the models.

PyYAML's SafeLoader is kept, with what it gets wrong for a config corrected:
it lets the last of two equal keys win silently, reads a bare `on:` key as
`true` (YAML 1.1), and expands aliases without limit, so that a few hundred
bytes can stand for a billion nodes. The file itself must be a regular file
of bounded size: a FIFO would block the read forever and /dev/zero never end.

Where PyYAML has LibYAML, a config is first parsed in C (a 1000-agent team's
file: 240-390 ms in Python, 50-70 ms so) and its node graph checked against
the same rules, by the same functions. A document that breaks one, that
LibYAML refuses, or that holds a tab (LibYAML reads some that PyYAML's
scanner refuses) is parsed again by the Python loader, whose error says
exactly what and where. So what is refused, and why, is the Python loader's
answer; the fast path only reads faster what it would have read.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from supervisor.config.errors import ConfigError, describe, show
from supervisor.config.models import TeamConfig

__all__ = ["MAX_CONFIG_BYTES", "MAX_YAML_DEPTH", "MAX_YAML_NODES", "MAX_YAML_TEXT", "load_config"]

MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_YAML_NODES = 100_000  # after alias expansion; a large team is a few thousand
MAX_YAML_TEXT = 16 * 1024 * 1024  # characters of all scalars, after alias expansion
MAX_YAML_DEPTH = 64  # the config's own structure is 6 deep; params may add 16
MAX_INT_CHARS = 100  # wide enough for any 64-bit integer in any YAML notation

_INT_TAG = "tag:yaml.org,2002:int"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Refused(Exception):
    """A document the loader will not build, with the line to look at."""

    def __init__(self, mark: Any, problem: str) -> None:
        super().__init__(f"line {mark.line + 1}: {problem}" if mark is not None else problem)


class _ReadsValuesStrictly:
    """PyYAML's constructors raise plain ValueError for some values (`2024-13-45` as a date): say where."""

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)  # type: ignore[misc]
        except (ValueError, TypeError, OverflowError) as exc:
            raise _Refused(node.start_mark, f"cannot read {show(node.value) if isinstance(node.value, str) else 'this value'} as {node.tag.rsplit(':', 1)[-1]}: {exc}") from None


class _StrictLoader(_ReadsValuesStrictly, yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and documents too large once aliases are expanded.

    The duplicate check runs as each mapping is composed, before `<<` merge
    keys are flattened, so a key that deliberately overrides a merged one is
    not flagged. Sizes are counted as nodes are composed: an alias counts as
    the whole node it repeats, so an alias bomb is refused at the level where
    it first grows too large, long before anything is expanded.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, characters), once composed

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:
                raise _Refused(event.start_mark, f"alias *{event.anchor} refers to a node that contains it")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(self.peek_event().start_mark, f"nested deeper than {MAX_YAML_DEPTH} levels")
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = _size_of(node, self._sizes)
        return node

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        _check_keys(self, node)
        return node


def _size_of(node: Any, sizes: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(nodes, characters) of `node` with its aliases expanded, from its children's in `sizes`; refuses too large."""
    if isinstance(node, yaml.ScalarNode):
        _check_scalar(node)
        nodes, chars = 1, len(node.value)
    else:
        nodes, chars = 1, 0
        for child in _children(node):
            child_nodes, child_chars = sizes[id(child)]
            nodes, chars = nodes + child_nodes, chars + child_chars
    if nodes > MAX_YAML_NODES:
        raise _Refused(node.start_mark, f"this value expands to more than {MAX_YAML_NODES} YAML nodes (aliases included)")
    if chars > MAX_YAML_TEXT:
        raise _Refused(node.start_mark, f"this value expands to more than {MAX_YAML_TEXT} characters (aliases included)")
    return nodes, chars


def _children(node: Any) -> list[Any]:
    """A collection's nodes in document order: a sequence's items, a mapping's keys and values in turn."""
    return list(node.value) if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]


def _check_keys(loader: Any, node: yaml.MappingNode) -> None:
    """A bare `on:` is the hooks' key, not YAML 1.1's true; two equal keys are refused."""
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
            continue  # complex keys are left to the constructor
        if key_node.tag == _BOOL_TAG and not key_node.style and key_node.value.lower() == "on":
            key_node.tag = _STR_TAG  # a plain scalar: its style is None from PyYAML, "" from LibYAML
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in first_line:
            raise _DuplicateKey(line, key, first_line[key])
        first_line[key] = line


def _check_scalar(node: yaml.ScalarNode) -> None:
    if node.tag == _INT_TAG and len(node.value) > MAX_INT_CHARS:
        raise _Refused(node.start_mark, f"an integer of {len(node.value)} characters is too large")
    surrogate = _SURROGATE.search(node.value)
    if surrogate:
        raise _Refused(node.start_mark, f"{ascii(surrogate.group())[1:-1]} is half of a surrogate pair, not a character")


class _DuplicateKey(Exception):
    def __init__(self, line: int, key: Any, first_line: int) -> None:
        super().__init__(f"line {line}: duplicate key {show(key)} (first on line {first_line})")


def _read_bytes(path: Path, label: str) -> bytes:
    """The file's bytes, if it is a regular file of at most MAX_CONFIG_BYTES.

    O_NONBLOCK makes opening a FIFO return at once instead of waiting for a
    writer; the file type is then checked on the open descriptor.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(label, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(label, None, f"cannot read: {os.strerror(errno.EISDIR)}")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(label, None, "cannot read: not a regular file (a pipe, device or socket)")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(label, None, f"the file is too large ({info.st_size} bytes; at most {MAX_CONFIG_BYTES})")
        with os.fdopen(fd, "rb", closefd=True) as stream:
            fd = -1
            data = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(label, None, f"cannot read: {exc.strerror or exc}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:  # it grew while we read
        raise ConfigError(label, None, f"the file is too large (more than {MAX_CONFIG_BYTES} bytes)")
    return data


def _read_text(path: Path, label: str) -> str:
    data = _read_bytes(path, label)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise ConfigError(label, None, f"line {line}: not valid UTF-8 (byte 0x{bad})") from None


_CSafeLoader: Any = getattr(yaml, "CSafeLoader", None)  # None: PyYAML built without LibYAML


class _Unclean(Exception):
    """The fast path found something to refuse; the Python loader says what."""


if _CSafeLoader is not None:

    class _FastLoader(_ReadsValuesStrictly, _CSafeLoader):  # type: ignore[misc, valid-type]
        """LibYAML composes; the graph is checked against every rule before anything is built."""

        def get_single_data(self) -> Any:
            node = self.get_single_node()
            if node is None:
                return None
            _check_graph(self, node)
            return self.construct_document(node)


def _check_graph(loader: Any, root: Any) -> None:
    """The rules `_StrictLoader` applies while composing, applied to a composed graph; raises if one is broken.

    Depth-first in document order, so an anchor is met before its aliases: a
    node met again is an alias (counted whole, not walked again), and one met
    again while it is still being walked is an alias inside its own anchor.
    """
    sizes: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Any, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, walked = stack.pop()
        key = id(node)
        if walked:
            open_nodes.discard(key)
            sizes[key] = _size_of(node, sizes)
            continue
        if key in open_nodes:
            raise _Unclean  # an alias inside the node it names
        if key in sizes:
            continue  # an alias: its node was walked where it was anchored
        if depth > MAX_YAML_DEPTH:
            raise _Unclean
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = _size_of(node, sizes)
            continue
        if isinstance(node, yaml.MappingNode):
            _check_keys(loader, node)
        open_nodes.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in reversed(_children(node)))


def _parse_yaml(text: str, label: str) -> Any:
    if _CSafeLoader is not None and "\t" not in text:  # LibYAML takes tabs where PyYAML's scanner does not
        try:
            return yaml.load(text, Loader=_FastLoader)  # noqa: S506 - a CSafeLoader subclass
        except Exception:  # noqa: BLE001 - refused, or not parsed by LibYAML: the Python loader says why
            pass
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except (_DuplicateKey, _Refused) as exc:
        raise ConfigError(label, None, str(exc)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid YAML"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(label, None, f"YAML syntax error{where}: {what}") from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ConfigError(label, None, f"line {line}: unacceptable character #x{exc.character:04x} ({exc.reason})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(label, None, f"YAML error: {exc}") from None
    except RecursionError:
        raise ConfigError(label, None, "YAML nesting is too deep") from None


def load_config(path: str | os.PathLike[str]) -> TeamConfig:
    """Read, parse and validate a team config file; any problem is a one-line ConfigError."""
    label = os.fspath(path)
    source = Path(label)
    data = _parse_yaml(_read_text(source, label), label)
    if data is None:
        raise ConfigError(label, None, "the file is empty (expected a mapping with team, storage and agents)")
    if not isinstance(data, dict):
        raise ConfigError(label, None, f"the top level must be a mapping of keys (got {describe(data)})")
    return TeamConfig.from_mapping(data, source=source, base_dir=source.absolute().parent)
