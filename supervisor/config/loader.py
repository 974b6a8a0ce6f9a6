"""Reading a team config file: bounded bytes, then strict and bounded YAML, then the models.

PyYAML's SafeLoader is kept, with what it gets wrong for a config corrected:
it lets the last of two equal keys win silently, reads a bare `on:` key as
`true` (YAML 1.1), and expands aliases without limit, so that a few hundred
bytes can stand for a billion nodes. The file itself must be a regular file
of bounded size: a FIFO would block the read forever and /dev/zero never end.
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


class _StrictLoader(yaml.SafeLoader):
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
        self._sizes[id(node)] = size = self._size(node)
        if size[0] > MAX_YAML_NODES:
            raise _Refused(node.start_mark, f"this value expands to more than {MAX_YAML_NODES} YAML nodes (aliases included)")
        if size[1] > MAX_YAML_TEXT:
            raise _Refused(node.start_mark, f"this value expands to more than {MAX_YAML_TEXT} characters (aliases included)")
        return node

    def _size(self, node: Any) -> tuple[int, int]:
        if isinstance(node, yaml.ScalarNode):
            self._check_scalar(node)
            return 1, len(node.value)
        children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
        nodes, chars = 1, 0
        for child in children:
            child_nodes, child_chars = self._sizes[id(child)]
            nodes, chars = nodes + child_nodes, chars + child_chars
        return nodes, chars

    @staticmethod
    def _check_scalar(node: yaml.ScalarNode) -> None:
        if node.tag == _INT_TAG and len(node.value) > MAX_INT_CHARS:
            raise _Refused(node.start_mark, f"an integer of {len(node.value)} characters is too large")
        surrogate = _SURROGATE.search(node.value)
        if surrogate:
            raise _Refused(node.start_mark, f"{ascii(surrogate.group())[1:-1]} is half of a surrogate pair, not a character")

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # complex keys are left to the constructor
            if key_node.tag == _BOOL_TAG and key_node.style is None and key_node.value.lower() == "on":
                key_node.tag = _STR_TAG  # `on:` is the hooks' key, not YAML 1.1's true
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise _DuplicateKey(line, key, first_line[key])
            first_line[key] = line
        return node

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        """PyYAML's constructors raise plain ValueError for some values (`2024-13-45` as a date)."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as exc:
            raise _Refused(node.start_mark, f"cannot read {show(node.value) if isinstance(node.value, str) else 'this value'} as {node.tag.rsplit(':', 1)[-1]}: {exc}") from None


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


def _parse_yaml(text: str, label: str) -> Any:
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
