"""A big team under a low open-files limit: the supervisor makes room, or says in one line how to."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from typing import Callable

import pytest

from harness import HANG, REPO, by_event
from supervisor.runtime.descriptors import needed


def limited(soft: int, hard: int) -> Callable[[], None]:
    """preexec_fn: the child starts under this RLIMIT_NOFILE, as under `ulimit -n` in a shell."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def run_limited(team, soft: int, hard: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supervisor", str(team.config)], preexec_fn=limited(soft, hard),
                          capture_output=True, text=True, timeout=HANG, cwd=team.root,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.e2e
def test_a_low_soft_limit_is_raised_and_the_whole_team_runs(make_team):
    """16 workers need more than 48 descriptors: without the raise the 11th start fails with EMFILE."""
    team = make_team(agents=16, max_cycles=1, latency=0.01)
    done = run_limited(team, 48, 4096)
    assert done.returncode == 0, done.stderr
    events = team.events()
    assert len(by_event(events, "worker_started")) == 16
    started = by_event(events, "supervisor_started")[0]
    assert started["open_files_limit_was"] == 48 and started["open_files_limit"] >= needed(16)
    assert by_event(events, "worker_error") == []


@pytest.mark.e2e
def test_a_team_beyond_the_hard_limit_is_refused_in_one_line_before_any_worker_starts(make_team):
    team = make_team(agents=26, max_cycles=1, latency=0.01)  # needs 142 descriptors
    done = run_limited(team, 100, 100)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"ulimit -n {needed(26)}" in lines[0] and "Traceback" not in done.stderr
    assert by_event(team.events(), "worker_started") == []
