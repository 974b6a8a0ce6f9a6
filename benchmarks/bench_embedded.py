"""The embedded model through the whole tree, against xllamacpp called directly, in one run.

1. Tokens per second: one agent generating `num_predict` tokens per cycle
   through supervisor -> worker -> ollama client -> model server -> xllamacpp,
   against the same model, threads and request called in process. Both count
   completion tokens over the whole call's wall time (prompt included).
2. Immediate stop with real generation in flight: from the second SIGINT to
   the supervisor's exit (every worker and the model server gone).

    python benchmarks/bench_embedded.py [--tokens 256] [--cycles 3]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SYSTEM = "You are a storyteller."
TASK = "Tell a long story about a lighthouse keeper, with many details."


def direct(tokens: int, calls: int) -> float:
    """tokens/s with xllamacpp in this process, the server's own settings."""
    from supervisor.model_service import THREADS, embedded_model_path
    from workers.model_server import LlamaBackend

    backend = LlamaBackend("m", str(embedded_model_path()), threads=THREADS, slots=1)
    rates = []
    for _ in range(calls):
        began = time.monotonic()
        stats = backend.chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": TASK}],
                             {"temperature": 0, "num_predict": tokens}, lambda text: True)
        rates.append(stats.completion_tokens / (time.monotonic() - began))
    return statistics.median(rates)


def _team(root: Path, agents: int, tokens: int, cycles: int) -> Path:
    config = root / "team.yaml"
    config.write_text(yaml.safe_dump({
        "team": "bench", "storage": "state",
        "llm": {"provider": "embedded", "options": {"temperature": 0, "num_predict": tokens}, "system_prompt": SYSTEM},
        "agents": [{"name": f"a{i}", "task": TASK, "max_cycles": cycles} for i in range(agents)],
    }))
    return config


def _events(root: Path) -> list[dict]:
    path = root / "state" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def through_the_tree(tokens: int, cycles: int) -> float:
    root = Path(tempfile.mkdtemp(prefix="bench-embedded-"))
    try:
        subprocess.run([sys.executable, "-m", "supervisor", str(_team(root, 1, tokens, cycles))],
                       stdout=subprocess.DEVNULL, check=True)
        done = [e for e in _events(root) if e["event"] == "cycle_completed"]
        return statistics.median(e["tokens"]["completion"] / (e["duration_ms"] / 1000.0) for e in done)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def immediate_stop() -> float:
    """ms from the second SIGINT to the supervisor's exit, two agents mid-generation."""
    root = Path(tempfile.mkdtemp(prefix="bench-embedded-"))
    try:
        proc = subprocess.Popen([sys.executable, "-m", "supervisor", str(_team(root, 2, 4000, 2))],
                                stdout=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while len([e for e in _events(root) if e["event"] == "worker_started"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(1.0)  # both replies well into generation
        family = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        os.kill(proc.pid, signal.SIGINT)
        while len([e for e in _events(root) if e["event"] == "interrupt_initiated"]) < 3:
            time.sleep(0.005)
        began = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(30)
        exited = (time.monotonic() - began) * 1000.0
        for pid in family:
            try:
                psutil.Process(pid).wait(5)
            except psutil.NoSuchProcess:
                pass
        return exited
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--cycles", type=int, default=3)
    args = parser.parse_args()
    tree = through_the_tree(args.tokens, args.cycles)
    bare = direct(args.tokens, args.cycles)
    overhead = (bare - tree) / bare * 100.0
    stops = [immediate_stop() for _ in range(3)]
    print("| measure | through the tree | xllamacpp direct (floor) | overhead | target |")
    print("| --- | --: | --: | --: | --- |")
    verdict = "PASS" if overhead <= 10.0 else "MISS"
    print(f"| tokens/s, {args.tokens}-token replies, median of {args.cycles} | {tree:.1f} | {bare:.1f} | {overhead:.1f}% | ≤ 10% {verdict} |")
    print(f"| immediate stop, 2 agents generating: 2nd SIGINT to exit, ms (median / worst of 3) | "
          f"{statistics.median(stops):.0f} / {max(stops):.0f} | — | — | — |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
