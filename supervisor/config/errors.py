"""A configuration mistake as one line: `ConfigError`, and pydantic's errors translated into it.

A configuration mistake is the user's to fix, not ours to debug, so every
problem becomes a `ConfigError` whose text is a single line naming the file,
the field and the problem (`configs/team.yaml: agents[1].max_cycles: must be
>= 1 (got 0)`). The CLI prints it and exits 2; nothing here prints a traceback.

Only the first problem is reported, in the order the keys appear in the file,
so the message always points at the earliest line to fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from supervisor.errors import UserError

__all__ = ["ConfigError", "LocatedError", "describe", "first_error", "format_loc", "one_line", "printable", "show"]


KEY_MAX = 60  # characters of one key in a field path
PROBLEM_MAX = 400  # characters of one problem; the rest of a quoted value adds nothing to fix it


def one_line(text: str) -> str:
    """Collapse all whitespace, newlines included: the CLI contract is one line."""
    return " ".join(text.split())


def printable(text: str) -> str:
    """`text` with every character a terminal would act on written as its escape (`\\x1b`, `\\u202e`).

    Messages quote values and keys from the file, and the file may hold
    escape sequences or bidirectional overrides; they must reach the
    terminal as text to read, not as commands. This is the config's own
    escaping: the base of the tree cannot use the terminal's.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


def _clean(text: str, limit: int | None = None) -> str:
    text = printable(one_line(text))
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


class ConfigError(UserError):
    """A configuration mistake; str() is the one line the CLI prints before exit 2.

    `source`, `field` and `problem` are kept apart for callers that want to
    present them differently (an embedding API, tests).
    """

    def __init__(self, source: str, field: str | None, problem: str) -> None:
        self.source = _clean(str(source))
        self.field = _clean(field) if field else field
        self.problem = _clean(problem, PROBLEM_MAX)
        parts = [self.source, self.field, self.problem] if self.field else [self.source, self.problem]
        super().__init__(one_line(": ".join(parts)))

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's default pickling replays self.args into __init__, which
        # takes three arguments here; errors may cross process boundaries.
        return (type(self), (self.source, self.field, self.problem))


class LocatedError(ValueError):
    """A validator's error that belongs to a deeper field than the validator's own.

    Pydantic pins a validator's error to the validated field; a duplicate agent
    name is found while checking `agents` but must be reported at
    `agents[i].name`. The translator appends `loc` to pydantic's location.
    """

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


# ---- values as the user wrote them ------------------------------------------


def show(value: Any, limit: int = 60) -> str:
    """A value as the user would recognise it from YAML (true, null, 'text')."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, int) and value.bit_length() > 200:  # str() of a huge int is slow, or refused
        return f"an integer of {value.bit_length()} bits"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: Any) -> str:
    """What kind of value the user wrote, for "must be X (got Y)" messages."""
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"the string {show(value)}"
    return show(value)


def _number(value: Any) -> str:
    """Bounds from pydantic's ctx printed without noise (1, not 1.0)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ---- pydantic errors -> one line ----------------------------------------------

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}


def format_loc(loc: tuple[Any, ...], last_is_key: bool = False) -> str:
    """('agents', 1, 'llm', 'latency') -> 'agents[1].llm.latency'.

    `last_is_key` marks a non-string YAML key (`1:`), shown as `.1`, not `[1]`.
    """
    out = ""
    for position, part in enumerate(loc):
        is_key = last_is_key and position == len(loc) - 1
        if isinstance(part, int) and not isinstance(part, bool) and not is_key:
            out += f"[{part}]"
        else:
            text = show(part) if is_key else str(part)
            if len(text) > KEY_MAX:
                text = text[: KEY_MAX - 3] + "..."
            out += f".{text}" if out else text
    return out


def _raw_at(data: Any, loc: tuple[Any, ...]) -> tuple[bool, Any]:
    """The value the user wrote at `loc`, if it is there (found, value)."""
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return False, None
    return True, node


def _document_order(data: Any, loc: tuple[Any, ...]) -> tuple[int, ...]:
    """Sort key placing an error where its key sits in the file; missing keys go last."""
    key: list[int] = []
    node = data
    for part in loc:
        if isinstance(node, dict):
            keys = list(node)
            if part in node:
                key.append(keys.index(part))
                node = node[part]
                continue
            key.append(len(keys))
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            key.append(part)
            node = node[part]
            continue
        else:
            key.append(0)
        node = None
    return tuple(key)


def _allowed_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at `loc` accepts, for "did you mean" hints.

    A model may hide fields that are not keys of the file in a `_NOT_KEYS` class variable.
    """
    model = root
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            return []
        annotation = info.annotation
        if get_origin(annotation) in (list, Union):
            args = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
            annotation = args[0] if args else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    hidden: frozenset[str] = getattr(model, "_NOT_KEYS", frozenset())
    return [name for name in model.model_fields if name not in hidden]


def _unknown_key(root: type[BaseModel], key: Any, parent: tuple[Any, ...]) -> str:
    allowed = _allowed_keys(root, parent)
    if isinstance(key, str):
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.7)
        if close:
            return f"unknown key (did you mean {close[0]!r}?)"
    if allowed:
        return f"unknown key (expected one of: {', '.join(allowed)})"
    return "unknown key"


def _problem(root: type[BaseModel], error: Mapping[str, Any], raw: Any) -> str:
    """A short human sentence for one pydantic error."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    loc = tuple(error["loc"])
    found, value = _raw_at(raw, loc)
    if not found:
        value = error.get("input")
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return _unknown_key(root, loc[-1], loc[:-1])
    if kind == "float_type" and isinstance(value, int) and not isinstance(value, bool):
        return f"is too large (got {show(value, 24)})"  # an int beyond float range
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]} (got {describe(value)})"
    if kind == "greater_than_equal":
        return f"must be >= {_number(ctx.get('ge'))} (got {show(value)})"
    if kind == "greater_than":
        return f"must be > {_number(ctx.get('gt'))} (got {show(value)})"
    if kind == "less_than_equal":
        return f"must be <= {_number(ctx.get('le'))} (got {show(value)})"
    if kind == "less_than":
        return f"must be < {_number(ctx.get('lt'))} (got {show(value)})"
    if kind == "finite_number":
        return f"must be a finite number (got {show(value)})"
    if kind == "too_short":
        if loc and loc[-1] == "agents":
            return "must list at least one agent"
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    return str(error.get("msg", kind))


def first_error(exc: ValidationError, raw: Any, root: type[BaseModel]) -> tuple[str | None, str]:
    """The earliest error in file order, as (field path, problem); `root` is the model validated."""
    located: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    for details in exc.errors():
        error: dict[str, Any] = dict(details)
        loc = tuple(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, LocatedError):
            loc += cause.loc
        if error["type"] == "invalid_key":
            # A non-string YAML key (1:, null:, yes:); pydantic puts it, or its
            # str(), last in loc. No valid key is a non-string, so it is unknown.
            loc = loc[:-1] + (error.get("input"),)
            error = {**error, "type": "extra_forbidden", "non_string_key": True}
        located.append((loc, {**error, "loc": loc}))
    if not located:  # pragma: no cover - pydantic never raises an empty error
        return None, one_line(str(exc))
    loc, error = min(located, key=lambda item: _document_order(raw, item[0]))
    field = format_loc(loc, last_is_key=bool(error.get("non_string_key")))
    return (field or None), _problem(root, error, raw)
