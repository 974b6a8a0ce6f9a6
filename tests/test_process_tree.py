"""A worker's own children (tools, shells) die with it, even those that left its group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import HANG, by_event, wait_gone

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("entry,how", [("tools_then_crash", "crashed"), ("tools_then_hang", "killed as hung")])
def test_a_workers_tools_die_with_it(make_team, tmp_path, entry, how):
    team = make_team(agents=1, max_cycles=1, restart="temporary")
    team.data["hang_timeout"] = 2
    team.write()
    tools_file = tmp_path / "tools.json"
    env = {**os.environ, "PYTHONPATH": f"{HERE}:{HERE.parent}", "TOOLS_FILE": str(tools_file)}
    result = subprocess.run(
        [sys.executable, str(HERE / "run_entry.py"), str(team.config), f"wire_faults:{entry}"],
        env=env, capture_output=True, text=True, timeout=HANG,
    )
    assert result.returncode == 3, result.stderr
    noted = json.loads(tools_file.read_text())
    # One tool stayed in the worker's process group, one escaped it with setsid: both are gone.
    wait_gone(noted["tools"], 2)
    exited = by_event(team.events(), "worker_exited")[0]
    assert exited["status"] == "failed" and exited["pid"] == noted["worker"]
    assert "Traceback" not in result.stderr
