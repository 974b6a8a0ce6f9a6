"""The tools' memory stays flat whatever events.jsonl holds: measured in a real child process.

Each command runs in its own interpreter, which reports its peak resident set
when the command returns. That is VmHWM from /proc/self/status, the peak of
the child's own memory since exec: getrusage's ru_maxrss would not do, as
Linux carries the parent's peak into it across fork and exec, and the test
process itself has just built a big file. The bound is relative: the same
command on a small file gives what the interpreter and its imports take, and a
big file may add only a few megabytes to that.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness import REPO
from tools_state import EVENTS, write_team

MEASURE = """\
import sys
from supervisor.cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
with open("/proc/self/status") as status:
    print(next(line.split()[1] for line in status if line.startswith("VmHWM:")), file=sys.stderr)  # in KiB
sys.exit(code)
"""
HEADROOM_KIB = 32 * 1024  # what a big file may add to the small file's peak


def measure(argv: list[str], out: Path) -> tuple[int, str]:
    """Run `python -m supervisor ARGV` with stdout into `out`: (peak RSS in KiB, stderr without that last line)."""
    with open(out, "w") as stdout:
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, *argv], stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    *err, peak = done.stderr.splitlines()
    assert done.returncode == 0, done.stderr
    return int(peak), "\n".join(err)


def test_a_64_mib_line_is_never_held(tmp_path: Path) -> None:
    team = write_team(tmp_path)
    events = team["storage"] / "events.jsonl"
    events.write_text("\n".join(EVENTS) + "\n")
    small, _ = measure(["logs", team["config"], "--json"], tmp_path / "small.json")

    line = '{"event": "cycle_completed", "agent_id": "counter-a", "reply": "' + "x" * (64 << 20) + '"}'
    events.write_text("\n".join(EVENTS[:3] + [line] + EVENTS[3:]) + "\n" + line)  # once inside, once as a torn tail
    del line
    big, err = measure(["logs", team["config"], "--json"], tmp_path / "big.json")
    assert err.count("longer than 1 MiB, skipped") == 2
    assert big < small + HEADROOM_KIB, f"peak {big} KiB against {small} KiB for the small file"
