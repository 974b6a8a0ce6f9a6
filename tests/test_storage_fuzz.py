"""Fuzzed files in storage: whatever a checkpoint or an event log holds, the readers skip it or use it, safely.

The 520 cases come from `storage_fuzz` (seeded: every run checks the same
ones). They run in a child process under a 1 GiB memory limit and a per-case
alarm, so a case that hangs or explodes fails this test, not the test run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


@pytest.mark.e2e  # a child process, measured
def test_every_fuzzed_checkpoint_and_event_log_is_used_or_skipped_safely(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    child = subprocess.run([sys.executable, "-m", "storage_fuzz", str(tmp_path)], cwd=TESTS, env=env,
                           capture_output=True, text=True, timeout=600, check=False)
    assert child.returncode == 0, child.stderr[-3000:]
    summary = json.loads(child.stdout)
    assert summary["failures"] == [], "\n".join(summary["failures"][:20])
    assert summary["cases"] >= 500
    # Both outcomes are exercised: refused checkpoints (each with the fallback checked) and ones that still load.
    outcomes = summary["outcomes"]
    assert outcomes["refused"] >= 200 and outcomes["loaded"] >= 10 and outcomes["read"] == 200, outcomes
