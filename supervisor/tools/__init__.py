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
from typing import Callable

from supervisor.config import TeamConfig
from supervisor.tools.checkpoints import checkpoints_command
from supervisor.tools.control import reload_command, restart_command, start_command, stop_command
from supervisor.tools.logs import logs_command
from supervisor.tools.report import report_command
from supervisor.tools.status import status_command

Command = Callable[[TeamConfig, argparse.Namespace], int]

COMMANDS: dict[str, Command] = {
    "status": status_command,
    "logs": logs_command,
    "checkpoints": checkpoints_command,
    "report": report_command,
    "stop": stop_command,
    "start": start_command,
    "restart": restart_command,
    "reload": reload_command,
}
