"""Example tools for the built-in chat agent: plain functions whose type hints and docstring are their schema.

Config::

    tools: [workers.examples.tools:utc_now, workers.examples.tools:word_count]

The model sees each function's name, the first paragraph of its docstring,
and one parameter per argument, typed from the hints and described from the
`Args:` section. A tool runs in a thread of the worker, so it may block.
"""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> str:
    """The current date and time in UTC, as ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def word_count(text: str, distinct: bool = False) -> int:
    """Count the words of a text.

    Args:
        text: the text to count
        distinct: count each different word (case ignored) once
    """
    words = text.split()
    return len({w.casefold() for w in words}) if distinct else len(words)
