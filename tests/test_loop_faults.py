"""Faults of the loop itself: a paused supervisor, a worker that floods its pipe.

A supervisor that is stopped (Ctrl+Z then `fg`, a debugger, SIGSTOP/SIGCONT)
for longer than the hang timeout must not judge its healthy workers hung: what
they sent meanwhile waits in their pipes and is read before any deadline. A
worker that sends valid frames without pause must not keep the loop from the
others or from the signals, and past a sane message rate it is broken.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from harness import HANG, REPO, by_event, closing_statuses, gone

HERE = Path(__file__).resolve().parent
PAUSE = 5.0  # seconds the supervisor is stopped: longer than the hang timeout below


def test_a_paused_supervisor_does_not_kill_its_healthy_workers(make_team):
    team = make_team(agents=3, latency=0.2, max_cycles=12)
    team.data["hang_timeout"] = 3
    team.write()
    run = team.start()
    run.wait_all_started()
    run.wait_cycles(3)
    os.kill(run.pid, signal.SIGSTOP)
    time.sleep(PAUSE)  # the fault itself: the supervisor stays stopped this long
    os.kill(run.pid, signal.SIGCONT)
    assert run.wait() == 0, run.output
    events = team.events()
    assert by_event(events, "worker_hung") == []
    assert by_event(events, "worker_restarted") == []
    for name in team.names:
        team.assert_exactly_once(name, 12)


@contextmanager
def flooding_team(team) -> Iterator[subprocess.Popen[str]]:
    """The team run by a supervisor process whose workers flood; killed on the way out if a test failed."""
    env = {**os.environ, "PYTHONPATH": f"{HERE}:{HERE.parent}"}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "run_entry.py"), str(team.config), "wire_faults:flood"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:  # a supervisor left decoding floods would spin on a core for good
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("agents", [2, 16])
def test_a_flooding_worker_is_stopped_as_broken_and_memory_stays_flat(make_team, agents):
    """16 at once hold the loop: each is read at only ~8000 messages a second, and is caught by its backlog."""
    import psutil

    team = make_team(agents=agents, max_cycles=2, restart="temporary")
    with flooding_team(team) as proc:
        supervisor, peak = psutil.Process(proc.pid), 0
        deadline = time.monotonic() + HANG
        while proc.poll() is None and time.monotonic() < deadline:  # the supervisor's own resident memory, sampled
            try:
                peak = max(peak, supervisor.memory_info().rss)
            except psutil.Error:
                break
            time.sleep(0.01)
        _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 3, err
    errors = by_event(team.events(), "protocol_error")
    assert sorted(e["agent_id"] for e in errors) == team.names
    assert all("flooding" in e["error"] for e in errors), errors
    assert "Traceback" not in err
    assert peak < 200 * 2**20, f"the supervisor reached {peak / 2**20:.0f} MiB"


def test_ctrl_c_is_served_while_workers_flood(make_team):
    team = make_team(agents=2, max_cycles=2, restart="permanent", graceful_timeout=2, immediate_timeout=1)
    team.data["max_restarts"] = 1000
    team.write()
    with flooding_team(team) as proc:
        deadline = time.monotonic() + HANG
        while not (team.storage / "events.jsonl").exists() or not by_event(team.events(), "protocol_error"):
            assert proc.poll() is None and time.monotonic() < deadline, "no flooding worker was ever caught"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGINT)
        proc.communicate(timeout=HANG)
    initiated = [e for e in by_event(team.events(), "interrupt_initiated") if e.get("agent_id") == team.team]
    assert [(e["source"], e["mode"]) for e in initiated][:1] == [("USER", "GRACEFUL")]
    pids = [e["pid"] for e in by_event(team.events(), "worker_exited")]
    assert gone(pids)


def ignored_signals(pid: int) -> set[int]:
    mask = next(int(line.split()[1], 16) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("SigIgn:"))
    return {n for n in range(1, 65) if mask & (1 << (n - 1))}


def forkserver_of(supervisor_pid: int):
    import psutil

    servers = [p for p in psutil.Process(supervisor_pid).children() if "forkserver" in " ".join(p.cmdline())]
    assert len(servers) == 1, servers
    return servers[0]


def test_a_dying_forkserver_is_replaced_and_its_workers_restart_through_the_new_one(make_team):
    """Killed twice while the team runs: each time its workers die with it and restart by policy."""
    team = make_team(agents=3, latency=0.1, max_cycles=12)
    run = team.start()
    run.wait_all_started()
    killed = []
    for round_ in (1, 2):
        run.wait_cycles(3 * round_ + 1)
        server = forkserver_of(run.pid)
        server.kill()
        killed.append(server.pid)
        run.wait_for(lambda ev, n=round_: len(by_event(ev, "worker_restarted")) >= 3 * n, f"restart round {round_}")
    server = forkserver_of(run.pid)  # the third: the terminal's signals are as ignored in it as in the first
    assert ignored_signals(server.pid) >= {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    assert run.wait() == 0, run.output
    for name in team.names:
        team.assert_exactly_once(name, 12)
    events = team.events()
    assert by_event(events, "restart_limit_reached") == []
    assert {e["agent_id"] for e in by_event(events, "worker_restarted")} == set(team.names)
    assert gone(killed + [e["pid"] for e in by_event(events, "worker_exited")])


def test_workers_lost_with_a_killed_forkserver_restart_without_spending_their_restart_budget(make_team):
    """With max_restarts 0 a single crash ends an agent; losing the forkserver is not the agent's crash."""
    team = make_team(agents=3, latency=0.1, max_cycles=8)
    team.data["max_restarts"] = 0
    team.write()
    run = team.start()
    run.wait_all_started()
    run.wait_cycles(4)
    server = forkserver_of(run.pid)
    os.kill(server.pid, signal.SIGKILL)
    run.wait_for(lambda ev: len(by_event(ev, "worker_restarted")) >= 3, "the restarts through a new forkserver")
    assert run.wait() == 0, run.output
    events = team.events()
    died = by_event(events, "forkserver_died")
    assert [(e["pid"], e["reason"]) for e in died] == [(server.pid, "killed by SIGKILL")]
    assert by_event(events, "restart_limit_reached") == []
    for name in team.names:
        team.assert_exactly_once(name, 8)


EMFILE_SCRIPT = """
import resource, sys
import supervisor.runtime.descriptors as descriptors
from supervisor.cli import main

# The supervisor checks its room before it starts: to run out of descriptors later, this run pretends
# a team needs none, under a hard limit that holds only a few workers (the real count is 3 each).
descriptors.needed = lambda processes: 0
resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))
sys.exit(main([sys.argv[1], "--plain"]))
"""


def test_running_out_of_descriptors_stops_the_team_in_one_line_without_a_restart_storm(make_team):
    team = make_team(agents=16, latency=0.05, max_cycles=3)
    done = subprocess.run([sys.executable, "-c", EMFILE_SCRIPT, str(team.config)], capture_output=True, text=True,
                          timeout=HANG, cwd=team.root, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 3, done.stdout + done.stderr
    events = team.events()
    errors = by_event(events, "worker_error")
    assert len(errors) == 1 and errors[0]["kind"] == "resource" and "EMFILE" in errors[0]["message"]
    assert by_event(events, "worker_restarted") == []
    assert 0 < len(by_event(events, "worker_started")) < 16
    said = [line for line in done.stdout.splitlines() if "EMFILE" in line]
    assert len(said) == 1 and "ulimit -n" in said[0] and "Traceback" not in done.stdout + done.stderr
    started = {e["agent_id"] for e in by_event(events, "worker_started")}
    rows = closing_statuses(done.stdout, team.names)
    assert [rows[name] for name in team.names if name not in started] == ["failed"] + ["not started"] * (15 - len(started))
