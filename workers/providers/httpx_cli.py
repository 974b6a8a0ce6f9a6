"""httpx's command-line client, kept out of the workers.

`import httpx` (under both `ollama` and `openai`) also imports httpx's own
command-line client whenever click is installed (`from ._main import main` in
httpx/__init__.py), and with it click, pygments and rich: 6.5 MB of modules
that no agent uses. The forkserver imports the model client once for every
worker, so each worker's fork copied the page-table entries of those 6.5 MB
and each worker's exit tore them down again. Measured with the ollama provider
loaded: the forkserver's anonymous memory 31.3 MB with them, 25.9 MB without;
a do-nothing child's fork plus exit about 0.3 ms cheaper (300 children, two runs).

A stand-in takes the module's place before httpx is first imported; calling it
says why it is not there. Where httpx was imported already, nothing changes.
"""

from __future__ import annotations

import sys
import types
from typing import NoReturn

NAME = "httpx._main"


def keep_httpx_cli_out() -> None:
    """Put the stand-in in place of httpx's command-line module, unless httpx is loaded already."""
    if "httpx" in sys.modules or NAME in sys.modules:
        return
    stand_in = types.ModuleType(NAME, "httpx's command-line client: not loaded in an agent-supervisor worker")
    stand_in.main = _main  # type: ignore[attr-defined]
    sys.modules[NAME] = stand_in


def _main(*args: object, **kwargs: object) -> NoReturn:
    raise RuntimeError("httpx's command-line client is not loaded in an agent-supervisor worker; "
                       "run `httpx` from a shell instead")
