"""Steering a live team: the operator's CLI against the Python API, in the same run.

A team runs in this process through `TeamRunner` (its loop in a background
thread). Rounds alternate, on the same agent:

1. `stop CONFIG AGENT --now` from the command's start to the agent's worker
   process gone, against `runner.stop(AGENT, mode=IMMEDIATE)` from the call;
2. `start CONFIG AGENT` from the command's start to its `worker_started`,
   against `runner.start_agent(AGENT)`.

The difference of the medians is what the CLI costs on top of the API: the
interpreter's start, the imports, the config, the socket. The bare start-up of
`python -m supervisor --help` is shown too.

    python benchmarks/bench_control.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from supervisor.api import TeamRunner  # noqa: E402

AGENT = "a0"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


class Started:
    """worker_started of AGENT, as the run reports it: when, and which pid."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, int]] = []
        self.arrived = threading.Condition()

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("event") == "worker_started" and event.get("agent_id") == AGENT:
            with self.arrived:
                self.seen.append((time.time(), int(event["pid"])))
                self.arrived.notify_all()

    def wait_beyond(self, count: int) -> tuple[float, int]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.seen) > count, timeout=60):
                raise RuntimeError("no worker_started within 60 s")
            return self.seen[count]


def gone_after(pid: int, began: float) -> float:
    """Milliseconds from `began` until `pid` has exited (a zombie counts as gone)."""
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.0005)
    return (time.time() - began) * 1000.0


def cli(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "supervisor", *args], env=ENV, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{args}: exit {done.returncode}: {done.stderr.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "team.yaml"
        config.write_text(yaml.safe_dump({
            "team": "bench-control", "storage": "state", "llm": {"provider": "scripted", "latency": 0.05},
            "agents": [{"name": f"a{i}", "task": "Count.", "max_cycles": 100000} for i in range(2)],
        }))
        started = Started()
        runner = TeamRunner(str(config), quiet=True, on_event=started).start()
        _, pid = started.wait_beyond(0)
        count = 1
        times: dict[str, list[float]] = {"stop cli": [], "stop api": [], "start cli": [], "start api": []}
        for _ in range(rounds):
            for way in ("cli", "api"):
                began = time.time()
                if way == "cli":
                    threading.Thread(target=cli, args=("stop", str(config), AGENT, "--now")).start()
                else:
                    runner.stop(AGENT, mode="IMMEDIATE")
                times[f"stop {way}"].append(gone_after(pid, began))
                time.sleep(0.2)  # the exit is reaped and the cli has returned
                began = time.time()
                if way == "cli":
                    cli("start", str(config), AGENT)
                else:
                    runner.start_agent(AGENT)
                at, pid = started.wait_beyond(count)
                count += 1
                times[f"start {way}"].append((at - began) * 1000.0)
                time.sleep(0.1)
        runner.interrupt()
        runner.wait(60)
        bare = []
        for _ in range(rounds):
            began = time.time()
            subprocess.run([sys.executable, "-m", "supervisor", "--help"], env=ENV, capture_output=True)
            bare.append((time.time() - began) * 1000.0)
    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"medians of {rounds} rounds, milliseconds")
    print("| step | CLI | API | CLI overhead |")
    print("| --- | ---: | ---: | ---: |")
    for step in ("stop", "start"):
        cli_ms, api_ms = med[f"{step} cli"], med[f"{step} api"]
        label = "stop --now: to the worker gone" if step == "stop" else "start: to worker_started"
        print(f"| {label} | {cli_ms:.1f} | {api_ms:.1f} | {cli_ms - api_ms:.1f} |")
    print(f"| `python -m supervisor --help` (interpreter and CLI start-up) | {statistics.median(bare):.1f} | | |")


if __name__ == "__main__":
    main()
