"""`logs` on a big events.jsonl: time and peak memory, next to `wc -l` on the same file.

    .venv/bin/python benchmarks/bench_logs.py                  # 1 GiB, logs only
    .venv/bin/python benchmarks/bench_logs.py --mb 200 --all   # smaller, and status, report, logs --json too

The file is generated into a temporary folder (a team config beside it) and
removed at the end: runs of a start, cycles of several agents with a
500-character reply (the longest preview a cycle event carries), interrupts
and a stop, as a long-lived team leaves them. `--rotated` splits it into
`events.jsonl.N` ... `events.jsonl` as the run's rotation would, to show that
reading across the files costs nothing extra.

Every command runs as its own process with stdout to /dev/null; its peak
resident set is its VmHWM, read from /proc every few milliseconds while it
runs (the same way for `wc -l` and for ours, so the two compare). The floor,
`wc -l`, is the least any reader of the file pays: one pass over the bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE_S = 0.005
AGENTS = 8
REPLY = ("cycle {k}: " + "counting one two three four five six seven eight nine ten " * 9)[:500]

CONFIG = "team: bench\nstorage: state\nllm: {provider: scripted}\nagents:\n" + "".join(
    f"  - {{name: agent-{i}, task: count, max_cycles: 1000000}}\n" for i in range(AGENTS))


def generate(path: Path, size: int) -> int:
    """Write about `size` bytes of events; returns the number of lines."""
    lines = 0
    run = 0
    with open(path, "w", buffering=1 << 20) as out:
        while out.tell() < size:
            run += 1
            out.write(f'{{"timestamp": "2026-11-29T10:00:00.000000Z", "level": "info", "event": "supervisor_started", '
                      f'"agent_id": "bench", "team": "bench", "pid": {run}, "agents": [], "resumed": []}}\n')
            block = []
            for k in range(1, 2001):
                agent = f"agent-{k % AGENTS}"
                block.append(f'{{"timestamp": "2026-11-29T10:{k // 600 % 60:02d}:{k // 10 % 60:02d}.{k % 10}00000Z", '
                             f'"level": "info", "event": "cycle_completed", "agent_id": "{agent}", "cycle": {k}, '
                             f'"max_cycles": 1000000, "duration_ms": 51.234, "cost_usd": 0.0001, '
                             f'"tokens": {{"prompt": 812, "completion": 96}}, "model_ms": 48.1, '
                             f'"reply": "{REPLY.format(k=k)}"}}\n')
            out.write("".join(block))
            out.write('{"timestamp": "2026-11-29T10:59:00.000000Z", "level": "info", "event": "interrupt_initiated", '
                      '"agent_id": "bench", "source": "USER", "mode": "GRACEFUL", "message": "Ctrl+C", "interrupt_id": 1}\n')
            out.write('{"timestamp": "2026-11-29T10:59:01.000000Z", "level": "info", "event": "supervisor_stopped", '
                      '"agent_id": "bench", "status": "interrupted", "exit_code": 0, "duration_s": 3540.0}\n')
            lines += 2003
    return lines


def rotate(path: Path, parts: int) -> None:
    """Split the file into `parts` files at line boundaries, named as the writer's rotation names them."""
    size = path.stat().st_size
    cuts = []
    with open(path, "rb") as source:
        for index in range(1, parts):
            source.seek(size * index // parts)
            source.readline()
            cuts.append(source.tell())
    names = [f"{path.name}.{n}" for n in range(parts - 1, 0, -1)] + [path.name]
    bounds = [0, *cuts, size]
    with open(path, "rb") as source:
        for name, start, end in zip(names[:-1], bounds, bounds[1:]):
            with open(path.parent / f"{name}.tmp", "wb") as out:
                source.seek(start)
                left = end - start
                while left:
                    chunk = source.read(min(left, 1 << 24))
                    out.write(chunk)
                    left -= len(chunk)
    with open(path, "r+b") as live:  # the newest part is what is left at the end of the file
        live.seek(bounds[-2])
        tail = live.read()
        live.seek(0)
        live.write(tail)
        live.truncate()
    for name in names[:-1]:
        os.replace(path.parent / f"{name}.tmp", path.parent / name)


def measure(argv: list[str], cwd: Path) -> tuple[float, int, int]:
    """Run to the end with stdout to /dev/null: (seconds, peak RSS in KiB, exit code)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    began = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(SAMPLE_S)
    elapsed = time.perf_counter() - began
    assert proc.stderr is not None
    err = proc.stderr.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        print(f"{' '.join(argv)} exited {proc.returncode}: {err.strip()[:500]}", file=sys.stderr)
    return elapsed, peak, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=1024, help="size of the events file in MiB (default 1024)")
    parser.add_argument("--all", action="store_true", help="also logs --json, status and report")
    parser.add_argument("--rotated", type=int, default=0, metavar="N", help="split the file into N rotated files")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    try:
        (root / "team.yaml").write_text(CONFIG)
        storage = root / "state"
        storage.mkdir(mode=0o700)
        events = storage / "events.jsonl"
        began = time.perf_counter()
        lines = generate(events, args.mb << 20)
        size = events.stat().st_size
        print(f"generated {size / 2**20:.0f} MiB, {lines:,} lines in {time.perf_counter() - began:.1f}s", flush=True)
        files = [str(events)]
        if args.rotated > 1:
            rotate(events, args.rotated)
            files = [str(storage / f"events.jsonl.{n}") for n in range(args.rotated - 1, 0, -1)] + [str(events)]
            print(f"split into {args.rotated} rotated files", flush=True)

        py = sys.executable
        config = str(root / "team.yaml")
        commands: list[tuple[str, list[str]]] = [
            ("wc -l (floor)", ["wc", "-l", *files]),
            ("logs", [py, "-m", "supervisor", "logs", config]),
        ]
        if args.all:
            commands += [
                ("logs --json", [py, "-m", "supervisor", "logs", config, "--json"]),
                ("status", [py, "-m", "supervisor", "status", config]),
                ("report", [py, "-m", "supervisor", "report", config, "-o", str(root / "report.html")]),
            ]
        rows = []
        for label, argv in commands:
            os.system("cat " + " ".join(files) + " > /dev/null")  # the file in the page cache for every command alike
            seconds, peak, code = measure(argv, root)
            rows.append((label, seconds, peak, code))
            print(f"  {label}: {seconds:.1f}s", flush=True)
        floor_s = rows[0][1]
        print()
        print(f"{'command':<16} {'time (s)':>9} {'x wc -l':>8} {'MiB/s':>7} {'peak RSS (MiB)':>15} {'exit':>5}")
        for label, seconds, peak, code in rows:
            print(f"{label:<16} {seconds:>9.2f} {seconds / floor_s:>8.1f} {size / 2**20 / seconds:>7.0f} "
                  f"{peak / 1024:>15.1f} {code:>5}")
        print(f"\n{size / 2**20:.0f} MiB, {lines:,} lines; peak RSS sampled from /proc every {SAMPLE_S * 1000:.0f} ms")
        return 0 if all(code == 0 for *_, code in rows) else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
