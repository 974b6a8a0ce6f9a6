"""Promises of the run that a lucky timing could otherwise hide: each test fails when its promise breaks.

- an interrupt's latency_ms runs from the supervisor's decision to the checkpoint being durable;
- a worker that crashes while the team stops gracefully fails its agent, and the run exits 3;
- storage is private: folders 0700, files 0600.
"""

from __future__ import annotations

import os
import signal
import stat
from datetime import datetime

import psutil

from harness import by_event


def _ts(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def test_latency_ms_runs_from_the_interrupt_to_the_durable_checkpoint(make_team):
    team = make_team(agents=1, latency=1.0, max_cycles=6)
    run = team.start()
    run.wait_all_started()
    run.wait_cycles(1)  # the second cycle is in flight now, for about a second
    run.ctrl_c()
    assert run.wait() == 0, run.output
    events = team.events()
    [issued] = [e for e in by_event(events, "interrupt_initiated") if "workers" in e]
    [done] = by_event(events, "interrupt_completed")
    # The worker finished its cycle (most of a second) before saving: that is in the latency.
    assert done["latency_ms"] >= 100, done
    # And the checkpoint was durable before the supervisor logged the completion.
    assert issued["issued_at"] + done["latency_ms"] / 1000 <= _ts(done) + 0.001, (issued, done)


def test_a_worker_that_crashes_while_the_team_stops_fails_its_agent(make_team):
    team = make_team(agents=2, latency=2.0, max_cycles=4)
    run = team.start()
    started = run.wait_all_started()
    run.ctrl_c()
    run.wait_for(lambda ev: len([e for e in by_event(ev, "interrupt_initiated") if "ack_ms" in e]) == 2, "both acks")
    psutil.Process(started["agent-a"]).send_signal(signal.SIGKILL)  # mid-cycle, while finishing it
    assert run.wait() == 3, run.output
    events = team.events()
    [exited] = by_event(events, "worker_exited", "agent-a")
    assert exited["status"] == "failed", exited
    assert by_event(events, "worker_restarted") == []  # the team is stopping: nothing restarts
    assert by_event(events, "supervisor_stopped")[-1]["status"] == "failed"
    team.assert_exactly_once("agent-b")


def test_storage_is_private_folders_0700_files_0600(make_team):
    team = make_team(agents=2, latency=0.01, max_cycles=2)
    assert team.run().proc.returncode == 0
    folders = [team.storage, *(team.storage / n for n in team.names)]
    files = [team.storage / "events.jsonl", team.storage / "interrupt_metrics.jsonl",
             team.storage / ".supervisor.lock", *(p for n in team.names for p in (team.storage / n).iterdir())]
    assert all(stat.S_IMODE(os.stat(f).st_mode) == 0o700 for f in folders), [oct(os.stat(f).st_mode) for f in folders]
    assert all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in files), {str(f): oct(os.stat(f).st_mode) for f in files}
