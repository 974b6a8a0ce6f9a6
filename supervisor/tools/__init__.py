"""The operator's tools: commands that read what a run left in storage.

One module per command (`status`, `logs`, `checkpoints`, `report`; `control`
for the commands that act on a live run over its socket), and the
parts they share: `events` (the one reader of events.jsonl), `stats` (the
closing statistics), `text` (how things are laid out and printed) and
`stores` (opening storage). They look at storage and, but for
`checkpoints --prune`, never change it: no folder is created, no temp file
cleaned, no lock taken, so they are safe to run next to a live supervisor.
Every command returns its exit code; `--json` prints exactly one JSON document
on stdout and sends warnings to stderr, so scripts can pipe it straight into a
parser.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any, Callable

Command = Callable[[Any, argparse.Namespace], int]

# command -> (module, function): each command imports only its own module, so that a quick one
# (`stop`, `start`) does not pay for the others' imports.
_WHERE: dict[str, tuple[str, str]] = {
    "status": ("status", "status_command"),
    "logs": ("logs", "logs_command"),
    "checkpoints": ("checkpoints", "checkpoints_command"),
    "report": ("report", "report_command"),
    "stop": ("control", "stop_command"),
    "start": ("control", "start_command"),
    "restart": ("control", "restart_command"),
    "reload": ("control", "reload_command"),
    "answer": ("control", "answer_command"),
}


def _command(name: str) -> Command:
    module, function = _WHERE[name]

    def run(config: Any, args: argparse.Namespace) -> int:
        command: Command = getattr(importlib.import_module(f"supervisor.tools.{module}"), function)
        return command(config, args)

    run.__name__ = function
    return run


COMMANDS: dict[str, Command] = {name: _command(name) for name in _WHERE}
