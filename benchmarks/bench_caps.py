"""Concurrency caps: a team sharing one capped model server, its wall time next to the ideal, and fairness.

A real team of `--agents` chat agents calls one Ollama TEST DOUBLE
(tests/ollama_double.py) that holds every generation `--latency` seconds and
records the most it ever had in progress at once; `max_concurrent` is
`--cap`. With the server the only bottleneck, the ideal wall time is
calls / cap x latency. Measured from the events: the span from the first
call's start (a `cycle_completed` minus its `duration_ms`) to the last
call's end, so that starting the processes is not counted; and each call's
`queued_ms`, the time it waited for a slot. First come, first served is fair
when no call waits much longer than the mean.

    python benchmarks/bench_caps.py [--agents 16] [--cap 2] [--latency 0.2] [--cycles 5] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from benchmarks.harness import TeamRun, agents, named, timestamp  # noqa: E402
from ollama_double import MODEL, OllamaDouble  # noqa: E402


def one_run(count: int, cap: int, latency: float, cycles: int) -> dict[str, float]:
    with OllamaDouble(latency=latency) as double:
        config = {
            "team": "bench-caps",
            "llm": {"provider": "ollama", "host": double.host, "model": MODEL, "request_timeout": 600,
                    "max_concurrent": cap},
            "checkpoint": {"every": 1, "keep": 3, "compress": True},
            "agents": agents(count, task="Count.", max_cycles=cycles),
        }
        with TeamRun(config, "bench-caps-") as run:
            code = run.wait_exit(timeout=120 + count * cycles * latency * 2)
            if code != 0:
                raise run.failed(f"the team exited {code}")
            done = named(run.events, "cycle_completed")
        peak = double.backend.peak
    if len(done) != count * cycles:
        raise RuntimeError(f"{len(done)} cycles completed, expected {count * cycles}")
    began = min(timestamp(e) - e["duration_ms"] / 1000.0 for e in done)
    ended = max(timestamp(e) for e in done)
    waits = [float(e["queued_ms"]) for e in done]
    held = [float(e["duration_ms"]) - float(e["queued_ms"]) for e in done]  # a cycle's time in its slot
    per_agent: dict[str, float] = defaultdict(float)
    for e in done:
        per_agent[e["agent_id"]] += float(e["queued_ms"])
    return {"wall": ended - began, "peak": peak, "held": statistics.mean(held) / 1000.0, "mean_wait": statistics.mean(waits), "max_wait": max(waits),
            "agent_mean": statistics.mean(per_agent.values()), "agent_max": max(per_agent.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=16)
    parser.add_argument("--cap", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the server holds each call")
    parser.add_argument("--cycles", type=int, default=5, help="calls per agent")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    calls = args.agents * args.cycles
    ideal = calls / args.cap * args.latency
    print(f"{args.agents} agents x {args.cycles} calls, max_concurrent {args.cap}, server latency {args.latency:g} s; "
          f"ideal = calls / cap x latency = {ideal:.2f} s")
    print(f"{'run':>3} {'calls':>5} {'peak':>4} {'wall s':>7} {'ideal s':>7} {'wall/ideal':>10} "
          f"{'floor s':>7} {'wall/floor':>10} {'mean wait ms':>12} {'longest ms':>10} {'longest/mean':>12} "
          f"{'agent total max/mean':>20}")
    for number in range(1, args.repeats + 1):
        r = one_run(args.agents, args.cap, args.latency, args.cycles)
        floor = calls / args.cap * r["held"]
        print(f"{number:>3} {calls:>5} {r['peak']:>4.0f} {r['wall']:>7.2f} {ideal:>7.2f} {r['wall'] / ideal:>9.3f}x "
              f"{floor:>7.2f} {r['wall'] / floor:>9.3f}x {r['mean_wait']:>12.1f} {r['max_wait']:>10.1f} {r['max_wait'] / r['mean_wait']:>11.2f}x "
              f"{r['agent_max'] / r['agent_mean']:>19.2f}x")
    print("wall: first call's start to last call's end (process start-up excluded); peak: most calls the server saw at once")
    print("floor: calls / cap x the mean time a cycle held its slot (the HTTP call, measured in the same run): "
          "wall/floor is the cost of handing slots on")
    print("longest/mean: one call's wait for a slot against the mean call's; agent total: each agent's waits added up")


if __name__ == "__main__":
    main()
