"""A worker's own children (tools, shells) die with it, even those that left its group."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest

from harness import HANG, by_event, wait_gone
from run_entry import start_entry


@pytest.mark.parametrize("entry,how", [("tools_then_crash", "crashed"), ("tools_then_hang", "killed as hung")])
def test_a_workers_tools_die_with_it(make_team, tmp_path, entry, how):
    team = make_team(agents=1, max_cycles=1, restart="temporary")
    team.data["hang_timeout"] = 2
    team.write()
    tools_file = tmp_path / "tools.json"
    proc = start_entry(team.config, f"wire_faults:{entry}", {"TOOLS_FILE": str(tools_file)},
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = proc.communicate(timeout=HANG)
    finally:
        proc.kill()
    assert proc.returncode == 3, stderr
    noted = json.loads(tools_file.read_text())
    # One tool stayed in the worker's process group, one escaped it with setsid: both are gone.
    wait_gone(noted["tools"], 2)
    exited = by_event(team.events(), "worker_exited")[0]
    assert exited["status"] == "failed" and exited["pid"] == noted["worker"]
    assert "Traceback" not in stderr


def test_an_immediate_stop_leaves_no_tool_behind(make_team, tmp_path):
    """The orphans of workers killed in an immediate stop are found by the scan as the run ends."""
    import signal
    import time

    team = make_team(agents=1, max_cycles=1, immediate_timeout=1)
    team.write()
    tools_file = tmp_path / "tools.json"
    proc = start_entry(team.config, "wire_faults:tools_then_quit_when_immediate", {"TOOLS_FILE": str(tools_file)},
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + HANG
        while not by_event(team.events(), "worker_started") and time.monotonic() < deadline:
            time.sleep(0.01)
        noted = json.loads(tools_file.read_text())
        proc.send_signal(signal.SIGINT)
        while not by_event(team.events(), "interrupt_initiated") and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)  # immediate: the worker exits at once, its tools left running
        _, stderr = proc.communicate(timeout=HANG)
    finally:
        proc.kill()
    assert proc.returncode == 3, stderr  # it left without its last word: a failed agent
    assert by_event(team.events(), "worker_exited")[0]["exitcode"] == 1
    wait_gone(noted["tools"], 2)  # the one that escaped the worker's group too


def test_adopted_orphans_are_reaped_while_the_supervisor_runs(make_team, tmp_path):
    """No zombie piles up under the supervisor, as none would under a good PID 1.

    The worker crashes three times, leaving two tools each time, then runs quietly: after its last
    crash nothing exits any more, so no later scan of /proc can tidy up what SIGCHLD did not reap.
    """
    import signal
    import time

    team = make_team(agents=1, max_cycles=1)
    team.data["max_restarts"] = 50  # it keeps crashing, leaving orphans each time; the supervisor lives on
    team.write()
    tools_file = tmp_path / "tools.json"
    env = {"TOOLS_FILE": str(tools_file), "CRASHES_FILE": str(tmp_path / "crashes")}
    proc = start_entry(team.config, "wire_faults:tools_then_crash_three_times", env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + HANG
        while len(by_event(team.events(), "worker_started")) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(by_event(team.events(), "worker_exited")) == 3
        last_tools = json.loads(tools_file.read_text())["tools"]  # the third crash's: one in its group, one not

        def reaped(pids: list[int]) -> bool:
            return not any(psutil.pid_exists(pid) for pid in pids)  # a zombie still has its pid

        settle = time.monotonic() + 2
        while not reaped(last_tools) and time.monotonic() < settle:
            time.sleep(0.01)
        assert reaped(last_tools)
        zombies = [c.pid for c in psutil.Process(proc.pid).children() if _status(c) == psutil.STATUS_ZOMBIE]
        assert zombies == []  # nor any of the earlier crashes' tools
        proc.send_signal(signal.SIGINT)
        assert proc.wait(HANG) in (0, 3)
    finally:
        proc.kill()
        proc.wait()


def _status(process: psutil.Process) -> str:
    try:
        return process.status()
    except psutil.NoSuchProcess:  # reaped between the listing and the look
        return "gone"


ORPHAN_SCRIPT = """
import json, os, time
from supervisor.runtime.reaper import Reaper, become_subreaper

assert become_subreaper()
reaper = Reaper()


def orphan():
    # An orphan we adopt, and the pipe whose closing makes it exit.
    up_r, up_w = os.pipe()
    down_r, down_w = os.pipe()
    child = os.fork()
    if child == 0:
        if os.fork() == 0:  # the grandchild: orphaned when its parent exits, adopted by us
            os.close(down_w)
            os.write(up_w, str(os.getpid()).encode())
            os.read(down_r, 1)
            os._exit(0)
        os._exit(0)
    os.close(up_w)
    os.close(down_r)
    pid = int(os.read(up_r, 20))
    os.waitpid(child, 0)
    return pid, down_w


def gone(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
        return False
    except ChildProcessError:
        return True


seen = {}
quitter, release = orphan()  # exits by itself: SIGCHLD's work, no scan
os.close(release)
reaped, deadline = [], time.monotonic() + 10
while quitter not in reaped and time.monotonic() < deadline:
    reaped += reaper.reap_dead()
    time.sleep(0.005)
seen.update(quitter=quitter, reaped=reaped, scans_after_quitter=reaper.scans, quitter_gone=gone(quitter))
assert reaper.sweep_if_due() == []  # no worker exited: no scan is due
lingerer, _ = orphan()  # would live on: a scan finds it and kills it
reaper.sweep_soon()
seen.update(lingerer=lingerer, killed=reaper.sweep_if_due(), scans=reaper.scans)
deadline = time.monotonic() + 10
while not gone(lingerer) and time.monotonic() < deadline:
    reaper.reap_dead()
    time.sleep(0.005)
seen.update(lingerer_gone=gone(lingerer))
print(json.dumps(seen))
"""


@pytest.mark.e2e
def test_adopted_orphans_are_reaped_on_their_exit_without_a_scan_and_killed_by_one():
    from harness import REPO

    done = subprocess.run([sys.executable, "-c", ORPHAN_SCRIPT], capture_output=True, text=True, timeout=HANG,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["reaped"] == [seen["quitter"]] and seen["quitter_gone"] and seen["scans_after_quitter"] == 0
    assert seen["killed"] == [seen["lingerer"]] and seen["scans"] == 1 and seen["lingerer_gone"]


def test_a_stop_of_many_workers_scans_the_machine_per_interval_not_per_exit(make_team, tmp_path):
    """Reading every process's parent costs more the busier the machine is: a stop of N must not do it N times."""
    import signal

    from harness import Team, by_event
    from supervisor.vocabulary import parse_timestamp
    from supervisor.runtime.reaper import MIN_SWEEP_INTERVAL

    workers = 24
    team: Team = make_team(agents=workers, latency=30, max_cycles=100)
    scans_file = tmp_path / "scans"
    proc = start_entry(team.config, "workers.entry:run_worker", {"SCANS_FILE": str(scans_file)},
                       stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: len(by_event(team.events(), "worker_started")) >= workers, proc)
        proc.send_signal(signal.SIGINT)
        _wait(lambda: any(e.get("agent_id") == team.team for e in by_event(team.events(), "interrupt_initiated")), proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(HANG) == 1
    finally:
        proc.kill()
        proc.wait()
    exits = [parse_timestamp(e["timestamp"]).timestamp() for e in by_event(team.events(), "worker_exited")]
    assert len(exits) == workers
    span = max(exits) - min(exits)
    scans = int(scans_file.read_text())
    # one scan as the first worker goes, then at most one per interval, then the last one before the end
    assert scans <= 2 + span / MIN_SWEEP_INTERVAL, (scans, span)
    assert scans < workers


def _wait(condition, proc) -> None:
    import time

    deadline = time.monotonic() + HANG
    while not condition():
        assert proc.poll() is None, f"the run exited with {proc.returncode}"
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_the_loop_runs_with_what_was_loaded_before_it_frozen_out_of_the_cyclic_gc(make_team, tmp_path):
    """A full collection of the supervisor's startup objects took ~35 ms, and fell in a stop's last frame."""
    team = make_team(agents=1, latency=0.01, max_cycles=2)
    frozen_file = tmp_path / "frozen"
    proc = start_entry(team.config, "workers.entry:run_worker", {"FROZEN_FILE": str(frozen_file)},
                       stderr=subprocess.DEVNULL)
    assert proc.wait(HANG) == 0
    assert int(frozen_file.read_text()) > 10_000  # from the loop's first turn on: the imports, the config, the log


def test_workers_run_as_batch_tasks_and_supervisors_do_not(make_team):
    """A woken worker must never preempt a supervisor (the root, or a group's) in the middle of a fan-out."""
    import signal

    team = make_team(agents=1, latency=30.0, max_cycles=2, groups={"crew": {"agents": 1}})
    run = team.start()
    try:
        pids = run.wait_all_started()
        group = by_event(run.new_events(), "group_started", "crew")[0]["pid"]
        assert {name: os.sched_getscheduler(pid) for name, pid in pids.items()} == {
            name: os.SCHED_BATCH for name in pids}
        assert os.sched_getscheduler(run.pid) == os.sched_getscheduler(group) == os.SCHED_OTHER
        run.signal(signal.SIGINT)
        run.wait_for(lambda ev: by_event(ev, "interrupt_initiated"), "the graceful stop")
        run.signal(signal.SIGINT)
        assert run.wait() == 1, run.output
    finally:
        run.kill()


def test_the_reaper_lists_its_children_from_every_threads_list_as_a_scan_of_proc_would(monkeypatch):
    """The kernel's per-thread lists name the same children as reading every process's parent, for a fraction of it.

    A child started by a thread that still runs is on that thread's list only; one started by a
    thread that has ended moved to another's.
    """
    import threading

    from supervisor.runtime import reaper

    started: list[subprocess.Popen[bytes]] = [subprocess.Popen(["sleep", "30"])]
    hold, ready = threading.Event(), threading.Event()

    def start_one(then_wait: bool) -> None:
        started.append(subprocess.Popen(["sleep", "30"]))
        if then_wait:
            ready.set()
            hold.wait(30)

    ended = threading.Thread(target=start_one, args=(False,))
    ended.start()
    ended.join()
    running = threading.Thread(target=start_one, args=(True,))
    running.start()
    try:
        assert ready.wait(30)
        mine = {p.pid for p in started}
        listed = reaper.own_children()
        assert mine <= set(listed) and len(listed) == len(set(listed))
        assert sorted(listed) == sorted(reaper.children_of(os.getpid(), reaper.parents()))
        monkeypatch.setattr(reaper.os.path, "exists", lambda path: False)  # a kernel without the lists: the scan
        assert sorted(reaper.own_children()) == sorted(listed)
    finally:
        hold.set()
        running.join()
        for process in started:
            process.kill()
            process.wait()
