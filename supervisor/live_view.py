"""Which console a run shows: a live view on a terminal, plain lines elsewhere."""

from __future__ import annotations

from typing import Any

from supervisor.config import TeamConfig
from supervisor.console import Console


def choose_console(config: TeamConfig, *, plain: bool = False) -> Any:
    """The plain console for now; the live view comes next."""
    return Console()
