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
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import TeamRun, agents, named  # noqa: E402

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


def _team(count: int, tokens: int, cycles: int, api: str = "ollama") -> dict[str, Any]:
    """The team on the bundled model; `api` says which of the server's APIs the workers speak (same requests)."""
    cap = {"num_predict": tokens} if api == "ollama" else {"max_tokens": tokens}
    return {
        "team": "bench",
        "llm": {"provider": "embedded", "api": api, "options": {"temperature": 0, **cap}, "system_prompt": SYSTEM},
        "agents": agents(count, task=TASK, max_cycles=cycles),
    }


def through_the_tree(tokens: int, cycles: int, api: str = "ollama") -> tuple[list[float], list[list[dict]]]:
    """tokens/s of each cycle, as the worker timed its call, and the exact requests it sent.

    Each cycle's request is the conversation up to that cycle's reply, read back
    from the checkpoint, so the floor can be measured on the very same work (a
    later cycle carries a longer prompt, and is slower for the model itself).
    """
    from protocol.checkpoints import CheckpointStore

    with TeamRun(_team(1, tokens, cycles, api), "bench-embedded-") as run:
        code = run.wait_exit()
        if code != 0:
            raise run.failed(f"the run exited with code {code}")
        done = sorted(named(run.events, "cycle_completed"), key=lambda e: e["cycle"])
        rates = [e["tokens"]["completion"] / (e["duration_ms"] / 1000.0) for e in done]
        latest = CheckpointStore(run.storage, "a0").load_latest()
        assert latest is not None and latest.cycle == cycles, "the run did not checkpoint every cycle"
        messages = list(latest.messages)
        requests = [messages[:i] for i, m in enumerate(messages) if m["role"] == "assistant"]
        return rates, requests


def immediate_stop(api: str = "ollama") -> float:
    """ms from the second SIGINT to the supervisor's exit, two agents mid-generation."""
    with TeamRun(_team(2, 4000, 2, api), "bench-embedded-") as run:
        run.wait_started(2, timeout=60)
        time.sleep(1.0)  # both replies well into generation
        family = run.process_tree()
        os.kill(run.pid, signal.SIGINT)
        run.wait_for(lambda ev: len(named(ev, "interrupt_initiated")) >= 3, 60, "the graceful acks", poll=0.005)
        began = time.monotonic()
        os.kill(run.pid, signal.SIGINT)
        assert run.proc is not None
        run.proc.wait(30)
        exited = (time.monotonic() - began) * 1000.0
        for pid in family:
            try:
                psutil.Process(pid).wait(5)
            except psutil.NoSuchProcess:
                pass
        return exited


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
