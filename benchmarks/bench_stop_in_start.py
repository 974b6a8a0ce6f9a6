"""A Ctrl+C while a big team is still starting: how soon the terminal is back, and how much started.

Run: `python benchmarks/bench_stop_in_start.py [--sizes 128,1000] [--repeat 3] [--markdown]`

The product runs in the pseudo-terminal as in `bench_terminal.py`, live view on, with scripted replies
of LATENCY seconds. Ctrl+C is pressed once (graceful) the moment the first `worker_started` event is
written, while the rest of the team is being forked. Measured: the key press to the terminal being
back, and how many workers had started. A graceful stop waits for each started agent's reply in
flight, so LATENCY is a part of every figure that no supervisor can remove; the table says so beside
it. Each run also checks the exit code (0) and that nothing of the run is left.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _terminal import ShellTerminal  # noqa: E402  (needs HERE on sys.path)
from bench_terminal import COLS, ROWS, _process, _still_running, descendants, environment  # noqa: E402
from harness import EventTail, agents, named, positive_ints, render_table  # noqa: E402

LATENCY = 1.0  # scripted seconds per reply: a started agent finishes its reply before it stops


def team(size: int) -> dict[str, Any]:
    return {"team": "bench", "storage": "state", "llm": {"provider": "scripted", "latency": LATENCY},
            "shutdown": {"graceful_timeout": 60, "immediate_timeout": 5},
            "agents": agents(size, task="Count from 1 upwards.", max_cycles=1000, name="agent-{:04d}")}


def one_run(folder: Path, size: int) -> dict[str, Any]:
    shutil.rmtree(folder / "state", ignore_errors=True)
    (folder / "team.yaml").write_text(json.dumps(team(size)))
    terminal = ShellTerminal(environment(), str(folder), rows=ROWS, cols=COLS)
    tail = EventTail(folder / "state" / "events.jsonl")
    try:
        terminal.type(f"{sys.executable} -m supervisor team.yaml")
        deadline = time.monotonic() + 120
        while tail.poll() is not None and not named(tail.events, "worker_started"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"N={size}: no worker started")
            terminal.read(0.005)
        supervisor = int(named(tail.events, "supervisor_started")[0]["pid"])
        tree = [supervisor, *(p.pid for p in descendants(supervisor))]
        mark = len(terminal.buffer)
        terminal.ctrl_c()
        pressed = time.perf_counter()
        back = terminal.back(120.0, mark)
        if back is None:
            raise RuntimeError(f"N={size}: the terminal did not come back after a Ctrl+C")
        tail.poll()
        exit_code = terminal.last_exit_code()
        left = _still_running([p for p in map(_process, tree) if p is not None], timeout=2.0)
        return {"size": size, "stop_ms": (back - pressed) * 1000.0, "started": len(named(tail.events, "worker_started")),
                "exit_code": exit_code, "left_behind": len(left)}
    finally:
        terminal.close()
        tail.close()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="128,1000", help="team sizes, comma-separated (default 128,1000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (default 3)")
    parser.add_argument("--markdown", action="store_true", help="the table as Markdown")
    args = parser.parse_args(argv)
    sizes = positive_ints(parser, "--sizes", args.sizes)
    if args.repeat < 1:
        parser.error("--repeat needs a positive integer")
    folder = Path(tempfile.mkdtemp(prefix="bench-stop-in-start-"))
    rows = []
    try:
        for size in sizes:
            runs = [one_run(folder, size) for _ in range(args.repeat)]
            stops = [r["stop_ms"] for r in runs]
            rows.append([str(size), f"{statistics.median(stops):.0f}", f"{min(stops):.0f}–{max(stops):.0f}",
                         f"{LATENCY * 1000:.0f}", ", ".join(str(r["started"]) for r in runs),
                         ", ".join(str(r["exit_code"]) for r in runs), str(sum(r["left_behind"] for r in runs))])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    headers = ["agents", "Ctrl+C to prompt, median ms", "min–max ms", "reply in flight ms", "workers started",
               "exit codes", "left behind"]
    print(render_table(headers, rows, args.markdown, left=frozenset({4, 5})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
