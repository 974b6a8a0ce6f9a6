"""How close can the start of N agents come to the fork floor? The floors of each way to run them.

Run: `python benchmarks/bench_start_floors.py [--sizes 32,128,1000] [--per-process 1,2,4,8] [--repeat 3] [--markdown]`

Each row is a fresh interpreter with the worker's modules that forks and waits for every agent to
say ready (exec to the last answer, `_floors.start_floor`), measured in the same run:

  fork floor   the issue's floor: one child per agent, which writes one byte and leaves.
  asyncio, k   one child per k agents; it runs one asyncio loop that reads a 100-byte frame on each of
               its agents' pipes and answers it. k = 1 is the design today: a process per agent.

No supervisor and no agent code runs here: these are what the machine and Python charge for the
shape alone. `bench_terminal.py` prints the k = 1 row beside the product's own start.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _floors  # noqa: E402  (needs HERE on sys.path)
from harness import REPO as ROOT, positive_ints, render_table  # noqa: E402  (importing it writes the bytecode the floors import)

REPO = str(ROOT)


def measure(sizes: list[int], per_process: list[int], repeat: int) -> list[list[str]]:
    rows = []
    for size in sizes:
        samples: dict[str, list[float]] = {}
        for _ in range(repeat):  # the variants alternate, so a drift of the machine touches them all alike
            samples.setdefault("fork floor", []).append(_floors.start_floor(size, repo=REPO))
            for k in per_process:
                samples.setdefault(f"asyncio, {k} per process", []).append(
                    _floors.start_floor(size, per_process=k, asyncio=True, repo=REPO))
        floor = statistics.median(samples["fork floor"])
        for name, values in samples.items():
            median = statistics.median(values)
            rows.append([str(size), name, f"{median:.0f}", f"{min(values):.0f}–{max(values):.0f}", f"{median / floor:.2f}×"])
    return rows


HEADERS = ["agents", "shape", "median ms", "min–max ms", "×fork floor"]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="32,128,1000", help="team sizes, comma-separated (default 32,128,1000)")
    parser.add_argument("--per-process", default="1,2,4,8", help="agents per process, comma-separated (default 1,2,4,8)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each row (default 3)")
    parser.add_argument("--markdown", action="store_true", help="the table as Markdown")
    args = parser.parse_args(argv)
    sizes = positive_ints(parser, "--sizes", args.sizes)
    per_process = positive_ints(parser, "--per-process", args.per_process)
    if args.repeat < 1:
        parser.error("--repeat needs a positive integer")
    print(render_table(HEADERS, measure(sizes, per_process, args.repeat), args.markdown, left=frozenset({1})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
