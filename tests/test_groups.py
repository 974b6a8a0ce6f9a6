"""Nested teams: each group is a sub-supervisor process, driven end to end.

Interrupts travel down (the root's Ctrl+C reaches a group's agents through the
group), events travel up (the group's agents' lines are in the one events.jsonl,
written by the root), and a group's failure is handled by its parent by the
same rules as a worker's: restarted by the team's restart keys, and beyond them
the team stops with exit 3.
"""

from __future__ import annotations

import os
import signal

import psutil

from harness import by_event, wait_gone
from run_entry import run_with_entry
from supervisor.tools.stats import InterruptSummary
from supervisor.vocabulary import parse_timestamp


def _group_pid(run, group: str, nth: int = 1) -> int:
    def started(events: list) -> list:
        found = by_event(events, "group_started", group)
        return found if len(found) >= nth else []

    return int(run.wait_for(started, f"{group} started")[nth - 1]["pid"])


def test_a_team_with_a_group_completes_every_agent_exactly_once(make_team):
    team = make_team(agents=1, latency=0.02, max_cycles=4, groups={"writers": {"agents": 2, "strategy": "one_for_all"}})
    run = team.run()
    assert run.proc.returncode == 0, run.output
    events = run.new_events()
    (started,) = by_event(events, "supervisor_started")
    assert started["agents"] == ["agent-a", "writers-a", "writers-b"] and started["groups"] == ["writers"]
    (group,) = by_event(events, "group_started", "writers")
    assert group["agents"] == ["writers-a", "writers-b"] and group["pid"] != started["pid"]
    for name in team.names:
        team.assert_exactly_once(name, 4)
        assert len(by_event(events, "cycle_completed", name)) == 4
    (stopped,) = by_event(events, "group_stopped", "writers")
    assert stopped["status"] == "completed"
    (exited,) = by_event(events, "group_exited", "writers")
    assert exited["status"] == "completed" and exited["exitcode"] == 0
    assert events[-1]["event"] == "supervisor_stopped" and events[-1]["status"] == "completed"
    for name in team.names:  # the root's statistics show the group's agents too
        assert f"{name}" in run.output and "cycles 4/4" in run.output


def test_ctrl_c_travels_down_through_a_group_and_the_next_run_resumes(make_team):
    # Enough cycles that agent-a, which starts before the group, is still running when writers-b is at 2.
    team = make_team(agents=1, latency=0.1, max_cycles=30, groups={"writers": {"agents": 2}})
    run = team.start(terminal=True)
    run.wait_all_started()
    run.wait_cycles(2, "writers-b")
    run.ctrl_c()
    assert run.wait() == 0, run.output
    events = run.new_events()
    (initiated,) = by_event(events, "interrupt_initiated", team.team)
    assert (initiated["mode"], initiated["source"]) == ("GRACEFUL", "USER")
    for name in team.names:  # every agent, in the group or not, acknowledged and stopped on that interrupt
        (ack,) = by_event(events, "interrupt_initiated", name)
        (done,) = by_event(events, "interrupt_completed", name)
        assert ack["interrupt_id"] == done["interrupt_id"] == initiated["interrupt_id"]
        assert done["checkpoint_id"] == team.latest(name).checkpoint_id
        # From the root's decision, across the group, to the checkpoint being durable: a real, bounded span.
        durable = initiated["issued_at"] + done["latency_ms"] / 1000
        assert initiated["issued_at"] < durable <= parse_timestamp(done["timestamp"]).timestamp() + 0.001
        assert team.latest(name).status == "interrupted"
    summary = InterruptSummary()
    for event in events:
        summary.add(1, event)
    assert (summary.total, summary.graceful) == (1, 1)  # one interrupt, however many levels it crossed
    (exited,) = by_event(events, "group_exited", "writers")
    assert exited["status"] == "interrupted"
    again = team.run()
    assert again.proc.returncode == 0, again.output
    for name in team.names:
        assert team.assert_exactly_once(name, 30).status == "completed"
    resumed = {e["agent_id"]: e["resumed"] for e in by_event(again.new_events(), "worker_started")}
    assert resumed == {name: True for name in team.names}


def test_a_second_ctrl_c_stops_a_group_immediately_and_leaves_nothing(make_team):
    team = make_team(agents=1, latency=2.0, max_cycles=5, groups={"writers": {"agents": 2}})
    run = team.start(terminal=True)
    run.wait_all_started()
    family = [p.pid for p in run.descendants()]
    run.ctrl_c()
    run.wait_for(lambda ev: by_event(ev, "interrupt_initiated", "writers-b"), "the group's agents' acks")
    run.ctrl_c()
    assert run.wait(timeout=20) == 1, run.output
    wait_gone(family, 2)
    events = run.new_events()
    for name in team.names:  # cancelled mid-call: nothing was completed, nothing is corrupt
        (done,) = by_event(events, "interrupt_completed", name)
        assert done["mode"] == "IMMEDIATE"
        team.assert_exactly_once(name, may_be_empty=True)


def test_a_killed_group_is_restarted_and_its_agents_resume(make_team):
    team = make_team(agents=1, latency=0.1, max_cycles=10, groups={"writers": {"agents": 2}})
    run = team.start()
    workers = run.wait_all_started()
    group_pid = _group_pid(run, "writers")
    run.wait_for(lambda ev: len(by_event(ev, "checkpoint_saved", "writers-a")) >= 3, "writers-a's third checkpoint")
    tree = [p.pid for p in psutil.Process(group_pid).children(recursive=True)]
    os.kill(group_pid, signal.SIGKILL)
    wait_gone(tree + [workers["writers-a"], workers["writers-b"]], 2)  # its workers die with it
    assert run.wait() == 0, run.output
    events = run.new_events()
    killed, last = by_event(events, "group_exited", "writers")
    assert killed["status"] == "failed" and killed["reason"] == "killed by SIGKILL"
    assert last["status"] == "completed"
    (restarted,) = by_event(events, "group_restarted", "writers")
    assert restarted["attempt"] == 1 and restarted["pid"] != group_pid
    assert len(by_event(events, "group_started", "writers")) == 2
    for name in ("writers-a", "writers-b"):
        starts = by_event(events, "worker_started", name)
        assert len(starts) == 2 and starts[1]["resumed"] is True and starts[1]["cycle"] >= 1
    assert len(by_event(events, "worker_started", "agent-a")) == 1  # one_for_one at the top
    for name in team.names:
        assert team.assert_exactly_once(name, 10).status == "completed"


def test_a_groups_strategy_restarts_its_own_agents_only(make_team):
    team = make_team(agents=1, latency=0.1, max_cycles=8, groups={"writers": {"agents": 2, "strategy": "one_for_all"}})
    run = team.start()
    run.kill_worker_after("writers-a", checkpoints=2)
    assert run.wait() == 0, run.output
    events = run.new_events()
    assert [e["agent_id"] for e in by_event(events, "worker_restarted")] == ["writers-a", "writers-b"]
    (sibling_exit,) = [e for e in by_event(events, "worker_exited", "writers-b") if e["status"] == "interrupted"]
    assert "restart" in sibling_exit["reason"]
    assert by_event(events, "group_restarted") == [] and len(by_event(events, "worker_started", "agent-a")) == 1
    for name in team.names:
        assert team.assert_exactly_once(name, 8).status == "completed"


def test_a_group_that_keeps_failing_fails_the_team_by_the_same_rules(make_team):
    team = make_team(agents=0, max_cycles=2, groups={"writers": {"agents": 1}})
    team.data["max_restarts"] = 1  # for the group's agent (inherited) and for the group itself
    team.write()
    code, console = run_with_entry(team, "wire_faults:crash_in_agent_loop")  # every worker crashes
    assert code == 3
    events = team.events()
    # Inside the group: one restart, then the agent has failed and the group stops, failed.
    limits = by_event(events, "restart_limit_reached", "writers-a")
    assert len(limits) == 2  # once in each of the group's two lives
    (group_restart,) = by_event(events, "group_restarted", "writers")
    assert group_restart["attempt"] == 1
    assert [e["status"] for e in by_event(events, "group_exited", "writers")] == ["failed", "failed"]
    (limit,) = by_event(events, "restart_limit_reached", "writers")
    assert "writers-a" in limit["reason"]
    assert events[-1]["event"] == "supervisor_stopped" and events[-1]["status"] == "failed"
    assert "[writers] ❌ failed 2 times" in console and "writers-a  failed" in console


def test_a_hung_group_is_killed_and_restarted(make_team):
    team = make_team(agents=0, latency=0.1, max_cycles=30, groups={"writers": {"agents": 1}})
    team.data["hang_timeout"] = 2
    team.write()
    run = team.start()
    run.wait_all_started()
    group_pid = _group_pid(run, "writers")
    os.kill(group_pid, signal.SIGSTOP)  # its agents keep working; the group itself says nothing
    (hung,) = run.wait_for(lambda ev: by_event(ev, "worker_hung", "writers"), "the group's hang to be noticed")
    assert hung["pid"] == group_pid and hung["silent_s"] >= 2
    _group_pid(run, "writers", nth=2)
    assert run.wait() == 0, run.output
    hung_exit, last = by_event(run.new_events(), "group_exited", "writers")
    assert hung_exit["status"] == "failed" and hung_exit["reason"].startswith("hung")
    assert last["status"] == "completed"
    team.assert_exactly_once("writers-a", 30)


def test_killing_the_supervisor_takes_every_group_with_it(make_team):
    team = make_team(agents=1, latency=0.5, max_cycles=20, groups={"g1": {"agents": 2}, "g2": {"agents": 1}})
    run = team.start()
    run.wait_all_started()
    family = [p.pid for p in run.descendants()]
    assert len(family) >= 3 + 2 * 2  # workers, groups, and the forkservers (each group has its own)
    run.signal(signal.SIGKILL)
    run.wait()
    wait_gone(family, 2)


def test_a_group_may_speak_only_for_its_own_agents(make_team, monkeypatch):
    team = make_team(agents=1, max_cycles=2, latency=0.02, restart="temporary", groups={"writers": {"agents": 1}})
    monkeypatch.setattr("supervisor.runtime.arbiter.GROUP_ENTRY", "wire_faults:group_speaking_for_others")
    code, _ = run_with_entry(team, "workers.entry:run_worker")
    assert code == 3  # the group failed (temporary: not restarted); the real agent completed
    events = team.events()
    (error,) = by_event(events, "protocol_error", "writers")
    assert "'outsider'" in error["error"]
    assert by_event(events, "cycle_completed", "outsider") == []
    (exited,) = by_event(events, "group_exited", "writers")
    assert exited["status"] == "failed"
    team.assert_exactly_once("agent-a", 2)
