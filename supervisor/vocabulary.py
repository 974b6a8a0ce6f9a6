"""The words every side of the supervisor shares: levels, and how an event's fields read back.

It imports nothing of ours, so the runtime, the tools and the terminal can all
use it without importing each other.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any, Optional

LEVELS = ("debug", "info", "warning", "error", "critical")  # `logs --level L` shows L and everything above it
NOT_STARTED = "not started"  # an agent's status when its worker never came: held by `after`, or a stop during the start
ISO_RE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|\+00:00)\Z")


def event_number(value: Any) -> Optional[float]:
    """A numeric field of an event as read back (a log line, a sink's dict); None if it is not a finite number.

    bool is an int to Python but never a count here, and NaN or Infinity (which
    only a damaged or hand-edited log holds) would poison every sum it joins.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def parse_timestamp(value: Any) -> Optional[datetime]:
    """An event's ISO 8601 timestamp as an aware datetime (UTC if it names no zone); None if it is not one."""
    if not isinstance(value, str) or not value:
        return None
    text = value[:-1] + "+00:00" if value[-1] in ("Z", "z") else value
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        match = ISO_RE.match(value)  # Python 3.10 takes only 3 or 6 digits of a second
        if match is None:
            return None
        fraction = (match.group(2) or "").ljust(6, "0")[:6]
        try:
            when = datetime.fromisoformat(f"{match.group(1)}.{fraction}+00:00")
        except ValueError:  # the shape of a time but not one (second 60, month 13): a damaged or hand-made line
            return None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when
