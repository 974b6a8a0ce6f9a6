"""Faults, timed: a SIGKILLed supervisor, and a SIGKILLed worker's replacement.

1. Supervisor SIGKILL to every process it started (workers and the forkserver)
   gone; the contract says < 2 s. Floor: a bare forked
   child blocked on a pipe from its parent, which sees EOF when the parent dies.
2. Worker SIGKILL to its replacement's `worker_started` (default restart
   policy, so it includes the first restart delay, 0.1 s). Floor: that delay
   plus one bare fork-and-pipe start.
3. The same two with the agents in groups of 8 (nested teams): the
   supervisor's SIGKILL must take the groups' workers too, and a group's
   SIGKILL is measured to the last of its agents ready again in the
   restarted group (which boots a forkserver of its own).

Each run is `python -m supervisor` with N scripted agents whose replies are in flight.

    python benchmarks/bench_faults.py [--workers 8,32] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import TeamRun, agents, named, timestamp  # noqa: E402
from tests.harness import gone  # noqa: E402  (the tests' own "every pid has exited")

GROUP_SIZE = 8


def start(workers: int, grouped: bool = False) -> TeamRun:
    """`python -m supervisor` with N agents whose replies stay in flight (not started until entered)."""
    team = agents(workers, task="t", max_cycles=3)
    config: dict[str, Any] = {"team": "bench", "llm": {"provider": "scripted", "latency": 60.0}}
    if grouped:
        config["groups"] = [
            {"name": f"g{i // GROUP_SIZE}", "agents": team[i : i + GROUP_SIZE]} for i in range(0, workers, GROUP_SIZE)
        ]
    else:
        config["agents"] = team
    return TeamRun(config, "bench-faults-")


def settled(run: TeamRun, workers: int) -> list[dict]:
    """Once every worker reported ready and has been idle in its reply a moment: their worker_started events."""
    started = run.wait_started(workers, timeout=60)
    time.sleep(0.3)  # every worker idle in its reply
    return started


def worker_sigkill(workers: int) -> float:
    """ms from SIGKILL of one worker to its replacement reporting ready."""
    with start(workers) as run:
        started = settled(run, workers)
        try:
            victim = started[workers // 2]
            killed_at = time.time()
            os.kill(int(victim["pid"]), signal.SIGKILL)

            def replaced(events: list[dict]) -> list[dict]:
                found = named(events, "worker_started", victim["agent_id"])
                return found if len(found) >= 2 else []

            again = run.wait_for(replaced, 60, f"{victim['agent_id']}'s replacement")
            return (timestamp(again[1]) - killed_at) * 1000.0
        finally:
            run.stop(signal.SIGTERM, 60)


def group_sigkill(workers: int) -> float:
    """ms from SIGKILL of one group to the last of its agents ready again."""
    with start(workers, grouped=True) as run:
        settled(run, workers)
        try:
            run.poll()
            group = named(run.events, "group_started")[0]
            members = set(group["agents"])
            killed_at = time.time()
            os.kill(int(group["pid"]), signal.SIGKILL)

            def ready_again(events: list[dict]) -> list[dict]:
                found = [e for e in named(events, "worker_started") if e["agent_id"] in members]
                return found if len(found) >= 2 * len(members) else []

            again = run.wait_for(ready_again, 60, f"{group['agent_id']}'s agents ready again")
            return (max(timestamp(e) for e in again[len(members) :]) - killed_at) * 1000.0
        finally:
            run.stop(signal.SIGTERM, 60)


def bare_start_floor() -> float:
    """One bare fork whose child writes a byte to a pipe: the least a replacement costs."""
    read_end, write_end = os.pipe()
    began = time.monotonic()
    if os.fork() == 0:
        os.write(write_end, b"r")
        os._exit(0)
    os.read(read_end, 1)
    elapsed = (time.monotonic() - began) * 1000.0
    os.wait()
    os.close(read_end)
    os.close(write_end)
    return elapsed


def supervisor_sigkill(workers: int, grouped: bool = False) -> float:
    """ms from SIGKILL of the supervisor to every process it started being gone."""
    with start(workers, grouped) as run:
        settled(run, workers)
        family = run.process_tree()
        began = time.monotonic()
        os.kill(run.pid, signal.SIGKILL)
        run.proc.wait()
        while not gone(family):
            if time.monotonic() - began > 10:
                raise RuntimeError(f"processes still alive 10 s after the supervisor's SIGKILL: {family}")
            time.sleep(0.001)
        return (time.monotonic() - began) * 1000.0


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
    while not gone(family):
        time.sleep(0.001)
    return (time.monotonic() - began) * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="8,32")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from supervisor.runtime.restarts import FIRST_DELAY

    print("| step | N | median ms | worst ms | floor ms | target |")
    print("| --- | --: | --: | --: | --: | --- |")
    for workers in (int(n) for n in args.workers.split(",")):
        samples = [supervisor_sigkill(workers) for _ in range(args.repeat)]
        floor_kill = statistics.median(bare_floor(workers) for _ in range(args.repeat))
        verdict = "PASS" if max(samples) < 2000 else "MISS"
        print(f"| supervisor SIGKILL to every process gone | {workers} | {statistics.median(samples):.1f} | {max(samples):.1f} | {floor_kill:.1f} | < 2000 ms {verdict} |")
        samples = [worker_sigkill(workers) for _ in range(args.repeat)]
        floor = FIRST_DELAY * 1000.0 + statistics.median(bare_start_floor() for _ in range(args.repeat))
        print(f"| worker SIGKILL to its replacement ready | {workers} | {statistics.median(samples):.1f} | {max(samples):.1f} | {floor:.1f} | — |")
        samples = [supervisor_sigkill(workers, grouped=True) for _ in range(args.repeat)]
        verdict = "PASS" if max(samples) < 2000 else "MISS"
        print(f"| supervisor SIGKILL to every process gone, groups of {GROUP_SIZE} | {workers} | {statistics.median(samples):.1f} | {max(samples):.1f} | {floor_kill:.1f} | < 2000 ms {verdict} |")
        samples = [group_sigkill(workers) for _ in range(args.repeat)]
        print(f"| group SIGKILL to its {GROUP_SIZE} agents ready again | {workers} | {statistics.median(samples):.1f} | {max(samples):.1f} | {floor:.1f} | — |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
