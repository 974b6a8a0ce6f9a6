"""Imports made without what they would load for features this product never uses.

structlog's `dev` and `tracebacks` modules import rich's traceback renderer and
pretty-printer (and, through them, pygments) whenever rich is installed, for
the colourful console tracebacks of its ConsoleRenderer. The supervisor renders
JSON Lines and never asks for them, yet every `run` paid for them on its way to
the first fork. Hidden while structlog is imported, structlog takes its
rich-less path; the modules stay importable for the live view afterwards.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

UNUSED = ("rich", "rich.traceback", "rich.pretty")  # `rich` itself only when nothing has imported it yet


@contextlib.contextmanager
def without_rich_tracebacks() -> Iterator[None]:
    """Within: importing the names in UNUSED that are not loaded yet fails; after: as before."""
    hidden = [name for name in UNUSED if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "not available"
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
