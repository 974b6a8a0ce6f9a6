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

import json
from pathlib import Path

import pytest

from harness import cli_peak
from tools_state import EVENTS, write_team

HEADROOM_KIB = 32 * 1024  # what a big file may add to the small file's peak
RUNS, LINES_PER_RUN = 200, 500  # 100,000 lines, 22 MB: kept whole, they took ten times the headroom


def measure(argv: list[str], out: Path) -> tuple[int, str]:
    """Run `python -m supervisor ARGV` with stdout into `out`: (peak RSS in KiB, stderr)."""
    code, _, err, peak = cli_peak(*argv, cwd=out.parent, stdout=out)
    assert code == 0, err
    return peak, err


@pytest.mark.e2e  # a child process, measured
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


def write_history(path: Path) -> int:
    """RUNS runs of LINES_PER_RUN lines: a start, two agents' cycles, an interrupt, a stop. Returns the line count."""
    lines = 0
    with open(path, "w") as out:
        for run in range(1, RUNS + 1):
            hour = f"2026-11-24T{run // 60:02d}:{run % 60:02d}"
            out.write(f'{{"timestamp": "{hour}:00.000Z", "level": "info", "event": "supervisor_started", '
                      f'"agent_id": "demo", "team": "demo", "pid": {run}, "resumed": []}}\n')
            for k in range(1, LINES_PER_RUN - 2):
                out.write(f'{{"timestamp": "{hour}:{k // 20:02d}.{k % 20 * 50:03d}Z", "level": "info", '
                          f'"event": "cycle_completed", "agent_id": "counter-{"ab"[k % 2]}", "cycle": {k}, '
                          f'"duration_ms": 40.5, "cost_usd": 0.001, "reply": "cycle {k}: one two three four five six"}}\n')
            out.write(f'{{"timestamp": "{hour}:30.000Z", "level": "info", "event": "interrupt_initiated", '
                      f'"agent_id": "demo", "source": "USER", "mode": "GRACEFUL", "message": "Ctrl+C", "interrupt_id": 1}}\n')
            out.write(f'{{"timestamp": "{hour}:31.000Z", "level": "info", "event": "supervisor_stopped", '
                      f'"agent_id": "demo", "status": "interrupted", "exit_code": 0}}\n')
            lines += LINES_PER_RUN
    return lines


def split_into_rotated_files(events: Path, parts: int) -> None:
    """What rotation leaves: the same lines in `events.jsonl.N` ... `.1` and `events.jsonl`, cut between lines."""
    lines = events.read_bytes().splitlines(keepends=True)
    step = -(-len(lines) // parts)
    chunks = [lines[i:i + step] for i in range(0, len(lines), step)]
    for number, chunk in zip(range(len(chunks) - 1, -1, -1), chunks):
        (events.parent / (f"events.jsonl.{number}" if number else "events.jsonl")).write_bytes(b"".join(chunk))


@pytest.mark.e2e  # a child process, measured
@pytest.mark.parametrize("rotated", [1, 7], ids=["one-file", "rotated-files"])
def test_a_long_history_costs_no_memory(tmp_path: Path, rotated: int) -> None:
    """`logs --json` streams its document; `status` keeps a row's worth; `report` draws the latest run, one line for each earlier one.

    The same history split into rotated files reads the same, in the same memory.
    """
    team = write_team(tmp_path)
    config, events = team["config"], team["storage"] / "events.jsonl"
    small = {
        "logs": measure(["logs", config, "--json"], tmp_path / "small.json")[0],
        "status": measure(["status", config, "--json"], tmp_path / "small.status")[0],
        "report": measure(["report", config, "-o", str(tmp_path / "small.html")], tmp_path / "small.out")[0],
    }
    lines = write_history(events)
    if rotated > 1:
        split_into_rotated_files(events, rotated)
        assert len(list(events.parent.glob("events.jsonl*"))) == rotated
    big = {
        "logs": measure(["logs", config, "--json"], tmp_path / "big.json")[0],
        "status": measure(["status", config, "--json"], tmp_path / "big.status")[0],
        "report": measure(["report", config, "-o", str(tmp_path / "big.html")], tmp_path / "big.out")[0],
    }
    for command, peak in big.items():
        assert peak < small[command] + HEADROOM_KIB, f"{command}: peak {peak} KiB against {small[command]} KiB"
    assert json.loads((tmp_path / "big.status").read_text())[0]["last_interrupt"] is None  # the team's, not an agent's

    document = json.loads((tmp_path / "big.json").read_text())
    assert len(document["events"]) == lines and document["summary"]["runs"] == RUNS
    html = (tmp_path / "big.html").read_text()
    assert f"run {RUNS} of {RUNS}" in html and f"<h2>Earlier runs ({RUNS - 1})</h2>" in html
    assert html.count('class="cycle"') == LINES_PER_RUN - 3  # the latest run's cycles, drawn
    assert len(html) < 1 << 20  # every run drawn in full made it 24 MB
