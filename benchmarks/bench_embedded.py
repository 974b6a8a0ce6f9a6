"""The embedded model through the whole tree, against xllamacpp called directly, in one run.

1. Tokens per second: one agent generating `num_predict` tokens per cycle
   through supervisor -> worker -> ollama client -> model server -> xllamacpp,
   against the same model, threads and requests (read back from the agent's
   checkpoint) called in process, rounds interleaved. Both count completion
   tokens over the whole call's wall time (prompt included); the overhead is
   taken pairwise, cycle against its own request.
2. Immediate stop with real generation in flight: from the second SIGINT to
   the supervisor's exit (every worker and the model server gone).

    python benchmarks/bench_embedded.py [--tokens 256] [--cycles 3] [--rounds 3]
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


def _backend():
    """The model as the server loads it for one agent: same file, threads and slot count."""
    from supervisor.runtime.model_service import THREADS, embedded_model_path
    from workers.model_server import LlamaBackend

    return LlamaBackend("m", str(embedded_model_path()), threads=THREADS, slots=1)


def direct(backend, requests: list[list[dict]], tokens: int) -> list[float]:
    """tokens/s with xllamacpp in this process, one per request: the floor."""
    rates = []
    for messages in requests:
        began = time.monotonic()
        stats = backend.chat(messages, {"temperature": 0, "num_predict": tokens}, lambda text: True)
        rates.append(stats.completion_tokens / (time.monotonic() - began))
    return rates


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


def through_the_tree(tokens: int, cycles: int) -> tuple[list[float], list[list[dict]]]:
    """tokens/s of each cycle, as the worker timed its call, and the exact requests it sent.

    Each cycle's request is the conversation up to that cycle's reply, read back
    from the checkpoint, so the floor can be measured on the very same work (a
    later cycle carries a longer prompt, and is slower for the model itself).
    """
    from protocol.checkpoints import CheckpointStore

    root = Path(tempfile.mkdtemp(prefix="bench-embedded-"))
    try:
        subprocess.run([sys.executable, "-m", "supervisor", str(_team(root, 1, tokens, cycles))],
                       stdout=subprocess.DEVNULL, check=True)
        done = sorted((e for e in _events(root) if e["event"] == "cycle_completed"), key=lambda e: e["cycle"])
        rates = [e["tokens"]["completion"] / (e["duration_ms"] / 1000.0) for e in done]
        latest = CheckpointStore(root / "state", "a0").load_latest()
        assert latest is not None and latest.cycle == cycles, "the run did not checkpoint every cycle"
        messages = list(latest.messages)
        requests = [messages[:i] for i, m in enumerate(messages) if m["role"] == "assistant"]
        return rates, requests
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
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    backend = _backend()
    tree: list[float] = []
    bare: list[float] = []
    for _ in range(args.rounds):  # interleaved, so that the machine's drift hits both sides alike
        rates, requests = through_the_tree(args.tokens, args.cycles)
        tree += rates
        bare += direct(backend, requests, args.tokens)
    overhead = [(b - t) / b * 100.0 for t, b in zip(tree, bare)]
    stops = [immediate_stop() for _ in range(3)]
    samples = args.rounds * args.cycles
    print("| measure | through the tree | xllamacpp direct (floor) | overhead | target |")
    print("| --- | --: | --: | --: | --- |")
    verdict = "PASS" if statistics.median(overhead) <= 10.0 else "MISS"
    print(f"| tokens/s, {args.tokens}-token replies, same requests, median of {samples} | {statistics.median(tree):.1f} | "
          f"{statistics.median(bare):.1f} | {statistics.median(overhead):.1f}% (worst {max(overhead):.1f}%) | ≤ 10% {verdict} |")
    print(f"| immediate stop, 2 agents generating: 2nd SIGINT to exit, ms (median / worst of 3) | "
          f"{statistics.median(stops):.0f} / {max(stops):.0f} | — | — | — |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
