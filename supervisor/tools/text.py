"""How the tools lay out what they print: tables, sizes, times, event lines, JSON.

Every command prints through these helpers, so a change of layout, or of what
is made safe before it reaches a terminal, happens in one place. What the
tools print comes from storage (model replies, messages, file contents) and is
not trusted: text goes through `neutralise`, so an escape sequence is shown,
never obeyed, and JSON escapes every character a terminal would act on.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from typing import Any, Optional, TextIO

from supervisor.errors import SupervisorError
from supervisor.terminal.text import neutralise
from supervisor.vocabulary import ISO_RE

VALUE_MAX = 80  # a long string field (a reply, a message) is cut to this in text output
LEVEL_WIDTH = 7  # "warning"; a rare "critical" just pushes its line one column right
SHOWN_FIRST = ("timestamp", "level", "agent_id", "event")

_BARE_RE = re.compile(r"[^\s\"'=\\]+\Z")
# What json.dumps leaves raw with ensure_ascii=False though a terminal acts on it
# (DEL, the C1 controls, the Unicode line separators and bidi controls), and
# lone surrogates, which cannot be printed as UTF-8. C0 controls it escapes itself.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def warn(text: str) -> None:
    """A warning on stderr, so `--json` output on stdout stays one document."""
    print(f"warning: {neutralise(text)}", file=sys.stderr, flush=True)


def error(message: str, exit_code: int) -> SupervisorError:
    """The one-line error the CLI prints, made safe here: it may quote storage, paths or arguments."""
    return SupervisorError(neutralise(message), exit_code)


def print_lines(*lines: str, file: Optional[TextIO] = None, flush: bool = False) -> None:
    """Each line as one line on the terminal, its control characters shown as escapes."""
    print("\n".join(neutralise(line) for line in lines), file=file or sys.stdout, flush=flush)


def json_text(document: Any, indent: Optional[int] = 2) -> str:
    """`document` as JSON with no character a terminal would act on: the same data, read back.

    Laid out exactly as `json.dumps(document, indent=indent, ensure_ascii=False, default=str)`.
    """
    text = _encode(document) if indent is None else _layout(document, "\n", " " * indent)
    return _JSON_UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode  # one line, in C


def _layout(value: Any, newline: str, step: str) -> str:
    """What json.dumps(indent=...) writes, several times faster.

    json's indenting encoder is pure Python, and `logs --json` spent most of
    its time in it. Here an object whose values are all scalars (an event,
    mostly) is one call to the C encoder, its items joined by newline and
    indent; deeper values are laid out one level at a time.
    """
    if isinstance(value, dict) and value:
        inner = newline + step
        if not any(isinstance(item, (dict, list, tuple)) and item for item in value.values()):
            return "{" + inner + _flat_encoder(inner)(value)[1:-1] + newline + "}"
        items = (f"{inner}{_encode(_key(key))}: {_layout(item, inner, step)}" for key, item in value.items())
        return "{" + ",".join(items) + newline + "}"
    if isinstance(value, (list, tuple)) and value:
        inner = newline + step
        return "[" + ",".join(inner + _layout(item, inner, step) for item in value) + newline + "]"
    return _encode(value)


@functools.lru_cache(maxsize=16)
def _flat_encoder(inner: str) -> Any:
    """The C encoder writing an object's items one a line, at the indent `inner` (a newline and spaces)."""
    return json.JSONEncoder(ensure_ascii=False, default=str, separators=("," + inner, ": ")).encode


def _key(key: Any) -> str:
    """A key as json.dumps writes it: strings as they are, numbers, true, false and null as their JSON text."""
    return key if isinstance(key, str) else _encode(key)


def print_json(document: Any, indent: Optional[int] = 2) -> None:
    print(json_text(document, indent))


def table(headers: list[str], rows: list[list[str]], right: frozenset[int] = frozenset()) -> list[str]:
    """Columns two spaces apart, left-aligned but for the `right` ones (numbers); the last column is not padded.

    Cells are neutralised first, so the columns line up on what the terminal shows.
    """
    headers = [neutralise(cell) for cell in headers]
    rows = [[neutralise(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [
            cell.rjust(width) if index in right else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row[:-1], widths))
        ] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return lines


def size(count: int) -> str:
    """Bytes for people: exact below 1 KiB, else one decimal in KiB, MiB or GiB."""
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def short_time(value: Any) -> str:
    """ISO UTC time to the millisecond, as the log lines show it; anything else as it is."""
    text = str(value)
    match = ISO_RE.match(text)
    if not match:
        return text
    fraction = (match.group(2) or "").ljust(3, "0")[:3]
    return f"{match.group(1)}.{fraction}Z"


def show_value(value: Any) -> str:
    """A field value for a k=v pair: bare when safe, quoted when it has spaces, cut when long."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) >= 1 else f"{value:.6g}"
    if isinstance(value, int):
        return str(value)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > VALUE_MAX:
        text = text[: VALUE_MAX - 3] + "..."
    if isinstance(value, str) and _BARE_RE.match(text):
        return text
    return json.dumps(text, ensure_ascii=False) if isinstance(value, str) else text


def format_event(event: dict[str, Any], agent_width: int = 0) -> str:
    """One readable line: time, level, agent, event, then the other fields as k=v; safe to print."""
    head = [
        neutralise(short_time(event.get("timestamp", "-"))),
        neutralise(event.get("level", "-")).ljust(LEVEL_WIDTH),
        neutralise(event.get("agent_id", "-")).ljust(agent_width),
        neutralise(event.get("event", "-")),
    ]
    fields = " ".join(
        f"{neutralise(key)}={neutralise(show_value(value))}" for key, value in event.items() if key not in SHOWN_FIRST
    )
    return "  ".join(head + [fields]).rstrip()
