"""Limits and restart planning as plain logic: which stop each asks for, and when.

`Limits` and `RestartPlanner` decide; the stop path acts. Here their decisions
are recorded (the `request` and `restart` callbacks) over a real reactor, so a
wrong message, deadline or sibling shows up without starting a process.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from protocol import (
    COMPLETED,
    FAILED,
    GRACEFUL,
    IMMEDIATE,
    INTERRUPTED,
    PROGRAMMATIC,
    SYSTEM,
)
from supervisor.config import GROUP, TeamConfig
from supervisor.runtime.children import Child, Phase, StopIntent
from supervisor.runtime.limits import Limits, seconds_text
from supervisor.runtime.reactor import Reactor
from supervisor.runtime.restarts import FIRST_DELAY, RestartPlanner
from supervisor.runtime.shutdown import StopOrder


def team(**keys: Any) -> TeamConfig:
    mapping: dict[str, Any] = {"team": "t", "storage": "s",
                               "agents": [{"name": n, "task": "x", "max_cycles": 3} for n in ("a", "b", "c")]}
    mapping.update(keys)
    return TeamConfig.from_mapping(mapping, source=Path("/tmp/t.yaml"), base_dir=Path("/tmp"))


def running(*names: str) -> dict[str, Child]:
    return {n: Child(name=n, max_cycles=3, phase=Phase.RUNNING) for n in names}


def recorder(asked: list[StopOrder]):
    """A `request` callback that records each stop order and reports it taken."""
    def request(order: StopOrder) -> bool:
        asked.append(order)
        return True
    return request


def fire(reactor: Reactor, timer: str) -> None:
    """The timer's deadline has passed: move it into the past and let the loop fire it."""
    reactor.at(timer, time.monotonic() - 1, reactor._timers[timer][1])
    reactor.tick()


# ---- limits ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "text"), [
    (None, "0s"), (0.5, "0.5s"), (59, "59s"), (60, "1m"), (90, "90s"), (120, "2m"), (3600, "1h"), (5400, "90m"),
    (7200, "2h"),
])
def test_a_duration_reads_as_it_was_written(seconds: Any, text: str) -> None:
    assert seconds_text(seconds) == text


def test_the_team_and_agent_timeouts_ask_for_graceful_stops_that_name_them() -> None:
    config = team(timeout=60, agents=[{"name": "a", "task": "x", "max_cycles": 3, "timeout": 10},
                                      {"name": "b", "task": "x", "max_cycles": 3}])
    reactor = Reactor()
    asked: list[StopOrder] = []
    limits = Limits(config, running("a", "b"), {}, reactor, recorder(asked), is_group=False)
    started = time.monotonic()
    limits.arm(started)
    assert (reactor.when("team-timeout"), reactor.when("timeout:a"), reactor.when("timeout:b")) == (started + 60,
                                                                                                 started + 10, None)
    fire(reactor, "timeout:a")
    fire(reactor, "team-timeout")
    assert asked == [
        StopOrder(GRACEFUL, PROGRAMMATIC, "agent a timeout 10s reached", "timeout", agents=("a",)),
        StopOrder(GRACEFUL, PROGRAMMATIC, "team timeout 1m reached", "timeout"),
    ]


def test_no_timeout_arms_no_timer() -> None:
    reactor = Reactor()
    Limits(team(), running("a"), {}, reactor, lambda order: True, is_group=False).arm(time.monotonic())
    assert reactor._timers == {}


def budget_limits(budget: Any, spent: dict[str, float], members: dict[str, float], *, is_group: bool = False):
    config = team(**({"budget_usd": budget} if budget is not None else {}))
    children = running(*spent)
    for name, usd in spent.items():
        children[name].budget_spent_usd = usd
    children["g"] = Child(name="g", max_cycles=0, kind=GROUP, budget_spent_usd=100.0)  # its agents count as members
    member_children = {n: Child(name=n, max_cycles=3, budget_spent_usd=usd) for n, usd in members.items()}
    asked: list[StopOrder] = []
    limits = Limits(config, children, member_children, Reactor(), recorder(asked),
                    is_group=is_group)
    limits.check_team_budget()
    return asked


def test_the_team_budget_counts_agents_and_group_members_but_not_the_group_record() -> None:
    # ten replies at $0.005 drift below $0.05 in floats; they still reach it
    asked = budget_limits(0.05, {"a": 0.005 * 6, "b": 0.005 * 2}, {"x": 0.005 * 2})
    assert asked == [StopOrder(GRACEFUL, PROGRAMMATIC, "team budget $0.05 reached (spent $0.0500)", "budget")]


@pytest.mark.parametrize(("budget", "is_group"), [(0.05, False), (None, False), (0.0001, True)])
def test_no_budget_stop_below_the_budget_without_one_or_inside_a_group(budget: Any, is_group: bool) -> None:
    assert budget_limits(budget, {"a": 0.02, "b": 0.01}, {"x": 0.01}, is_group=is_group) == []


def test_an_agent_asking_for_its_stop_gets_a_graceful_stop_of_its_own() -> None:
    asked: list[StopOrder] = []
    limits = Limits(team(), running("a"), {}, Reactor(), recorder(asked), is_group=False)
    limits.agent_asked(Child(name="a", max_cycles=3), "agent budget $1 reached")
    assert asked == [StopOrder(GRACEFUL, PROGRAMMATIC, "agent budget $1 reached", "agent", agents=("a",))]


# ---- restart planning --------------------------------------------------------------------------

class Planner:
    def __init__(self, **keys: Any) -> None:
        self.children = running("a", "b", "c")
        self.reactor = Reactor()
        self.asked: list[StopOrder] = []
        self.restarted: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.stopping = False
        self.planner = RestartPlanner(team(**keys), self.children, self.reactor, self,  # type: ignore[arg-type]
                                      recorder(self.asked),
                                      lambda child: self.restarted.append(child.name), lambda: self.stopping)

    def emit(self, event: str, *, level: str = "info", **fields: Any) -> None:
        self.events.append({"event": event, "level": level, **fields})

    def exit(self, name: str, status: str, failure: str = "crashed") -> Child:
        child = self.children[name]
        child.phase, child.failure = Phase.EXITED, failure
        self.planner.after_exit(child, status)
        return child


def test_a_crash_schedules_a_restart_after_the_first_delay() -> None:
    p = Planner()
    before = time.monotonic()
    child = p.exit("a", FAILED)
    assert (child.phase, child.status) == (Phase.RESTARTING, "restarting")
    when = p.reactor.when("restart:a")
    assert when is not None and before + FIRST_DELAY <= when <= time.monotonic() + FIRST_DELAY
    fire(p.reactor, "restart:a")
    assert p.restarted == ["a"] and p.asked == []  # one_for_one: nobody else


@pytest.mark.parametrize(("status", "stopping", "intent"), [
    (COMPLETED, False, StopIntent.NONE), (INTERRUPTED, False, StopIntent.NONE),  # transient: only failures
    (FAILED, True, StopIntent.NONE), (FAILED, False, StopIntent.ALONE),
])
def test_nothing_restarts_when_done_stopping_or_stopped_on_purpose(status: str, stopping: bool,
                                                                   intent: StopIntent) -> None:
    p = Planner()
    p.stopping = stopping
    p.children["a"].intent = intent
    child = p.exit("a", status)
    assert child.phase is Phase.EXITED and p.reactor.when("restart:a") is None and p.asked == []


def test_siblings_that_run_are_stopped_to_restart_with_it_and_join_its_delay() -> None:
    p = Planner(strategy="rest_for_one")
    p.children["c"].phase = Phase.EXITED  # not running: nothing to stop
    p.exit("a", FAILED)
    assert p.asked == [StopOrder(IMMEDIATE, SYSTEM, "restarting with a (rest_for_one)", "strategy", agents=("b",),
                                 intent=StopIntent.WITH_SIBLING)]
    b = p.children["b"]
    b.intent = StopIntent.WITH_SIBLING  # what the stop path sets
    before = time.monotonic()
    p.exit("b", INTERRUPTED)
    assert b.phase is Phase.RESTARTING
    when = p.reactor.when("restart:b")  # the delay of a's restart, not one of its own
    assert when is not None and before + FIRST_DELAY <= when <= time.monotonic() + FIRST_DELAY


def test_a_second_crash_waits_twice_as_long() -> None:
    p = Planner()
    p.exit("a", FAILED)
    fire(p.reactor, "restart:a")
    p.children["a"].phase = Phase.RUNNING
    before = time.monotonic()
    p.exit("a", FAILED)
    when = p.reactor.when("restart:a")
    assert when is not None and before + 2 * FIRST_DELAY <= when <= time.monotonic() + 2 * FIRST_DELAY


def test_each_agent_restarts_by_its_own_policy() -> None:
    p = Planner(agents=[{"name": "a", "task": "x", "max_cycles": 3, "max_restarts": 0},
                        {"name": "b", "task": "x", "max_cycles": 3}, {"name": "c", "task": "x", "max_cycles": 3}])
    assert p.exit("a", FAILED).status == FAILED  # its own limit of 0, not the team's 3
    assert p.exit("b", FAILED).phase is Phase.RESTARTING


def test_a_restart_exactly_one_window_later_still_counts_and_attempts_add_up() -> None:
    from supervisor.config import RestartPolicy
    from supervisor.runtime.restarts import RestartBook

    book = RestartBook(RestartPolicy(restart="transient", max_restarts=1, restart_window=10.0))
    assert book.admit(0.0) == FIRST_DELAY
    assert book.admit(10.0) is None  # not more than the window ago: still inside it
    assert book.admit(10.5) == FIRST_DELAY
    assert book.attempts == 2


@pytest.mark.parametrize(("kind", "what"), [("agent", "agent"), (GROUP, "group")])
def test_beyond_its_restart_limit_a_child_fails_and_the_team_stops(kind: str, what: str) -> None:
    p = Planner(max_restarts=0, restart_window=30)
    p.children["a"].kind = kind
    child = p.exit("a", FAILED, failure="boom")
    assert child.status == FAILED and child.phase is Phase.EXITED
    assert child.failure == "failed 1 times within 30s (max_restarts 0): boom"
    assert p.events == [{"event": "restart_limit_reached", "level": "error", "agent_id": "a", "max_restarts": 0,
                         "restart_window": 30.0, "reason": child.failure, "team": "t"}]
    assert p.asked == [StopOrder(GRACEFUL, SYSTEM, f"{what} a failed beyond its restart limit", "restart_limit")]
