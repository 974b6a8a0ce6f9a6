"""Budgets and timeouts: graceful stops with source PROGRAMMATIC, for one agent or the team.

Real runs of the CLI with the scripted provider, which charges `cost_per_reply`
for every reply. Costs are binary-exact (0.25) so that "reached" is exact too.
"""

from __future__ import annotations

from typing import Any

from harness import by_event

COST = 0.25


def _charge(team: Any, cost: float = COST) -> None:
    team.data["llm"]["cost_per_reply"] = cost
    team.write()


def _agent(team: Any, name: str) -> dict[str, Any]:
    every = team.data["agents"] + [a for g in team.data.get("groups", []) for a in g["agents"]]
    return next(a for a in every if a["name"] == name)


def _programmatic(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The supervisor's own line for each PROGRAMMATIC interrupt it issued."""
    return [e for e in by_event(events, "interrupt_initiated") if e["source"] == "PROGRAMMATIC" and "workers" in e]


def test_an_agent_budget_stops_that_agent_alone_with_no_overshoot_and_no_restart(make_team):
    team = make_team(agents=3, latency=0.02, max_cycles=8, restart="permanent")
    _charge(team)
    _agent(team, "agent-b")["budget_usd"] = 0.75  # three replies
    team.write()
    run = team.run()
    assert run.proc.returncode == 0, run.output
    events = team.events()
    [issued] = _programmatic(events)
    assert issued["mode"] == "GRACEFUL" and issued["agents"] == ["agent-b"]
    assert "agent agent-b budget $0.75 reached" in issued["message"]
    assert by_event(events, "interrupt_completed", "agent-b")
    assert not by_event(events, "worker_restarted")  # stopped on purpose: even `permanent` does not restart it
    stopped = team.assert_exactly_once("agent-b", 3)  # the worker checks before each cycle: no overshoot
    assert stopped.status == "interrupted" and stopped.budget_spent_usd == 0.75
    for name in ("agent-a", "agent-c"):
        done = team.assert_exactly_once(name, 8)
        assert done.status == "completed" and done.budget_spent_usd == 8 * COST
    assert "agent agent-b budget $0.75 reached" in run.output


def test_a_resumed_run_counts_what_was_already_spent(make_team):
    team = make_team(agents=1, latency=0.02, max_cycles=8)
    _charge(team)
    _agent(team, "agent-a")["budget_usd"] = 0.5
    team.write()
    assert team.run().proc.returncode == 0
    team.assert_exactly_once("agent-a", 2)
    again = team.run()  # still over budget: it stops before its first cycle, and says why
    assert again.proc.returncode == 0, again.output
    assert team.assert_exactly_once("agent-a", 2).budget_spent_usd == 0.5
    assert not by_event(again.new_events(), "cycle_completed")
    started = by_event(again.new_events(), "worker_started", "agent-a")[0]
    assert started["budget_spent_usd"] == 0.5
    _agent(team, "agent-a")["budget_usd"] = 1.0  # a bigger budget: two more replies
    team.write()
    assert team.run().proc.returncode == 0
    assert team.assert_exactly_once("agent-a", 4).budget_spent_usd == 1.0


def test_the_team_budget_stops_everyone_with_overshoot_at_most_the_cycles_in_flight(make_team):
    team = make_team(agents=2, latency=0.05, max_cycles=40, groups={"crew": {"agents": 2}})
    _charge(team)
    team.data["budget_usd"] = 3.0
    team.write()
    run = team.run()
    assert run.proc.returncode == 0, run.output
    events = team.events()
    [issued] = _programmatic(events)
    assert issued["mode"] == "GRACEFUL" and "agents" not in issued
    assert issued["message"].startswith("team budget $3 reached")
    # Every agent of the tree, grouped ones included, stopped on that interrupt.
    assert {e["agent_id"] for e in by_event(events, "interrupt_completed")} == set(team.names)
    spent = sum(team.assert_exactly_once(name).budget_spent_usd for name in team.names)
    assert 3.0 <= spent <= 3.0 + COST * len(team.names)
    assert by_event(events, "supervisor_stopped")[-1]["status"] == "interrupted"
    # A resumed run starts over budget: it stops at once, at most the cycles already in flight.
    before = {name: team.latest(name).cycle for name in team.names}
    again = team.run()
    assert again.proc.returncode == 0, again.output
    assert len(by_event(again.new_events(), "cycle_completed")) <= len(team.names)
    assert all(team.assert_exactly_once(name).cycle >= before[name] for name in team.names)


def test_the_team_timeout_is_a_graceful_stop_of_everyone(make_team):
    team = make_team(agents=2, latency=0.05, max_cycles=1000, every=3)
    team.data["timeout"] = "1s"
    team.write()
    run = team.run()
    assert run.proc.returncode == 0, run.output
    [issued] = _programmatic(team.events())
    assert issued["message"] == "team timeout 1s reached"
    for name in team.names:
        checkpoint = team.assert_exactly_once(name)
        assert checkpoint.status == "interrupted" and 0 < checkpoint.cycle < 1000
    assert "Team timeout 1s reached" in run.output


def test_an_agent_timeout_stops_that_agent_and_the_others_finish(make_team, backend):
    team = make_team(agents=2, latency=0.02, max_cycles=30, groups={"crew": {"agents": 2}})
    for name in ("agent-b", "crew-a"):  # one of the team's own, one inside the group
        agent = _agent(team, name)
        agent["timeout"] = 0.5
        agent["max_cycles"] = 5000
    team.write()
    run = team.run()
    assert run.proc.returncode == 0, run.output
    events = team.events()
    messages = {e["message"] for e in _programmatic(events)}
    assert messages == {"agent agent-b timeout 0.5s reached", "agent crew-a timeout 0.5s reached"}
    for name in ("agent-b", "crew-a"):
        checkpoint = team.assert_exactly_once(name)
        assert checkpoint.status == "interrupted" and checkpoint.cycle < 5000
        assert by_event(events, "interrupt_completed", name)
    for name in ("agent-a", "crew-b"):
        assert team.assert_exactly_once(name, 30).status == "completed"
    assert not by_event(events, "worker_restarted") and not by_event(events, "group_restarted")


def test_a_budget_inside_a_group_is_the_groups_to_enforce(make_team):
    team = make_team(agents=1, latency=0.02, max_cycles=6, groups={"crew": {"agents": 2}})
    _charge(team)
    _agent(team, "crew-b")["budget_usd"] = 0.5
    team.write()
    run = team.run()
    assert run.proc.returncode == 0, run.output
    events = team.events()
    [issued] = _programmatic(events)
    assert issued["agent_id"] == "crew" and issued["interrupt_id"] == "crew.1"  # the group's own id space
    assert team.assert_exactly_once("crew-b", 2).status == "interrupted"
    assert team.assert_exactly_once("crew-a", 6).status == "completed"
    assert team.assert_exactly_once("agent-a", 6).status == "completed"
    assert not by_event(events, "group_restarted")


def test_the_team_budget_overshoots_by_at_most_the_cycles_in_flight_over_seeded_runs(make_team):
    """Prices that are not binary-exact (0.005) and several agents racing, run after run.

    When the spending reaches the budget, each agent may finish the one cycle it
    has in flight and no more: at most one reply per agent beyond the budget.
    """
    import random

    rng = random.Random(17)
    price, budget = 0.005, 0.05  # ten replies: a float sum of ten 0.005 is 0.04999...
    for trial in range(6):
        agents = rng.choice((2, 3, 4))
        team = make_team(agents=agents, latency=rng.choice((0.03, 0.05, 0.1)), max_cycles=40)
        team.data["budget_usd"] = budget
        _charge(team, price)
        run = team.run()
        assert run.proc.returncode == 0, run.output
        replies = sum(team.assert_exactly_once(n).cycle for n in team.names)  # type: ignore[union-attr]
        spent = replies * price
        assert budget - 1e-9 <= spent <= budget + agents * price + 1e-9, (trial, agents, replies)
        [issued] = _programmatic(team.events())
        assert "team budget $0.05 reached" in issued["message"]
