"""Run a team whose workers start at a test-double entry point (see wire_faults.py).

`run_with_entry` runs it in this process, as the CLI's run would, and returns
the exit code and what the console said. Some duties of the supervisor
(becoming the child subreaper, reaping orphans) belong to a process of its
own, not to pytest's: `start_entry` starts this file as a script for those,

    python tests/run_entry.py CONFIG ENTRY     (exit code = the run's)
"""

from __future__ import annotations

import gc
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor.cli import exit_now
from supervisor.config import load_config
from supervisor.runtime.arbiter import Arbiter
from supervisor.runtime.events import EventLog
from supervisor.runtime.process import worker_context
from supervisor.runtime.run import run_team
from supervisor.storage import prepare_storage
from supervisor.terminal.console import Console

if TYPE_CHECKING:
    from harness import Team

HERE = Path(__file__).resolve().parent


def run_with_entry(team: Team, entry: str) -> tuple[int, str]:
    """Run `team` to its end in this process, every worker starting at `entry` ("module:function")."""
    config = load_config(team.config)
    prepare_storage(config.storage)
    said = io.StringIO()
    console = Console(said)
    log = EventLog(config.storage, sinks=[console])
    try:
        arbiter = Arbiter(config, log, {}, entry=entry)
        arbiter.announce()
        outcome = arbiter.run()
        console.finish(outcome, str(config.storage), str(config.source))
    finally:
        log.close()
    return outcome.exit_code, said.getvalue()


def start_entry(config: Path, entry: str, env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen[Any]:
    """Start this file as a script on `config`, with tests/ and the repository on its path (wire_faults, agents)."""
    path = {"PYTHONPATH": f"{HERE}:{HERE.parent}"}
    return subprocess.Popen([sys.executable, str(HERE / "run_entry.py"), str(config), entry],
                            env={**os.environ, **path, **(env or {})}, **popen)


if __name__ == "__main__":
    worker_context()
    console = Console(sys.stderr)
    config = load_config(sys.argv[1])
    seen: list[Arbiter] = []
    frozen: list[int] = []  # objects the cyclic GC no longer walks, at each turn of the loop

    def on_arbiter(arbiter: Arbiter) -> None:
        seen.append(arbiter)
        arbiter.reactor.after_each_tick(lambda: frozen.append(gc.get_freeze_count()))

    outcome = run_team(config, entry=sys.argv[2], own_process=True, sinks=[console], on_arbiter=on_arbiter)
    console.finish(outcome, str(config.storage), str(config.source))
    scans_file = os.environ.get("SCANS_FILE")  # how often the reaper looked for live orphans
    if scans_file and seen and seen[0].reaper is not None:
        Path(scans_file).write_text(str(seen[0].reaper.scans))
    if os.environ.get("FROZEN_FILE"):  # the fewest frozen objects the loop ever ran with
        Path(os.environ["FROZEN_FILE"]).write_text(str(min(frozen, default=0)))
    exit_now(outcome.exit_code)  # as the CLI ends a run: own_process=True promised the process ends next
