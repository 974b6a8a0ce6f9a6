"""Restart decisions, after Erlang/OTP's supervisor, as plain logic.

Which exits restart an agent (its restart kind), how often it may be restarted
before it has failed (intensity: `max_restarts` within `restart_window`
seconds), how long to wait before each attempt (a doubling delay), and which
other agents restart with it (the team's strategy). No processes, no clocks of
its own: the arbiter passes `now` in, so every rule is testable as data.
`RestartPlanner` applies them to a run's exits and schedules the restarts.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

from protocol import COMPLETED, FAILED, GRACEFUL, IMMEDIATE, SYSTEM
from supervisor.config import GROUP, RestartPolicy, TeamConfig
from supervisor.runtime.children import Child, Phase, StopIntent
from supervisor.runtime.events import EventWriter
from supervisor.runtime.reactor import Reactor
from supervisor.runtime.shutdown import StopOrder

FIRST_DELAY = 0.1  # seconds before the first restart of a window
MAX_DELAY = 5.0  # the doubling stops here


def wants_restart(kind: str, status: str) -> bool:
    """Whether an exit with `status` restarts an agent of restart `kind`.

    A completed agent has nothing left to do, whatever its kind. `temporary`
    is never restarted, `transient` only after an abnormal exit (a crash, a
    kill, a hang, a broken protocol), `permanent` after any exit short of
    completion.
    """
    if status == COMPLETED or kind == "temporary":
        return False
    if kind == "transient":
        return status == FAILED
    return True


@dataclass
class RestartBook:
    """One agent's restarts within the current window."""

    policy: RestartPolicy
    times: deque[float] = field(default_factory=deque)
    attempts: int = 0  # every restart this run, for the worker_restarted event

    def admit(self, now: float) -> Optional[float]:
        """Record a restart at `now` and return its delay, or None past the intensity."""
        while self.times and now - self.times[0] > self.policy.restart_window:
            self.times.popleft()
        if len(self.times) >= self.policy.max_restarts:
            return None
        self.times.append(now)
        self.attempts += 1
        return min(FIRST_DELAY * 2 ** (len(self.times) - 1), MAX_DELAY)


def restarts_with(strategy: str, order: list[str], failed: str) -> list[str]:
    """The agents restarted when `failed` restarts, in start order, `failed` included."""
    if strategy == "one_for_all":
        return list(order)
    if strategy == "rest_for_one":
        return order[order.index(failed) :]
    return [failed]


class RestartPlanner:
    """Applies each child's restart policy and the team's strategy to one exit.

    It decides and schedules (a named timer per child); the arbiter starts the
    process when the timer fires, and the stop path stops siblings that go with it.
    """

    def __init__(
        self,
        config: TeamConfig,
        children: dict[str, Child],
        reactor: Reactor,
        log: EventWriter,
        request: Callable[[StopOrder], bool],
        restart: Callable[[Child], None],
        stopping: Callable[[], bool],
    ) -> None:
        self.config = config
        self.children = children
        self.reactor = reactor
        self.log = log
        self.request = request
        self.restart = restart
        self.stopping = stopping  # the team is stopping: nothing restarts
        self.books = {name: RestartBook(config.restart_policy(name)) for name in children}
        self._group_delay = 0.0  # the delay of the restart that siblings join

    def after_exit(self, child: Child, status: str, charged: bool = True) -> None:
        """`charged`: the exit counts against the child's restart intensity (not when its forkserver died)."""
        if self.stopping() or child.intent is StopIntent.ALONE:
            return  # the team is stopping, or this child was stopped on purpose: nothing restarts
        now = time.monotonic()
        if child.intent is StopIntent.WITH_SIBLING:
            self._schedule(child, now, self._group_delay)
            return
        book = self.books[child.name]
        if not wants_restart(book.policy.restart, status):
            return
        if not charged:
            self._schedule(child, now, FIRST_DELAY)
            return
        delay = book.admit(now)
        if delay is None:
            self._give_up(child, book.policy)
            return
        self._group_delay = delay
        self._schedule(child, now, delay)
        order = list(self.children)  # start order: agents, then groups
        for name in restarts_with(self.config.strategy, order, child.name):
            sibling = self.children[name]
            if sibling is not child and sibling.running:
                self.request(StopOrder(IMMEDIATE, SYSTEM, f"restarting with {child.name} ({self.config.strategy})",
                                       "strategy", agents=(name,), intent=StopIntent.WITH_SIBLING))

    def _schedule(self, child: Child, now: float, delay: float) -> None:
        child.phase, child.status = Phase.RESTARTING, "restarting"
        self.reactor.at(f"restart:{child.name}", now + delay, lambda: self.restart(child))

    def _give_up(self, child: Child, policy: RestartPolicy) -> None:
        """Beyond its restart intensity the child has failed, and the team stops gracefully."""
        child.status = FAILED
        what = "group" if child.kind == GROUP else "agent"
        child.failure = (
            f"failed {policy.max_restarts + 1} times within {policy.restart_window:g}s "
            f"(max_restarts {policy.max_restarts}): {child.failure}"
        )
        self.log.emit("restart_limit_reached", level="error", agent_id=child.name, max_restarts=policy.max_restarts,
                      restart_window=policy.restart_window, reason=child.failure, team=self.config.team)
        self.request(StopOrder(GRACEFUL, SYSTEM, f"{what} {child.name} failed beyond its restart limit", "restart_limit"))
