"""How long do workers outlive a SIGKILLed supervisor? (The contract says < 2 s.)

Starts `python -m supervisor` with N scripted agents whose replies are all in
flight, SIGKILLs the supervisor, and times until every process it started (the
workers, the forkserver, its resource tracker) is gone. The floor is a bare
fork-and-pipe child blocked on its pipe, which sees EOF when its parent dies.

    python benchmarks/bench_parent_death.py [--workers 8,32] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml


def _gone(pids: list[int]) -> bool:
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def supervisor_sigkill(workers: int) -> float:
    """ms from SIGKILL of the supervisor to every process it started being gone."""
    root = Path(tempfile.mkdtemp(prefix="bench-parent-death-"))
    try:
        config = root / "team.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "team": "bench",
                    "storage": "state",
                    "llm": {"provider": "scripted", "latency": 60.0},
                    "agents": [{"name": f"a{i}", "task": "t", "max_cycles": 3} for i in range(workers)],
                }
            )
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", str(config)], stdout=subprocess.DEVNULL, start_new_session=True
        )
        events = root / "state" / "events.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = events.read_text().splitlines() if events.exists() else []
            if sum(json.loads(line)["event"] == "worker_started" for line in lines if line) == workers:
                break
            time.sleep(0.02)
        else:
            proc.kill()
            raise RuntimeError("workers never became ready")
        time.sleep(0.3)
        family = [child.pid for child in psutil.Process(proc.pid).children(recursive=True)]
        began = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        while not _gone(family):
            if time.monotonic() - began > 10:
                raise RuntimeError(f"processes still alive 10 s after the supervisor's SIGKILL: {family}")
            time.sleep(0.001)
        return (time.monotonic() - began) * 1000.0
    finally:
        shutil.rmtree(root, ignore_errors=True)


def bare_floor(workers: int) -> float:
    """A parent with N children blocked reading a pipe from it; SIGKILL the parent."""
    ready_r, ready_w = os.pipe()
    parent = os.fork()
    if parent == 0:  # the stand-in supervisor
        os.close(ready_r)
        for _ in range(workers):
            link_r, link_w = os.pipe()
            if os.fork() == 0:
                os.close(link_w)
                os.read(link_r, 1)  # EOF when the stand-in dies
                os._exit(0)
            os.close(link_r)
        os.write(ready_w, b"r")
        time.sleep(3600)
    os.close(ready_w)
    os.read(ready_r, 1)
    family = [child.pid for child in psutil.Process(parent).children(recursive=True)]
    began = time.monotonic()
    os.kill(parent, signal.SIGKILL)
    os.waitpid(parent, 0)
    while not _gone(family):
        time.sleep(0.001)
    return (time.monotonic() - began) * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="8,32")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| N | supervisor SIGKILL to every process gone, median ms | worst ms | floor ms | target |")
    print("| --: | --: | --: | --: | --- |")
    for workers in (int(n) for n in args.workers.split(",")):
        samples = [supervisor_sigkill(workers) for _ in range(args.repeat)]
        floor = statistics.median(bare_floor(workers) for _ in range(args.repeat))
        verdict = "PASS" if max(samples) < 2000 else "MISS"
        print(f"| {workers} | {statistics.median(samples):.1f} | {max(samples):.1f} | {floor:.1f} | < 2000 ms {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
