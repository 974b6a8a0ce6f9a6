"""Limits that stop agents on their own: wall-clock timeouts and the team's budget.

Each is a graceful stop with source PROGRAMMATIC and a message that names the
limit. An agent's budget is checked by its own worker before each cycle (it
asks for its stop); the team's budget is summed here over every agent of the
tree, earlier runs included; timeouts are named timers of the loop.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from protocol import GRACEFUL, PROGRAMMATIC
from protocol.budget import budget_reached
from supervisor.config import AGENT, TeamConfig
from supervisor.runtime.children import Child
from supervisor.runtime.reactor import Reactor
from supervisor.runtime.shutdown import StopOrder


def seconds_text(value: float | None) -> str:
    """A duration as a person wrote it: 90s, 2m, 1.5h."""
    seconds = float(value or 0.0)
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


class Limits:
    def __init__(
        self,
        config: TeamConfig,
        children: dict[str, Child],
        members: dict[str, Child],
        reactor: Reactor,
        request: Callable[[StopOrder], bool],
        is_group: bool,
    ) -> None:
        self.config = config
        self.children = children
        self.members = members
        self.reactor = reactor
        self.request = request
        self.is_group = is_group

    def arm(self, started_at: float) -> None:
        """The team's wall clock, then each agent's own, from the run's start."""
        if self.config.timeout:
            self.reactor.at("team-timeout", started_at + self.config.timeout, self._team_timeout)
        for agent in self.config.agents:
            if agent.timeout is not None:
                self.reactor.at(f"timeout:{agent.name}", started_at + agent.timeout, partial(self._agent_timeout, agent.name))

    def _team_timeout(self) -> None:
        self.request(StopOrder(GRACEFUL, PROGRAMMATIC, f"team timeout {seconds_text(self.config.timeout)} reached",
                               "timeout"))

    def _agent_timeout(self, name: str) -> None:
        timeout = self.config.agent(name).timeout
        self.request(StopOrder(GRACEFUL, PROGRAMMATIC, f"agent {name} timeout {seconds_text(timeout)} reached",
                               "timeout", agents=(name,)))

    def check_team_budget(self) -> None:
        """Dollars spent by every agent of the tree, earlier runs included, against the team's budget.

        A group's budget is its parent's to enforce: the parent sums the group's agents too.
        """
        budget = self.config.budget_usd
        if budget is None or self.is_group:
            return
        spent = sum(c.budget_spent_usd for c in self.children.values() if c.kind == AGENT)
        spent += sum(m.budget_spent_usd for m in self.members.values())
        if budget_reached(spent, budget):
            self.request(StopOrder(GRACEFUL, PROGRAMMATIC, f"team budget ${budget:g} reached (spent ${spent:.4f})",
                                   "budget"))

    def agent_asked(self, child: Child, message: str) -> None:
        """An agent asks for its own stop (its budget, its own decision)."""
        self.request(StopOrder(GRACEFUL, PROGRAMMATIC, message, "agent", agents=(child.name,)))

