"""Restarts after Erlang/OTP: the rules as data, then real workers killed and restarted."""

from __future__ import annotations

import time
from datetime import datetime

import psutil
import pytest

from harness import PACKED, by_event
from supervisor.config import RestartPolicy
from supervisor.runtime.restarts import FIRST_DELAY, MAX_DELAY, RestartBook, restarts_with, wants_restart
from run_entry import run_with_entry, start_entry


@pytest.mark.parametrize(
    "kind,status,restarts",
    [
        ("transient", "failed", True),
        ("transient", "interrupted", False),
        ("transient", "completed", False),
        ("permanent", "failed", True),
        ("permanent", "interrupted", True),
        ("permanent", "completed", False),  # a finished task has nothing to restart
        ("temporary", "failed", False),
    ],
)
def test_which_exits_restart_an_agent(kind, status, restarts):
    assert wants_restart(kind, status) is restarts


def test_intensity_is_max_restarts_within_the_window_with_doubling_delays():
    book = RestartBook(RestartPolicy(restart="transient", max_restarts=3, restart_window=10.0))
    assert [book.admit(t) for t in (0.0, 1.0, 2.0)] == [FIRST_DELAY, FIRST_DELAY * 2, FIRST_DELAY * 4]
    assert book.admit(3.0) is None  # a fourth failure within 10 s: the agent has failed
    assert book.admit(11.5) == FIRST_DELAY * 2  # the first two fell out of the window; one is left
    long = RestartBook(RestartPolicy(restart="transient", max_restarts=100, restart_window=1e9))
    assert max(long.admit(float(t)) for t in range(100)) == MAX_DELAY
    never = RestartBook(RestartPolicy(restart="transient", max_restarts=0, restart_window=60.0))
    assert never.admit(0.0) is None


def test_strategies_pick_who_restarts_with_whom():
    order = ["a", "b", "c"]
    assert restarts_with("one_for_one", order, "b") == ["b"]
    assert restarts_with("one_for_all", order, "b") == ["a", "b", "c"]
    assert restarts_with("rest_for_one", order, "b") == ["b", "c"]


def _ts(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def test_a_killed_worker_is_restarted_and_resumes_from_its_checkpoint(make_team, backend):
    team = make_team(latency=0.1, max_cycles=10, backend=backend)
    run = team.start()
    pids = run.kill_worker_after("agent-b", checkpoints=3)
    assert run.wait() == 0, run.output
    events = run.new_events()
    (restarted,) = by_event(events, "worker_restarted", "agent-b")
    assert restarted["attempt"] == 1 and restarted["pid"] != pids["agent-b"]
    started = by_event(events, "worker_started", "agent-b")
    assert len(started) == 2 and started[1]["resumed"] is True and started[1]["cycle"] >= 3
    for name in team.names:
        assert team.assert_exactly_once(name, 10).status == "completed"
    # one_for_one: the others run on, but for an agent that shared the killed process (agents_per_process)
    sharing = {name for name in team.names if pids[name] == pids["agent-b"]}
    assert sharing == ({"agent-a", "agent-b"} if backend == PACKED else {"agent-b"})
    assert {e["agent_id"] for e in by_event(events, "worker_restarted")} == sharing


def test_beyond_its_restart_limit_an_agent_fails_and_the_run_exits_3(make_team):
    team = make_team(agents=1, max_cycles=2)
    team.data["max_restarts"] = 2
    team.write()
    code, console = run_with_entry(team, "wire_faults:crash_in_agent_loop")  # crashes every time
    assert code == 3
    events = team.events()
    assert [e["attempt"] for e in by_event(events, "worker_restarted")] == [1, 2]
    (limit,) = by_event(events, "restart_limit_reached")
    assert limit["max_restarts"] == 2 and "a bug in the agent loop" in limit["reason"]
    exits = by_event(events, "worker_exited")
    restarts = by_event(events, "worker_restarted")
    waits = [_ts(r) - _ts(e) for e, r in zip(exits, restarts)]
    assert waits[0] >= FIRST_DELAY * 0.9 and waits[1] >= FIRST_DELAY * 2 * 0.9  # a growing delay
    assert by_event(events, "supervisor_stopped")[0]["status"] == "failed"
    assert "failed beyond its restart limit" in console or "max_restarts 2" in console


def test_a_hung_worker_is_restarted_like_a_crashed_one(make_team, backend):
    team = make_team(agents=1, max_cycles=1, backend=backend)  # on Ray: its host kills the one child it is asked to
    team.data.update(hang_timeout=2, max_restarts=1)
    team.write()
    code, _ = run_with_entry(team, "wire_faults:deaf_worker")  # every incarnation hangs
    assert code == 3
    events = team.events()
    assert len(by_event(events, "worker_hung")) == 2 and len(by_event(events, "worker_restarted")) == 1
    assert [e["exitcode"] for e in by_event(events, "worker_exited")] == [-9, -9]  # killed, both times


@pytest.mark.parametrize("strategy,expected", [("one_for_all", ["agent-a", "agent-b", "agent-c"]), ("rest_for_one", ["agent-b", "agent-c"])])
def test_the_strategy_restarts_siblings_with_the_failed_agent(make_team, strategy, expected):
    team = make_team(latency=0.1, max_cycles=12, strategy=strategy)
    run = team.start()
    pids = run.wait_all_started()
    run.wait_for(lambda ev: len(by_event(ev, "checkpoint_saved", "agent-b")) >= 2, "agent-b's second checkpoint")
    killed_at = time.time()
    psutil.Process(pids["agent-b"]).kill()
    assert run.wait() == 0, run.output
    events = run.new_events()
    assert sorted(e["agent_id"] for e in by_event(events, "worker_restarted")) == expected
    for name in set(team.names) - set(expected):
        assert len(by_event(events, "worker_started", name)) == 1
    siblings = [e for e in by_event(events, "worker_exited") if e["agent_id"] != "agent-b" and _ts(e) >= killed_at]
    assert {e["agent_id"] for e in siblings} >= set(expected) - {"agent-b"}
    for name in team.names:
        assert team.assert_exactly_once(name, 12).status == "completed"


def test_a_stop_cancels_a_pending_restart(make_team):
    import signal
    import subprocess

    from harness import HANG

    team = make_team(agents=1, max_cycles=2)
    team.data["max_restarts"] = 10  # delays 0.1, 0.2, 0.4, 0.8 s...: wide windows to interrupt in
    team.write()
    proc = start_entry(team.config, "wire_faults:crash_in_agent_loop", stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + HANG
        while len(by_event(team.events(), "worker_exited")) < 4 and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)  # the 4th restart is 0.8 s away
        _, err = proc.communicate(timeout=HANG)
    finally:
        proc.kill()
    assert proc.returncode == 0, err  # stopped gracefully; nothing left running unsaved
    events = team.events()
    assert len(by_event(events, "worker_restarted")) == 3
    assert by_event(events, "supervisor_stopped")[0]["status"] == "interrupted"


def test_on_ray_a_host_that_stops_answering_is_killed_and_its_agents_resume_elsewhere(make_team):
    """A host that does not kill a hung child within its grace is killed itself, with every child it holds."""
    import os
    import signal

    pytest.importorskip("ray", reason="the Ray backend's tests need `pip install '.[ray]'`")
    team = make_team(agents=2, latency=0.1, max_cycles=12, backend="ray")
    team.data.update(hang_timeout=2, max_restarts=3)
    team.write()
    run = team.start()
    pids = run.wait_all_started()
    run.wait_cycles(2)
    host = psutil.Process(pids["agent-a"]).ppid()
    assert psutil.Process(pids["agent-b"]).ppid() == host  # the node's agents share one host actor
    os.kill(host, signal.SIGSTOP)  # it hears nothing more, not even the calls that would kill its children
    try:
        assert run.wait() == 0, run.output
    finally:
        try:
            os.kill(host, signal.SIGKILL)
        except ProcessLookupError:
            pass
    events = run.new_events()
    assert {e["agent_id"] for e in by_event(events, "worker_hung")} == {"agent-a", "agent-b"}
    first_exits = {e["agent_id"]: e["exitcode"] for e in reversed(by_event(events, "worker_exited"))}
    assert first_exits == {"agent-a": -9, "agent-b": -9}  # killed (with their host), not lost
    for name in team.names:
        started = by_event(events, "worker_started", name)
        assert len(started) == 2 and started[1]["resumed"] is True
        assert team.assert_exactly_once(name, 12).status == "completed"
