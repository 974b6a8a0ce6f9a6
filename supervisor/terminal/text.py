"""Text that reaches a terminal: every control character shown, never obeyed.

Model output, agent errors, tool results, file contents and even config values
are not trusted to be harmless: an escape sequence in a reply could set the
operator's clipboard (OSC 52), retitle the window, clear the screen or hide
text. Every string from outside the supervisor's own code goes through
`neutralise` before it is printed, in every command and both console modes.
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls but tab and newline, DEL, the C1 controls, and the Unicode controls
# that reorder or break lines (bidi embeddings, overrides and isolates; line and
# paragraph separators).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROL_OR_BREAK = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _visible(match: "re.Match[str]") -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def neutralise(value: Any, *, lines: bool = False) -> str:
    """`value` as text whose control characters are printed as escapes (`\\x1b`).

    With `lines`, newlines and tabs are kept (a multi-line block); otherwise the
    result is one line and they are escaped too.
    """
    text = value if isinstance(value, str) else str(value)
    return (_CONTROL if lines else _CONTROL_OR_BREAK).sub(_visible, text)
