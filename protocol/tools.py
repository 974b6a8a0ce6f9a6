"""A Python function as a tool a model may call: found by `package.module:function`, described by its signature.

The function's type hints and docstring are its JSON schema: the first
paragraph of the docstring describes the tool, an `Args:` section (Google
style, `name: text` lines) describes each parameter, and a parameter without a
default is required. Every parameter must have a type hint: a model calls a
tool by filling in a schema, and a parameter of unknown type has none. Both
the config room (to refuse a bad path or a function without hints before any
worker starts) and the worker (to call it) load tools through here.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

__all__ = ["Tool", "ToolError", "load_tool", "tool_of"]

JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                              list: "array", tuple: "array", dict: "object"}


class ToolError(Exception):
    """A tool path or function that cannot be offered to a model; the message is one line."""


@dataclass(frozen=True)
class Tool:
    """A function the model may call, under `name`, described by `schema` (the `function` part of a tool)."""

    name: str
    function: Callable[..., Any]
    schema: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The tool as both OpenAI's and Ollama's chat APIs take it."""
        return {"type": "function", "function": self.schema}


def load_tool(path: str, search: Sequence[str] = ()) -> Tool:
    """Import `package.module:function` (also from the folders in `search`) and describe it."""
    module_name, _, attr = path.partition(":")
    added = [folder for folder in search if folder not in sys.path]
    sys.path[:0] = added
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's to fix, in one line
        raise ToolError(f"tool {path}: cannot import {module_name}: {type(exc).__name__}: {_line(exc)}") from None
    finally:
        for folder in added:
            if folder in sys.path:
                sys.path.remove(folder)
    found = getattr(module, attr, None)
    if found is None:
        raise ToolError(f"tool {path}: module {module_name} has no {attr!r}")
    return tool_of(found, where=f"tool {path}")


def tool_of(function: Callable[..., Any], where: Optional[str] = None) -> Tool:
    """The Tool for a plain function; ToolError if it is not a function or a parameter has no type hint."""
    where = where or f"tool {getattr(function, '__name__', function)!r}"
    if not callable(function) or inspect.isclass(function):
        raise ToolError(f"{where}: not a function")
    try:
        signature = inspect.signature(function)
        hints = typing.get_type_hints(function)
    except Exception as exc:  # noqa: BLE001 - an unresolvable hint is the user's to fix, in one line
        raise ToolError(f"{where}: cannot read its type hints: {type(exc).__name__}: {_line(exc)}") from None
    summary, documented = _docstring(inspect.getdoc(function) or "")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, parameter in signature.parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ToolError(f"{where}: *{name} cannot be described to a model; name every parameter")
        if name not in hints:
            raise ToolError(f"{where}: parameter {name!r} has no type hint (a model fills in a schema made from them)")
        prop = _schema(hints[name])
        if name in documented:
            prop["description"] = documented[name]
        properties[name] = prop
        if parameter.default is parameter.empty:
            required.append(name)
    if not properties and "return" not in hints:  # a function with no hints at all
        raise ToolError(f"{where}: has no type hints (give its parameters and return value types)")
    schema = {"name": function.__name__, "description": summary or function.__name__,
              "parameters": {"type": "object", "properties": properties, "required": required}}
    return Tool(name=function.__name__, function=function, schema=schema)


def _schema(hint: Any) -> dict[str, Any]:
    """The JSON schema of a type hint; what has no JSON counterpart is left open."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Union or (hasattr(types, "UnionType") and origin is getattr(types, "UnionType")):
        rest = [a for a in args if a is not type(None)]
        return _schema(rest[0]) if len(rest) == 1 else {"anyOf": [_schema(a) for a in rest]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple, set, frozenset):
        items = [a for a in args if a is not Ellipsis]
        return {"type": "array", "items": _schema(items[0])} if items else {"type": "array"}
    if origin is dict or hint is dict:
        return {"type": "object"}
    if hint in JSON_TYPES:
        return {"type": JSON_TYPES[hint]}
    return {}


def _docstring(text: str) -> tuple[str, dict[str, str]]:
    """The first paragraph, and each parameter's text from an `Args:` section."""
    paragraphs = text.strip().split("\n\n")
    summary = " ".join(paragraphs[0].split()) if paragraphs and paragraphs[0] else ""
    documented: dict[str, str] = {}
    in_args = False
    current: Optional[str] = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args, current = True, None
            continue
        if not in_args:
            continue
        if not stripped or stripped in ("Returns:", "Raises:", "Yields:", "Examples:"):
            in_args = False  # a blank line or the next section ends the parameters
            continue
        name, colon, rest = stripped.partition(":")
        name = name.split("(")[0].strip()
        if colon and name.isidentifier():
            current = name
            documented[name] = rest.strip()
        elif current is not None:
            documented[current] = f"{documented[current]} {stripped}".strip()
    return summary, documented


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
