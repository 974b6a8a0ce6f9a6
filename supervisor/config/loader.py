"""Reading a team config file: bytes, then strict YAML, then the models.

PyYAML's SafeLoader is kept, with the one thing it gets wrong for a config
corrected: it lets the last of two equal keys win silently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from supervisor.config.errors import ConfigError, describe, show
from supervisor.config.models import TeamConfig

__all__ = ["load_config"]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which PyYAML silently lets the last one win.

    The check runs as each mapping is composed, before `<<` merge keys are
    flattened, so a key that deliberately overrides a merged one is not flagged.
    """

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # complex keys are left to the constructor
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise _DuplicateKey(line, key, first_line[key])
            first_line[key] = line
        return node


class _DuplicateKey(Exception):
    def __init__(self, line: int, key: Any, first_line: int) -> None:
        super().__init__(f"line {line}: duplicate key {show(key)} (first on line {first_line})")


def _read_text(path: Path, label: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(label, None, f"cannot read: {reason}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise ConfigError(label, None, f"line {line}: not valid UTF-8 (byte 0x{bad})") from None


def _parse_yaml(text: str, label: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
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
