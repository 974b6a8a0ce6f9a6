"""`after:` at run time: an agent is held until every agent it names has completed, then started once.

The root watches the whole tree: its own agents' exits, and a group's agents'
through the group's events. A group holds its `after` agents until its parent
names them in a StartAgents; the root sends that when their time comes (and a
group that restarts is told again, through its spec, which of them are free).
"""

from __future__ import annotations

from typing import Callable

from supervisor.config import TeamConfig
from supervisor.config.links import ready_to_start
from supervisor.runtime.events import EventWriter


class StartOrder:
    def __init__(
        self,
        config: TeamConfig,
        log: EventWriter,
        release: Callable[[str], None],
        is_root: bool,
    ) -> None:
        self.log = log
        self.release_agent = release  # start this held agent now (ours, or one of a group's)
        self.is_root = is_root
        self.completed: set[str] = set()
        self.released: set[str] = set()
        self.after: dict[str, list[str]] = {}
        self.reset(config)

    def reset(self, config: TeamConfig) -> None:
        """Who waits for whom; a group's held agents wait for the root's word, not for names it can see."""
        if self.is_root:
            self.after = {a.name: list(a.after) for a in config.all_agents() if a.after and a.name not in self.released}
        else:
            self.after = {name: [] for name in config.held_back()}

    def added(self, name: str, after: list[str]) -> bool:
        """An agent a reload added: True when it must wait for agents that have not completed yet."""
        waiting = [n for n in after if n not in self.completed]
        if not self.is_root or not waiting:
            return False
        self.after[name] = list(after)
        return True

    def holds(self, name: str) -> bool:
        """Whether `name` waits for other agents before its first start of this run."""
        return name in self.after and name not in self.released

    def agent_completed(self, name: str, stopping: bool) -> None:
        """`name` has completed: start whoever was waiting only for it and others already done."""
        self.completed.add(name)
        if stopping or not self.is_root:
            return
        for held, needs in list(self.after.items()):
            if held not in self.released and ready_to_start(needs, self.completed):
                self.released.add(held)
                del self.after[held]
                self.log.emit("agent_released", agent_id=held, after=needs)
                self.release_agent(held)

    def started_by_hand(self, name: str) -> None:
        """An operator's start of a held agent overrides the order."""
        self.released.add(name)
        self.after.pop(name, None)

    def never_started(self) -> dict[str, list[str]]:
        """Held agents still waiting when the run ends, with the agents they still wait for."""
        return {name: [n for n in needs if n not in self.completed] for name, needs in self.after.items()
                if name not in self.released}
