"""How the tools open storage: an agent's checkpoint store, and what to say when it cannot be read.

The run owns the storage folder; the tools only look at it (but for
`checkpoints --prune`). Unreadable storage is a backend problem: exit 3, one line.
"""

from __future__ import annotations

from typing import Optional

from protocol.checkpoints import CheckpointStore
from supervisor.config import TeamConfig
from supervisor.errors import SupervisorError
from supervisor.tools.text import error


def checkpoint_store(config: TeamConfig, agent: str) -> CheckpointStore:
    return CheckpointStore(config.storage, agent, keep=config.checkpoint.keep, compress=config.checkpoint.compress)


def storage_error(config: TeamConfig, exc: OSError) -> SupervisorError:
    """Unreadable storage is a backend problem (exit 3), said in one line."""
    return error(f"storage {config.storage}: cannot read it: {exc.strerror or exc}", 3)


def agent_names(config: TeamConfig, agent: Optional[str]) -> list[str]:
    """Every agent of the team in config order, or just `agent`; an agent the team lacks is a usage error."""
    names = [a.name for a in config.all_agents()]
    if agent is None:
        return names
    if agent not in names:
        raise error(f"{config.source}: no agent named '{agent}' in team '{config.team}'", 2)
    return [agent]
