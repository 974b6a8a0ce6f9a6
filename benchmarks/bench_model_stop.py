"""A graceful stop with every agent's model call in flight over HTTP: how long after the last call ends?

Run: `python benchmarks/bench_model_stop.py [--sizes 1,32] [--repeat 3] [--latency 1.0] [--agents-per-process K]`

A real `python -m supervisor` run whose agents use the `ollama` provider (the official client, real
HTTP, streamed replies) against a test double of an Ollama server in this process (tests/ollama_double.py:
the product's own Ollama API layer over a scripted backend that holds each generation `--latency`
seconds before its first piece). Once every worker is ready and mid-call, one SIGINT. Measured: the
supervisor's exit minus the end of the last in-flight cycle (its `cycle_completed`, written right after
the reply's last byte is read), i.e. what the stop adds beyond the call. The goal of issue 15: at most
20 ms at 1 agent and 30 ms at 32. Beside it, the same step with the `scripted` provider (no HTTP), from
the same run of this script.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_interrupts import ExitWatch, _last_ts, _ms  # noqa: E402
from harness import TeamRun, add_agents_per_process, agents, machine, packing, packing_said  # noqa: E402
from ollama_double import MODEL, OllamaDouble  # noqa: E402

GOALS = {1: 20.0, 32: 30.0}  # ms beyond the call


def config(size: int, provider: str, host: str, latency: float, per_process: int = 1) -> dict[str, Any]:
    llm: dict[str, Any] = ({"provider": "ollama", "host": host, "model": MODEL} if provider == "ollama"
                           else {"provider": "scripted", "latency": latency})
    return {
        "team": "bench",
        "storage": "state",
        "llm": llm,
        "shutdown": {"graceful_timeout": 60, "immediate_timeout": 5},
        **packing(per_process),
        "agents": agents(size, task="Count from 1 upwards.", max_cycles=1000),
    }


def one_stop(size: int, provider: str, host: str, latency: float, per_process: int = 1) -> dict[str, Any]:
    with TeamRun(config(size, provider, host, latency, per_process), "bench-model-stop-", "/tmp") as run:
        assert run.proc is not None
        ready = run.wait_started(size)
        # Every worker's first call is in flight now; wait a third of a call so none is just starting.
        time.sleep(latency / 3)
        tree = run.process_tree(sorted({int(e["pid"]) for e in ready}))  # a pack's agents share a pid
        watch = ExitWatch([run.proc.pid, *tree])
        try:
            began = time.time()
            os.kill(run.proc.pid, signal.SIGINT)
            exited = watch.wait([run.proc.pid], began + latency + 60)
            code = run.proc.wait()
        finally:
            watch.close()
        run.poll()
        last_cycle = _last_ts(run.events, "cycle_completed", after=began)
        return {"size": size, "provider": provider, "exit_code": code, "beyond_call_ms": _ms(exited, last_cycle),
                "call_to_exit_ms": _ms(exited, began)}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,32")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds each model call takes (default 1)")
    add_agents_per_process(parser)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows = []
    with OllamaDouble(latency=args.latency) as double:
        for size in sizes:
            samples: dict[str, list[float]] = {"ollama": [], "scripted": []}
            for index in range(args.repeat):
                for provider in ("ollama", "scripted"):
                    result = one_stop(size, provider, double.host, args.latency, args.agents_per_process)
                    print(f"[bench] N={size} {provider} run {index + 1}: +{result['beyond_call_ms']:.1f} ms beyond "
                          f"the call, exit {result['exit_code']}", file=sys.stderr, flush=True)
                    if result["exit_code"] != 0 or result["beyond_call_ms"] is None:
                        raise SystemExit(f"N={size} {provider}: exit {result['exit_code']}, no cycle ended")
                    samples[provider].append(result["beyond_call_ms"])
            goal = GOALS.get(size)
            for provider in ("ollama", "scripted"):
                median = statistics.median(samples[provider])
                verdict = "—" if goal is None or provider != "ollama" else ("PASS" if median <= goal else "MISS")
                rows.append((f"graceful stop, {provider}", size, median, min(samples[provider]),
                             max(samples[provider]), f"≤ +{goal:g} ms" if goal and provider == "ollama" else "—",
                             verdict))
    print("| step | agents | median ms beyond the call | min–max ms | goal | result |")
    print("| --- | --: | --: | --: | --- | --- |")
    for step, size, median, low, high, goal_text, verdict in rows:
        print(f"| {step} | {size} | {median:.1f} | {low:.1f}–{high:.1f} | {goal_text} | {verdict} |")
    print(f"\n{machine()}; each model call {args.latency:g} s{packing_said(args.agents_per_process)}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
