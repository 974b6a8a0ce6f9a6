"""Fuzzed configs: whatever the file holds, loading it returns a sendable config or one line.

The cases come from `config_fuzz` (seeded, so every run checks the same
ones); they run in a child process under a memory limit and a per-case alarm,
so a case that hangs or blows up fails this test rather than the test run.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import config_fuzz

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
RUN_TIMEOUT = 300  # a hang detector for the whole child: far above its real time of seconds


@pytest.mark.e2e  # the 520 cases run in a child process, with a memory limit
def test_every_fuzzed_config_loads_sendable_or_fails_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.run(
        [sys.executable, "-m", "config_fuzz", str(tmp_path)],
        cwd=TESTS, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    summary = json.loads(child.stdout)
    assert summary["failures"] == [], "\n".join(summary["failures"])
    assert summary["cases"] >= 500 and summary["broken"] == 0
    # Both outcomes are exercised: a fuzzer whose cases all fail in the YAML parser proves little.
    assert summary["loaded"] >= 50 and summary["refused"] >= 250, summary


def _fingerprints(seed: int, folder: Path, count: int = 120) -> list[tuple[str, str]]:
    """(case id, hash of what it writes) for the file cases among the first `count`."""
    prints = []
    for number, (case_id, make) in enumerate(config_fuzz.cases(seed, count)):
        if case_id.endswith(("-text", "-size")):
            case_folder = folder / str(number)
            case_folder.mkdir(parents=True)
            path = make(case_folder)
            prints.append((case_id, hashlib.sha256(path.read_bytes()).hexdigest()))
    return prints


def test_the_cases_are_the_same_for_the_same_seed(tmp_path: Path) -> None:
    first = _fingerprints(config_fuzz.SEED, tmp_path / "one", count=25)
    again = _fingerprints(config_fuzz.SEED, tmp_path / "two", count=25)
    other = _fingerprints(config_fuzz.SEED + 1, tmp_path / "three", count=25)
    assert first == again and len(first) > 15
    assert first != other
