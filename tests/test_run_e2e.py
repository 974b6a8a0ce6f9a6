"""The product end to end: real supervisor processes, real workers, real signals.

Ctrl+C is typed into a real pseudo-terminal; SIGTERM and SIGKILL are sent with
os.kill. Every assertion is on what a user or operator sees afterwards: exit
codes, the console, events.jsonl, interrupt_metrics.jsonl and the checkpoints.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from harness import HANG, REPO, by_event, cli, closing_statuses, fill_up, wait_gone
from supervisor.runtime.arbiter import START_BATCH

SEED_INITIATED = {"timestamp", "event", "source", "mode", "message", "agent_id"}
SEED_COMPLETED = {"timestamp", "event", "checkpoint_id", "agent_id", "total_interrupts", "graceful_interrupts", "immediate_interrupts"}


def test_a_team_completes_and_a_rerun_resumes_to_nothing(make_team):
    team = make_team(latency=0.1, max_cycles=3)
    first = team.start()
    first.wait_all_started()
    family = [p.pid for p in first.descendants()]  # workers and the forkserver
    assert first.wait() == 0, first.output
    wait_gone(family, 2)  # nothing outlives a finished run
    assert "NEW SESSION" in first.output and "Team completed successfully" in first.output
    events = first.new_events()
    assert len(by_event(events, "cycle_completed")) == 9
    assert by_event(events, "supervisor_stopped")[0]["status"] == "completed"
    for name in team.names:
        assert team.assert_exactly_once(name, 3).status == "completed"

    again = team.run()
    assert again.proc.returncode == 0, again.output
    assert "EXISTING CHECKPOINTS FOUND" in again.output
    assert by_event(again.new_events(), "cycle_completed") == []
    for event in by_event(again.new_events(), "worker_started"):
        assert event["cycle"] == 3 and event["resumed"] is True


LATE_STOP = """\
import os, signal, sys
from supervisor.runtime.arbiter import Arbiter
from supervisor.cli import main

loop = Arbiter.run

def run_then_stop_late(self):
    outcome = loop(self)
    os.kill(os.getpid(), signal.SIGINT)  # the loop is over, the process is not: the window a real Ctrl+C can hit
    os.kill(os.getpid(), signal.SIGTERM)
    return outcome

Arbiter.run = run_then_stop_late
sys.exit(main(sys.argv[1:]))
"""


def test_a_stop_signal_after_the_loop_ends_leaves_a_finished_run_finished(make_team):
    """A Ctrl+C or SIGTERM landing between the loop's end and the process's exit is not a failure (not 130, not 143)."""
    team = make_team(agents=1, latency=0.01, max_cycles=1)
    done = subprocess.run([sys.executable, "-c", LATE_STOP, str(team.config)], capture_output=True, text=True,
                          timeout=HANG, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Team completed successfully" in done.stdout
    assert "Traceback" not in done.stderr
    assert by_event(team.events(), "supervisor_stopped")[0]["status"] == "completed"


def test_one_ctrl_c_stops_gracefully_and_the_next_run_resumes(make_team, backend):
    team = make_team(latency=0.3, max_cycles=6, backend=backend)
    run = team.start(terminal=True)
    run.wait_all_started()
    run.wait_cycles(3)
    run.ctrl_c()
    assert run.wait() == 0, run.output
    out = run.output
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert "Initiating graceful shutdown" in out and "Press Ctrl+C again for immediate shutdown" in out
    assert "Status: interrupted" in out

    events = run.new_events()
    stopped_at: dict[str, int] = {}
    for name in team.names:
        cycles = [e["cycle"] for e in by_event(events, "cycle_completed", name)]
        checkpoint = team.latest(name)
        # The in-flight cycle was finished and saved, nothing after it was started.
        assert checkpoint is not None and checkpoint.status == "interrupted"
        assert checkpoint.cycle == cycles[-1] < team.max_cycles
        stopped_at[name] = checkpoint.cycle
        team.assert_exactly_once(name)

    metrics = team.events("interrupt_metrics.jsonl")
    assert [m["event"] for m in metrics].count("interrupt_initiated") == 1 + len(team.names)
    completed = by_event(metrics, "interrupt_completed")
    assert sorted(m["agent_id"] for m in completed) == team.names
    for line in metrics:
        assert line["source"] == "USER" if line["event"] == "interrupt_initiated" else True
        assert (SEED_INITIATED if line["event"] == "interrupt_initiated" else SEED_COMPLETED) <= set(line)
    [issued] = [m for m in metrics if m["event"] == "interrupt_initiated" and "workers" in m]
    for line in completed:
        assert (line["total_interrupts"], line["graceful_interrupts"], line["immediate_interrupts"]) == (1, 1, 0)
        assert (team.storage / line["agent_id"] / line["checkpoint_id"]).exists()
        # From the supervisor's decision to the checkpoint being durable: after the issue, before the log line.
        durable = issued["issued_at"] + line["latency_ms"] / 1000
        assert issued["issued_at"] < durable <= _epoch(line["timestamp"]) + 0.001, (issued, line)
    # interrupt_metrics.jsonl holds the very same lines as events.jsonl
    assert all(m in team.events() for m in metrics)

    resumed = team.start(terminal=True)
    assert resumed.wait() == 0, resumed.output
    assert "EXISTING CHECKPOINTS FOUND" in resumed.output
    for name in team.names:
        first_cycle = by_event(resumed.new_events(), "cycle_completed", name)[0]["cycle"]
        assert first_cycle == stopped_at[name] + 1
        assert team.assert_exactly_once(name, team.max_cycles).status == "completed"


def test_two_ctrl_c_cancel_in_flight_calls_and_keep_checkpoints_valid(make_team, backend):
    team = make_team(latency=0.1, max_cycles=50, immediate_timeout=2, backend=backend)
    warmup = team.start()
    warmup.wait_cycles(6)
    warmup.ctrl_c()
    assert warmup.wait() == 0, warmup.output
    saved = {name: team.latest(name).cycle for name in team.names}

    team.set_latency(60.0)  # every reply of the next run is in flight when we interrupt
    run = team.start(terminal=True)
    pids = list(run.wait_all_started().values())
    run.ctrl_c()
    run.wait_for(lambda ev: len(by_event(ev, "interrupt_initiated")) == 1 + len(team.names), "every ack")
    pressed = time.monotonic()
    run.ctrl_c()
    assert run.wait() == 1, run.output
    assert time.monotonic() - pressed < 2 + 3  # immediate_timeout plus generous slack: no hang
    wait_gone(pids, 2)
    out = run.output
    assert "Traceback" not in out and "Immediate shutdown" in out

    events = run.new_events()
    assert by_event(events, "cycle_completed") == []  # the in-flight calls were cancelled, not finished
    assert by_event(events, "supervisor_stopped")[0]["exit_code"] == 1
    for name in team.names:
        assert team.latest(name).cycle == saved[name]
        team.assert_exactly_once(name)
        for info in team.store(name).list():
            team.store(name).verify(info.checkpoint_id)
    completed = by_event(events, "interrupt_completed")
    assert {e["mode"] for e in completed} == {"IMMEDIATE"}
    assert all(e["immediate_interrupts"] == 1 and e["total_interrupts"] == 2 for e in completed)


def test_a_stop_during_a_big_start_is_taken_at_once_and_the_agents_not_started_never_start(make_team):
    """The workers are forked batch by batch; a Ctrl+C between two batches ends the start there.

    The first worker_started is logged between the first two batches (once, it came only after the
    last fork): the SIGINT sent then stops the team with most of it never started. Every started
    worker stops gracefully and is reaped; the others leave nothing in storage.
    """
    team = make_team(agents=1, latency=1.0, max_cycles=100)
    team.names = [f"agent-{i:03d}" for i in range(5 * START_BATCH + 8)]
    team.data["agents"] = [{"name": n, "task": f"Count, as {n}.", "max_cycles": 100} for n in team.names]
    team.write()
    run = team.start()
    run.wait_for(lambda events: by_event(events, "worker_started"), "the first worker to be ready")
    run.signal(signal.SIGINT)
    assert run.wait() == 0, run.output
    events = run.new_events()
    started = {e["agent_id"] for e in by_event(events, "worker_started")}
    assert START_BATCH <= len(started) < len(team.names), len(started)
    assert {e["agent_id"] for e in by_event(events, "worker_exited")} == started
    assert all(e["status"] == "interrupted" for e in by_event(events, "worker_exited"))
    assert not any((team.storage / name).exists() for name in set(team.names) - started)
    stopped = by_event(events, "supervisor_stopped")[0]
    assert (stopped["status"], stopped["exit_code"]) == ("interrupted", 0)
    rows = closing_statuses(run.output, team.names)  # the closing statistics say what happened to each
    assert rows == {name: "interrupted" if name in started else "not started" for name in team.names}


def test_sigterm_is_graceful_with_source_system(make_team, backend):
    team = make_team(latency=0.2, max_cycles=40, backend=backend)
    run = team.start()
    run.wait_cycles(3)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0, run.output
    metrics = team.events("interrupt_metrics.jsonl")
    assert {m["source"] for m in by_event(metrics, "interrupt_initiated")} == {"SYSTEM"}
    assert {m["mode"] for m in metrics if "mode" in m} == {"GRACEFUL"}
    for name in team.names:
        assert team.latest(name).status == "interrupted"
        team.assert_exactly_once(name)


def test_a_second_sigterm_is_immediate(make_team):
    team = make_team(latency=30.0, max_cycles=5)
    run = team.start()
    pids = list(run.wait_all_started().values())
    run.signal(signal.SIGTERM)
    run.wait_for(lambda ev: by_event(ev, "interrupt_initiated"), "the first interrupt")
    run.signal(signal.SIGTERM)
    assert run.wait() == 1, run.output
    wait_gone(pids, 2)
    modes = [(m["mode"], m["source"]) for m in by_event(team.events("interrupt_metrics.jsonl"), "interrupt_initiated", team.team)]
    assert modes == [("GRACEFUL", "SYSTEM"), ("IMMEDIATE", "SYSTEM")]


def test_graceful_timeout_escalates_to_immediate(make_team):
    team = make_team(latency=30.0, max_cycles=5, graceful_timeout=0.5, immediate_timeout=1)
    run = team.start()
    run.wait_all_started()
    run.ctrl_c()
    assert run.wait() == 1, run.output
    assert "Graceful timeout" in run.output
    issued = by_event(team.events("interrupt_metrics.jsonl"), "interrupt_initiated", team.team)
    assert [(m["mode"], m["source"]) for m in issued] == [("GRACEFUL", "USER"), ("IMMEDIATE", "SYSTEM")]


def test_sigkill_of_the_supervisor_leaves_no_process_behind(make_team, backend):
    team = make_team(latency=0.2, max_cycles=100, backend=backend)
    run = team.start()
    run.wait_for(lambda ev: {e["agent_id"] for e in by_event(ev, "checkpoint_saved")} == set(team.names), "a checkpoint each")
    family = [p.pid for p in run.descendants()]  # on Ray: its keeper, every process of the local Ray, the workers
    workers = [e["pid"] for e in by_event(run.new_events(), "worker_started")]
    assert set(workers) <= set(family) and len(family) >= len(team.names)
    run.signal(signal.SIGKILL)
    run.proc.wait(HANG)
    wait_gone(family, 2 if backend == "local" else 10)  # the contract's 10 s for a local Ray
    for name in team.names:  # what was complete is still there and valid
        team.assert_exactly_once(name)


def test_sigkill_of_a_temporary_worker_is_noticed_and_the_run_fails_clearly(make_team):
    team = make_team(latency=0.2, max_cycles=8, restart="temporary")
    run = team.start()
    pids = run.wait_all_started()
    run.wait_cycles(2, agent="agent-b")
    psutil.Process(pids["agent-b"]).kill()
    assert run.wait() == 3, run.output
    events = run.new_events()
    exited = by_event(events, "worker_exited", "agent-b")[0]
    assert exited["status"] == "failed" and exited["exitcode"] == -signal.SIGKILL and "SIGKILL" in exited["reason"]
    assert by_event(events, "supervisor_stopped")[0]["status"] == "failed"
    assert "worker exited unexpectedly" in run.output
    for name in ("agent-a", "agent-c"):  # the others were not disturbed
        assert team.assert_exactly_once(name, 8).status == "completed"
    team.assert_exactly_once("agent-b")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_corrupt_checkpoint_is_skipped_and_resume_falls_back(make_team, damage):
    team = make_team(latency=0.1, max_cycles=6, agents=1)
    run = team.start()
    run.wait_cycles(3)
    run.ctrl_c()
    assert run.wait() == 0
    store = team.store("agent-a")
    newest = store.list()[-1]
    previous = store.list()[-2]
    data = newest.path.read_bytes()
    newest.path.write_bytes(data[: len(data) // 2] if damage == "truncate" else gzip.compress(b"{not json\n"))

    again = team.run()
    assert again.proc.returncode == 0, again.output
    events = again.new_events()
    corrupt = by_event(events, "checkpoint_corrupt", "agent-a")
    assert [e["checkpoint_id"] for e in corrupt] == [newest.checkpoint_id] and corrupt[0]["error"]
    assert by_event(events, "worker_started", "agent-a")[0]["cycle"] == previous.cycle
    assert "corrupt checkpoint skipped" in again.output
    assert newest.path.exists()  # never deleted, except by retention
    team.assert_exactly_once("agent-a", 6)


def test_status_shows_a_live_run_as_running(make_team):
    import json

    team = make_team(latency=0.2, max_cycles=100, agents=1)
    run = team.start()
    run.wait_cycles(2)
    status = cli("status", str(team.config), "--json")
    assert json.loads(status.stdout)[0]["status"] == "running"
    run.ctrl_c()
    assert run.wait() == 0
    status = cli("status", str(team.config), "--json")
    assert json.loads(status.stdout)[0]["status"] == "interrupted"


def test_a_stale_temporary_file_is_cleaned_at_start_and_reported(make_team):
    team = make_team(latency=0.01, max_cycles=2, agents=1)
    folder = team.storage / "agent-a"
    folder.mkdir(parents=True)
    stale = folder / ".tmp-checkpoint_00000009_00000001.jsonl.gz"
    stale.write_bytes(b"half a checkpoint from a crash")
    run = team.run()
    assert run.proc.returncode == 0, run.output
    assert not stale.exists()
    assert [e["file"] for e in by_event(run.new_events(), "checkpoint_temp_removed")] == [stale.name]
    team.assert_exactly_once("agent-a", 2)


def test_closing_the_terminal_stops_gracefully(make_team):
    team = make_team(latency=0.2, max_cycles=40)
    run = team.start(terminal=True)
    run.wait_all_started()
    run.wait_cycles(3)
    run.signal(signal.SIGHUP)
    assert run.wait() == 0
    (issued,) = by_event(team.events("interrupt_metrics.jsonl"), "interrupt_initiated", team.team)
    assert (issued["mode"], issued["source"]) == ("GRACEFUL", "SYSTEM") and "SIGHUP" in issued["message"]
    for name in team.names:
        assert team.latest(name).status == "interrupted"
        team.assert_exactly_once(name)


def test_an_event_log_that_cannot_be_written_does_not_stop_the_team(make_team, mounts):
    team = make_team(latency=0.02, max_cycles=3, agents=2)
    team.storage.mkdir()
    # events.jsonl lives on a full disk (every write fails with ENOSPC); the checkpoints beside it do not.
    full = mounts.tmpfs(team.root / "full", "16k")
    (full / "events.jsonl").touch(0o600)
    fill_up(full)
    (team.storage / "events.jsonl").touch(0o600)
    mounts.bind(full / "events.jsonl", team.storage / "events.jsonl")
    run = team.run()
    assert run.proc.returncode == 3, run.output
    assert "cannot write events.jsonl: No space left on device" in run.output and "Traceback" not in run.output
    for name in team.names:  # the agents' work is all there
        assert team.assert_exactly_once(name, 3).status == "completed"


def _epoch(timestamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
