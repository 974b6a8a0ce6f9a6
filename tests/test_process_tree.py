"""A worker's own children (tools, shells) die with it, even those that left its group."""

from __future__ import annotations

import json
import subprocess

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


def test_adopted_orphans_are_reaped_while_the_supervisor_runs(make_team, tmp_path):
    """No zombie piles up under the supervisor, as none would under a good PID 1."""
    import signal
    import time

    import psutil

    team = make_team(agents=1, max_cycles=1)
    team.data["max_restarts"] = 50  # it keeps crashing, leaving orphans each time; the supervisor lives on
    team.write()
    tools_file = tmp_path / "tools.json"
    proc = start_entry(team.config, "wire_faults:tools_then_crash", {"TOOLS_FILE": str(tools_file)}, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + HANG
        while len(by_event(team.events(), "worker_exited")) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(by_event(team.events(), "worker_exited")) >= 3
        supervisor = psutil.Process(proc.pid)

        def zombies() -> list[int]:
            found = []
            for child in supervisor.children():
                try:
                    if child.status() == psutil.STATUS_ZOMBIE:
                        found.append(child.pid)
                except psutil.NoSuchProcess:  # reaped between the listing and the look: not a zombie
                    pass
            return found

        # Three crashed workers left six tools behind, all adopted; none may linger as a zombie.
        settle = time.monotonic() + 2
        while zombies() and time.monotonic() < settle:
            time.sleep(0.01)
        assert zombies() == []
        proc.send_signal(signal.SIGINT)
        assert proc.wait(HANG) in (0, 3)
    finally:
        proc.kill()
        proc.wait()
