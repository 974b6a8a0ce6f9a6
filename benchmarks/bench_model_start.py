"""A team's start on a real model client, next to the same team on the scripted provider and the fork floor.

Run: `python benchmarks/bench_model_start.py [--sizes 1,32,256] [--repeat 2] [--agents-per-process K] [--markdown]`

`bench_terminal.py` starts its teams on the `scripted` provider, which imports no model client and makes
no HTTP call. A team on `ollama` or `openai` is what users run: each worker makes a client (httpx, a TLS
context) and its first call goes through code no earlier call has warmed. Here the same team runs on
each: `ollama` against the Ollama test double, `openai` against the OpenAI test double (tests/: the
product's own model API over a scripted backend, in this process), each generation held for
`--latency` seconds so every agent's first call is in flight at once.

  ready       exec to the last `worker_started`.
  first call  exec to the moment the server has received every agent's first request: the team is
              at work.
  cpu         the CPU one agent's worker has used by then (median, /proc/PID/schedstat; with
              `--agents-per-process K`, a process's CPU shared out among its agents).

The floor beside them is `_floors.start_floor` (fork N preloaded children, each says ready), measured
in the same run.
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.append(str(HERE.parent / "tests"))  # the model doubles; benchmarks/harness.py comes first

import _floors  # noqa: E402
from harness import (REPO, TeamRun, add_agents_per_process, agents, machine, packing,  # noqa: E402
                     packing_said, positive_ints, render_table, timestamp)
from ollama_double import MODEL, OllamaDouble  # noqa: E402
from openai_double import OpenAIDouble  # noqa: E402

PROVIDERS = ("scripted", "ollama", "openai")


PER_PROCESS = 1  # the teams' agents_per_process (--agents-per-process)


def config(size: int, llm: dict[str, Any]) -> dict[str, Any]:
    return {"team": "bench", "llm": llm, "shutdown": {"graceful_timeout": 60, "immediate_timeout": 5},
            **packing(PER_PROCESS),
            "agents": agents(size, task="Count from 1 upwards.", max_cycles=1000)}


def llm_of(provider: str, ollama: OllamaDouble, openai: OpenAIDouble, latency: float) -> dict[str, Any]:
    if provider == "ollama":
        return {"provider": "ollama", "host": ollama.host, "model": MODEL}
    if provider == "openai":
        return {"provider": "openai", "base_url": openai.base_url, "model": MODEL}
    return {"provider": "scripted", "latency": latency}


def worker_cpu_ms(pids: list[int]) -> Optional[float]:
    """The median CPU of an agent's worker, in ms; a process that several agents share, shared out among them."""
    used = []
    for pid, agents_in_it in Counter(pids).items():
        try:
            with open(f"/proc/{pid}/schedstat", "rb") as stat:
                used.extend([int(stat.read().split()[0]) / 1e6 / agents_in_it] * agents_in_it)
        except (OSError, ValueError, IndexError):
            pass
    return statistics.median(used) if used else None


def one_start(size: int, llm: dict[str, Any], calls_seen: Optional[Callable[[], int]]) -> dict[str, Any]:
    """Start the team; the times to every worker ready and to every first call at the server, in ms.

    `calls_seen`: how many chat requests the server has received; None for the scripted provider, whose
    first call is its first cycle, at ready.
    """
    seen_before = calls_seen() if calls_seen else 0
    with TeamRun(config(size, llm), "bench-model-start-", "/tmp") as run:
        ready = run.wait_started(size)
        last_ready = max(timestamp(e) for e in ready)
        at_work = last_ready
        deadline = time.monotonic() + 60 + 0.5 * size
        while calls_seen is not None and calls_seen() - seen_before < size:
            if time.monotonic() > deadline:
                raise run.failed(f"only {calls_seen() - seen_before} of {size} first calls reached the server")
            time.sleep(0.002)
            at_work = time.time()
        cpu = worker_cpu_ms([int(e["pid"]) for e in ready])
        return {"ready_ms": (last_ready - run.popen_at) * 1000.0, "first_call_ms": (at_work - run.popen_at) * 1000.0,
                "worker_cpu_ms": cpu}


def bench(sizes: list[int], repeat: int, latency: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with OllamaDouble(latency=latency) as ollama, OpenAIDouble(latency=latency) as openai:
        counters: dict[str, Optional[Callable[[], int]]] = {
            "ollama": lambda: len(ollama.requests),
            "openai": lambda: len(openai.httpd.requests),
            "scripted": None,
        }
        for size in sizes:
            samples: dict[str, list[dict[str, Any]]] = {p: [] for p in PROVIDERS}
            floors = []
            for index in range(repeat):
                for provider in PROVIDERS:
                    result = one_start(size, llm_of(provider, ollama, openai, latency), counters[provider])
                    samples[provider].append(result)
                    print(f"[bench] N={size} {provider} run {index + 1}: ready {result['ready_ms']:.0f} ms, first call "
                          f"{result['first_call_ms']:.0f} ms, worker cpu {result['worker_cpu_ms'] or 0:.1f} ms",
                          file=sys.stderr, flush=True)
                floors.append(_floors.start_floor(size, repo=str(REPO)))
            floor = statistics.median(floors)
            for provider in PROVIDERS:
                got = samples[provider]
                ready = statistics.median(r["ready_ms"] for r in got)
                first = statistics.median(r["first_call_ms"] for r in got)
                cpu = statistics.median(r["worker_cpu_ms"] or 0.0 for r in got)
                rows.append({"provider": provider, "agents": size, "ready_ms": ready, "first_call_ms": first,
                             "worker_cpu_ms": cpu, "floor_ms": floor, "ratio": first / floor if floor else None})
    return rows


HEADERS = ["provider", "agents", "ready ms", "first call ms", "worker cpu ms", "fork floor ms", "first call ×floor"]


def cells(row: dict[str, Any]) -> list[str]:
    first = "—" if row["provider"] == "scripted" else f"{row['first_call_ms']:.0f}"
    ratio = "—" if row["provider"] == "scripted" or row["ratio"] is None else f"{row['ratio']:.1f}×"
    return [row["provider"], str(row["agents"]), f"{row['ready_ms']:.0f}", first, f"{row['worker_cpu_ms']:.1f}",
            f"{row['floor_ms']:.0f}", ratio]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,32,256", help="team sizes, comma-separated (default 1,32,256)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per size and provider (default 2)")
    parser.add_argument("--latency", type=float, default=600.0, help="seconds each generation is held (default 600)")
    add_agents_per_process(parser)
    parser.add_argument("--markdown", action="store_true", help="the table as Markdown, for the README")
    args = parser.parse_args(argv)
    global PER_PROCESS
    PER_PROCESS = args.agents_per_process
    began = time.monotonic()
    rows = bench(positive_ints(parser, "--sizes", args.sizes), args.repeat, args.latency)
    print(render_table(HEADERS, [cells(row) for row in rows], args.markdown))
    print(f"\n{machine()}{packing_said(PER_PROCESS)}; {time.monotonic() - began:.0f} s. "
          "scripted: no server, so its first call is its first cycle, at ready.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
