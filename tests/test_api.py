"""The Python API (supervisor.api.TeamRunner), driven from this test process.

Real worker processes and real checkpoints, as with the CLI; the run happens
in a background thread of the test (or in its main thread, for `run()`), and
the tests synchronise on the events the run reports through `on_event`.
"""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from harness import HANG, REPO, by_event
from supervisor.api import TeamRunner


class Events:
    """Collects a run's events, and lets a test wait for one."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self._arrived: queue.Queue[dict[str, Any]] = queue.Queue()

    def __call__(self, event: dict[str, Any]) -> None:
        self.seen.append(event)
        self._arrived.put(event)

    def wait_for(self, name: str, agent: str | None = None, count: int = 1) -> None:
        while len(by_event(self.seen, name, agent)) < count:
            self._arrived.get(timeout=HANG)


def _config(tmp_path: Path, cycles: int = 200, latency: float = 0.02) -> dict[str, Any]:
    return {
        "team": "api-team",
        "storage": "state",
        "llm": {"provider": "scripted", "latency": latency},
        "agents": [{"name": n, "task": f"Count, as {n}.", "max_cycles": cycles} for n in ("alpha", "beta", "gamma")],
    }


@pytest.mark.e2e
def test_interrupt_one_agent_from_another_thread_the_others_finish(tmp_path: Path) -> None:
    events = Events()
    runner = TeamRunner(_config(tmp_path, cycles=30), base_dir=tmp_path, quiet=True, on_event=events)
    assert {row["status"] for row in runner.status()["agents"]} == {"not started"}
    runner.start()
    events.wait_for("cycle_completed", "beta", 2)
    assert runner.status()["running"] and runner.status()["stopping"] is None
    threading.Thread(target=runner.interrupt, args=("beta",), kwargs={"message": "beta has said enough"}).start()
    assert runner.wait(HANG) == 0
    rows = {row["agent"]: row for row in runner.status()["agents"]}
    assert rows["beta"]["status"] == "interrupted" and rows["beta"]["cycle"] < 30
    assert rows["alpha"]["status"] == rows["gamma"]["status"] == "completed"
    [issued] = [e for e in by_event(events.seen, "interrupt_initiated") if "workers" in e]
    assert (issued["source"], issued["mode"], issued["agents"]) == ("PROGRAMMATIC", "GRACEFUL", ["beta"])
    assert issued["message"] == "beta has said enough"
    assert by_event(events.seen, "interrupt_completed", "beta")
    assert runner.status()["exit_code"] == 0 and not runner.status()["running"]


@pytest.mark.e2e
def test_a_team_wide_graceful_then_immediate_stop(tmp_path: Path) -> None:
    events = Events()
    runner = TeamRunner(_config(tmp_path, latency=0.5), base_dir=tmp_path, quiet=True, on_event=events).start()
    events.wait_for("worker_started", count=3)
    runner.interrupt(message="wrap it up")
    events.wait_for("interrupt_initiated", count=4)  # the team's line and each agent's ack
    assert runner.status()["stopping"] == "GRACEFUL"
    runner.interrupt(mode="IMMEDIATE", message="now")
    assert runner.wait(HANG) == 1  # in-flight calls were cancelled: an immediate stop
    modes = [(e["mode"], e["source"]) for e in by_event(events.seen, "interrupt_initiated") if "workers" in e]
    assert modes == [("GRACEFUL", "PROGRAMMATIC"), ("IMMEDIATE", "PROGRAMMATIC")]
    assert by_event(events.seen, "supervisor_stopped")[-1]["exit_code"] == 1


@pytest.mark.e2e
def test_run_in_the_main_thread_from_a_file_with_a_failing_callback(tmp_path: Path, capsys) -> None:
    (tmp_path / "team.yaml").write_text(
        "team: filed\nstorage: state\nllm: {provider: scripted, latency: 0.0}\n"
        "agents:\n  - {name: solo, task: Count., max_cycles: 3}\n"
    )

    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("callback bug")

    assert TeamRunner(tmp_path / "team.yaml", quiet=True, on_event=broken).run() == 0
    assert "on_event callback failed: RuntimeError: callback bug" in capsys.readouterr().err
    again = TeamRunner(tmp_path / "team.yaml", quiet=True)
    assert again.run() == 0  # resumed: nothing left to do
    assert again.status()["agents"][0] | {"checkpoint_id": None} == {
        "agent": "solo", "status": "completed", "cycle": 3, "max_cycles": 3, "checkpoint_id": None,
        "budget_spent_usd": 0.0,
    }


def test_mistakes_are_plain_errors(tmp_path: Path) -> None:
    runner = TeamRunner(_config(tmp_path), base_dir=tmp_path, quiet=True)
    with pytest.raises(ValueError, match="no agent 'delta' in team 'api-team'"):
        runner.interrupt("delta")
    with pytest.raises(ValueError, match="mode must be one of GRACEFUL, IMMEDIATE"):
        runner.interrupt(mode="SOFT")
    from supervisor.config import ConfigError

    with pytest.raises(ConfigError, match=r"agents\[0\].max_cycles"):
        TeamRunner({**_config(tmp_path), "agents": [{"name": "x", "task": "t", "max_cycles": 0}]}, base_dir=tmp_path)


def _docs_example() -> str:
    text = (REPO / "docs" / "python-api.md").read_text()
    match = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert match, "docs/python-api.md has a python example"
    return match.group(1)


@pytest.mark.e2e
def test_the_documented_example_runs_as_shown(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "team-scripted.yaml").write_text((REPO / "configs" / "team-scripted.yaml").read_text())
    script = tmp_path / "example.py"
    script.write_text(_docs_example())
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=HANG,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "exit code 0" in done.stdout
