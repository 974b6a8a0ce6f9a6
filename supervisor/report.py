"""`report CONFIG`: the run's timeline as one self-contained HTML file."""

from __future__ import annotations

import argparse

from supervisor.config import TeamConfig
from supervisor.errors import UserError


def report_command(config: TeamConfig, args: argparse.Namespace) -> int:
    raise UserError("report: not built yet")
