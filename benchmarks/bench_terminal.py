"""What a person at a terminal sees: start-up and the double Ctrl+C, next to the machine's floor.

Run: `python benchmarks/bench_terminal.py [--sizes 1,8,32] [--repeat R] [--agents-per-process K] [--markdown] [--json-out FILE]`
(the full table: `--sizes 1,8,32,128,512,1000`; 1000 agents need `ulimit -n` of about 3100, which the
supervisor raises to by itself when the hard limit allows).

The product runs as a person runs it: typed into `bash -i` on a pseudo-terminal, so it is the
foreground job in a process group of its own; Ctrl+C is the byte 0x03 written to the terminal, and
the kernel's line discipline turns it into SIGINT for that group. Each run is measured with the live
view on (TERM=xterm-256color) and with `--plain` beside it.

  stop   the second Ctrl+C (20 ms after the first, every reply in flight) to the terminal being back:
         the shell's prompt printed after the job, and the terminal's foreground group the shell's again.
         Floor: fork N children blocked on pipes, write 1 byte to each, reap them all (`_floors`).
         Printed beside it: a bare `sleep` job's Ctrl+C to prompt in the same shell, the terminal's share.
  start  the command typed (exec) to the last `worker_started` event.
  graceful  one Ctrl+C with every agent's reply in flight (1 s replies, live view): the end of the last
         cycle (its `cycle_completed`) to the terminal being back, what the stop adds beyond the work it
         waits for. Its goals are times (20 ms at 1 agent, 30 ms at 32), so no floor.
  memory in one more run per size, untimed: each worker's unique memory (USS) and its minor page faults
         once ready, what it copied of the forkserver.
         Floor: a fresh interpreter that imports the worker's modules, forks N children, and reads one
         byte from each on a socketpair: exec to every child ready (`_floors.start_floor`).
         Printed below the table: the same, but each child runs an asyncio loop that reads a frame and
         answers it, the least a process per agent costs before the product's own work; the start
         comes no closer to the fork floor than that (`bench_start_floors.py` has more of these).

`--agents-per-process K` runs each team with the config's `agents_per_process: K` (default 1, a process
per agent): the floors stay a process per agent, so the table says how much closer packing comes.

Every floor is measured in the same run, on the same machine, between the product's runs. The
micro-steps of `bench_interrupts.py` (ack, graceful, checkpoint, import) break the time down further.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _floors  # noqa: E402  (needs HERE on sys.path)
from _terminal import ShellTerminal  # noqa: E402
from harness import (REPO, EventTail, add_agents_per_process, agents, machine, named, packing,  # noqa: E402
                     packing_said, positive_ints, render_table, timestamp)

DEFAULT_SIZES = "1,8,32"
SECOND_AFTER = 0.020  # seconds between the two Ctrl+C
SETTLE = 0.5  # seconds between every worker ready and the first Ctrl+C
LATENCY = 600.0  # scripted seconds per reply: every reply is in flight at the stop
STOP_TARGET = 4.0  # x the floor
START_TARGET = 2.0
GRACEFUL_LATENCY = 1.0  # scripted seconds per reply in the graceful runs: the stop waits for the calls in flight
GRACEFUL_TARGETS_MS = {1: 20.0, 32: 30.0}  # beyond the last cycle, by team size (issue 15's goals)
ROWS, COLS = 50, 160

def progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def team(size: int, per_process: int = 1, latency: float = LATENCY) -> dict[str, Any]:
    return {
        "team": "bench",
        "storage": "state",
        "llm": {"provider": "scripted", "latency": latency},
        "shutdown": {"graceful_timeout": 60, "immediate_timeout": 5},
        **packing(per_process),
        "agents": agents(size, task="Count from 1 upwards.", max_cycles=1000, name="agent-{:04d}"),
    }


def environment() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)}


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def start_team(terminal: ShellTerminal, tail: EventTail, size: int, plain: bool) -> list[dict[str, Any]]:
    """Type the command into the shell and read the terminal until every worker is ready; their `worker_started`."""
    terminal.type(f"{sys.executable} -m supervisor team.yaml" + (" --plain" if plain else ""))
    deadline = time.monotonic() + 120 + 0.2 * size
    while tail.poll() is not None and len(named(tail.events, "worker_started")) < size:
        if time.monotonic() > deadline:
            raise RuntimeError(f"N={size}: not every worker started; the terminal shows:\n"
                               + terminal.buffer[-2000:].decode("utf-8", "replace"))
        terminal.read(0.02)
    return named(tail.events, "worker_started")


def one_run(folder: Path, size: int, plain: bool, memory: bool = False) -> dict[str, Any]:
    """Start the team in the shell, wait for every worker, double Ctrl+C, until the terminal is back.

    `memory`: also read each worker's memory once all are ready. Reading /proc/PID/smaps of every
    worker slowed the stop that followed by ~7 ms at 32 agents, so such a run's stop is not a sample.
    """
    shutil.rmtree(folder / "state", ignore_errors=True)
    terminal = ShellTerminal(environment(), str(folder), rows=ROWS, cols=COLS)
    tail = EventTail(folder / "state" / "events.jsonl")
    result: dict[str, Any] = {"size": size, "view": "plain" if plain else "live"}
    try:
        typed_at = time.time()
        ready = start_team(terminal, tail, size, plain)
        result["start_ms"] = (max(timestamp(e) for e in ready) - typed_at) * 1000.0
        supervisor = int(named(tail.events, "supervisor_started")[0]["pid"])
        tree = [supervisor, *(p.pid for p in descendants(supervisor))]
        if memory:
            result.update(worker_memory(sorted({int(e["pid"]) for e in ready})))  # a pack's agents share one
        time.sleep(SETTLE)
        mark = len(terminal.buffer)
        terminal.ctrl_c()
        first = time.perf_counter()
        while time.perf_counter() - first < SECOND_AFTER:
            terminal.read(SECOND_AFTER - (time.perf_counter() - first))  # a terminal keeps showing what comes
        terminal.ctrl_c()
        second = time.perf_counter()
        back = terminal.back(60.0 + 0.05 * size, mark)
        if back is None:
            raise RuntimeError(f"N={size}: the terminal did not come back after a double Ctrl+C")
        result["stop_ms"] = (back - second) * 1000.0
        result["exit_code"] = terminal.last_exit_code()
        left = _still_running([p for p in map(_process, tree) if p is not None], timeout=2.0)
        result["left_behind"] = len(left)
        result["left_behind_what"] = left
    finally:
        terminal.close()
        tail.close()
    return result


def graceful_run(folder: Path, size: int) -> dict[str, Any]:
    """Start the team (1 s replies) with the live view, one Ctrl+C once every worker is ready, until the terminal is back.

    Measured: the terminal back minus the end of the last cycle the stop waited for (its `cycle_completed`,
    written as the supervisor reads the reply): what a graceful stop adds beyond the work in flight.
    """
    shutil.rmtree(folder / "state", ignore_errors=True)
    terminal = ShellTerminal(environment(), str(folder), rows=ROWS, cols=COLS)
    tail = EventTail(folder / "state" / "events.jsonl")
    result: dict[str, Any] = {"size": size, "view": "live", "step": "graceful"}
    try:
        start_team(terminal, tail, size, plain=False)
        mark = len(terminal.buffer)
        pressed = time.time()
        terminal.ctrl_c()
        back = terminal.back(60.0 + 0.05 * size, mark)
        if back is None:
            raise RuntimeError(f"N={size}: the terminal did not come back after a Ctrl+C")
        back_wall = time.time() - (time.perf_counter() - back)
        result["exit_code"] = terminal.last_exit_code()
        tail.poll()
        ends = [timestamp(e) for e in named(tail.events, "cycle_completed") if timestamp(e) >= pressed]
        result["graceful_ms"] = (back_wall - max(ends)) * 1000.0 if ends else float("nan")
    finally:
        terminal.close()
        tail.close()
    return result


def worker_memory(pids: list[int]) -> dict[str, float]:
    """Median unique memory (USS, MB) and minor page faults of the ready workers: what each copied of the shared image."""
    uss, faults = [], []
    for pid in pids:
        try:
            uss.append(psutil.Process(pid).memory_full_info().uss / 1e6)
            with open(f"/proc/{pid}/stat", "rb") as stat:
                faults.append(int(stat.read().rsplit(b")", 1)[1].split()[7]))  # minflt, after the command name
        except (psutil.Error, OSError, ValueError, IndexError):
            pass
    return {"worker_uss_mb": statistics.median(uss), "worker_faults": statistics.median(faults)} if uss and faults else {}


def _still_running(processes: list[psutil.Process], timeout: float) -> list[str]:
    """What of `processes` still runs after `timeout` (a zombie has exited: it counts as gone)."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for process in processes:
            try:
                if process.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
            except psutil.NoSuchProcess:
                pass
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.01)


def _process(pid: int) -> Optional[psutil.Process]:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def shell_round_trip() -> float:
    """A bare job in the same shell: `sleep`, Ctrl+C, prompt back, in ms (what no product can go under)."""
    terminal = ShellTerminal(environment(), str(HERE), rows=ROWS, cols=COLS)
    try:
        terminal.type("sleep 600")
        terminal.job_pgid()
        mark = len(terminal.buffer)
        terminal.ctrl_c()
        pressed = time.perf_counter()
        back = terminal.back(10.0, mark)
        return (back - pressed) * 1000.0 if back is not None else float("nan")
    finally:
        terminal.close()


def start_floor(size: int, *, asyncio: bool = False) -> float:
    return _floors.start_floor(size, asyncio=asyncio, repo=str(REPO))


def stop_floor(size: int) -> float:
    return _floors.immediate_floor(size, 0.05) * 1000.0


def repeats_for(size: int, forced: Optional[int]) -> int:
    return forced if forced is not None else (3 if size <= 32 else 1)


def bench(sizes: list[int], forced: Optional[int], per_process: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    runs: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    shell = [shell_round_trip() for _ in range(3)]
    folder = Path(tempfile.mkdtemp(prefix="bench-terminal-"))
    try:
        for size in sizes:
            (folder / "team.yaml").write_text(json.dumps(team(size, per_process), indent=1))
            samples: dict[str, list[float]] = {"live": [], "plain": [], "start": [], "stop_floor": [], "start_floor": [],
                                               "asyncio_floor": [], "graceful": []}
            for index in range(repeats_for(size, forced)):
                for plain in (False, True):
                    view = "plain" if plain else "live"
                    progress(f"N={size} run {index + 1}: {view}")
                    result = one_run(folder, size, plain)
                    runs.append(result)
                    samples[view].append(result["stop_ms"])
                    samples["start"].append(result["start_ms"])
                    progress(f"  start {result['start_ms']:.0f} ms, stop {result['stop_ms']:.1f} ms, "
                             f"exit {result['exit_code']}, left behind {result['left_behind']}")
                samples["stop_floor"].append(stop_floor(size))  # between the product's runs, same conditions
                samples["start_floor"].append(start_floor(size))
                samples["asyncio_floor"].append(start_floor(size, asyncio=True))
                (folder / "team.yaml").write_text(json.dumps(team(size, per_process, GRACEFUL_LATENCY), indent=1))
                progress(f"N={size} run {index + 1}: graceful, live")
                result = graceful_run(folder, size)
                runs.append(result)
                samples["graceful"].append(result["graceful_ms"])
                progress(f"  graceful +{result['graceful_ms']:.1f} ms beyond the last cycle, exit {result['exit_code']}")
                (folder / "team.yaml").write_text(json.dumps(team(size, per_process), indent=1))
            progress(f"N={size}: one more run, for the workers' memory (its times are not samples)")
            runs.append(one_run(folder, size, plain=True, memory=True))
            for view in ("live", "plain"):
                rows.append(_row(f"stop, {view} view", size, samples[view], samples["stop_floor"], STOP_TARGET))
            rows.append(_row("start", size, samples["start"], samples["start_floor"], START_TARGET))
            rows.append(_absolute_row("graceful, live view, beyond the cycle", size, samples["graceful"],
                                      GRACEFUL_TARGETS_MS.get(size)))
            runs.append({"size": size, "asyncio_floor_ms": statistics.median(samples["asyncio_floor"])})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    runs.append({"shell_round_trip_ms": shell})
    return rows, runs


def _row(step: str, size: int, samples: list[float], floor: list[float], target: float) -> dict[str, Any]:
    median, floor_median = statistics.median(samples), statistics.median(floor)
    ratio = median / floor_median if floor_median > 0 else None
    return {"step": step, "agents": size, "median_ms": median, "min_ms": min(samples), "max_ms": max(samples),
            "floor_ms": floor_median, "ratio": ratio, "target": f"≤ {target:g}× floor",
            "result": "—" if ratio is None else ("PASS" if ratio <= target else "MISS"), "samples": samples}


def _absolute_row(step: str, size: int, samples: list[float], target_ms: Optional[float]) -> dict[str, Any]:
    """A row whose goal, where it has one, is a time, not a ratio: no floor."""
    median = statistics.median(samples)
    verdict = "—" if target_ms is None else ("PASS" if median <= target_ms else "MISS")
    return {"step": step, "agents": size, "median_ms": median, "min_ms": min(samples), "max_ms": max(samples),
            "floor_ms": None, "ratio": None, "target": "—" if target_ms is None else f"≤ {target_ms:g} ms",
            "result": verdict, "samples": samples}


HEADERS = ["step", "agents", "median ms", "min–max ms", "floor ms", "×floor", "target", "result"]


def _num(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def cells(row: dict[str, Any]) -> list[str]:
    return [row["step"], str(row["agents"]), _num(row["median_ms"]), f"{_num(row['min_ms'])}–{_num(row['max_ms'])}",
            "—" if row["floor_ms"] is None else _num(row["floor_ms"]), "—" if row["ratio"] is None else f"{row['ratio']:.1f}×",
            row["target"], row["result"]]


def render(rows: list[dict[str, Any]], markdown: bool) -> str:
    return render_table(HEADERS, [cells(row) for row in rows], markdown, left=frozenset({0, 6, 7}))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"team sizes, comma-separated (default {DEFAULT_SIZES}; "
                        "the full table: 1,8,32,128,512,1000)")
    parser.add_argument("--repeat", type=int, help="runs per size and view (default 3 up to 32 agents, else 1)")
    add_agents_per_process(parser)
    parser.add_argument("--markdown", action="store_true", help="the table as Markdown, for the README")
    parser.add_argument("--json-out", metavar="FILE", help="also write every run and row as JSON to FILE")
    args = parser.parse_args(argv)
    sizes = positive_ints(parser, "--sizes", args.sizes)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat needs a positive integer")
    if shutil.which("bash") is None:
        parser.error("needs bash: the product runs as a job of a job-control shell")
    began = time.perf_counter()
    rows, runs = bench(sizes, args.repeat, args.agents_per_process)
    print(render(rows, args.markdown))
    print()
    print(f"{machine()}{packing_said(args.agents_per_process)}; {time.perf_counter() - began:.0f} s.")
    shell = [ms for ms in next(r["shell_round_trip_ms"] for r in runs if "shell_round_trip_ms" in r) if ms == ms]  # not NaN
    print(f"A bare job in the same shell (`sleep 600`, Ctrl+C, prompt back): {statistics.median(shell):.1f} ms, "
          "a part of every stop that no supervisor can remove.")
    for row in (r for r in rows if r["step"] == "start"):
        floor = next(r["asyncio_floor_ms"] for r in runs if r.get("size") == row["agents"] and "asyncio_floor_ms" in r)
        print(f"N={row['agents']}: children that each run an asyncio loop, read one frame and answer it: {_num(floor)} ms, "
              f"{floor / row['floor_ms']:.1f}× the fork floor; the start is {row['median_ms'] / floor:.1f}× that.")
    for size in sizes:
        measured = [r for r in runs if r.get("size") == size and "worker_uss_mb" in r]
        if measured:
            per = min(args.agents_per_process, size)
            holds = f" holding {per} agents" if per > 1 else ""
            print(f"N={size}: a worker process{holds} at ready: USS {statistics.median(r['worker_uss_mb'] for r in measured):.2f} MB, "
                  f"{statistics.median(r['worker_faults'] for r in measured):.0f} minor page faults (median).")
    odd = [r for r in runs if "exit_code" in r and r.get("step") != "graceful" and (r["exit_code"] != 1 or r["left_behind"])]
    odd += [r for r in runs if r.get("step") == "graceful" and r["exit_code"] != 0]
    for run in odd:
        if run.get("step") == "graceful":
            print(f"  anomaly: N={run['size']} graceful: exit code {run['exit_code']} (expected 0)")
            continue
        print(f"  anomaly: N={run['size']} {run['view']}: exit code {run['exit_code']} (expected 1), "
              f"{run['left_behind']} process(es) still running 2 s after the prompt: {run['left_behind_what']}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"rows": rows, "runs": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
