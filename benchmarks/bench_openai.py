"""The embedded model over OpenAI's API through the whole tree, against xllamacpp called directly, in one run.

1. Tokens per second: one agent generating `tokens` tokens per cycle through
   supervisor -> worker -> openai client -> server-sent events -> the embedded
   server's /v1/chat/completions -> xllamacpp, against the same model, threads
   and requests (read back from the agent's checkpoint) called in process,
   rounds interleaved as in bench_embedded.py. Both count completion tokens
   over the whole call's wall time (prompt included); the overhead is taken
   pairwise, cycle against its own request.
2. Immediate stop with real generation in flight over the same API: from the
   second SIGINT to the supervisor's exit (every worker and the model server gone).

    python benchmarks/bench_openai.py [--tokens 256] [--cycles 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_embedded import _backend, direct, immediate_stop, through_the_tree  # noqa: E402

TARGET = 10.0  # % overhead at most, as for the Ollama path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stops", type=int, default=3, help="immediate stops to time (0: skip)")
    args = parser.parse_args()
    backend = _backend()
    tree: list[float] = []
    bare: list[float] = []
    for _ in range(args.rounds):  # interleaved, so that the machine's drift hits both sides alike
        rates, requests = through_the_tree(args.tokens, args.cycles, api="openai")
        tree += rates
        bare += direct(backend, requests, args.tokens)
    overhead = [(b - t) / b * 100.0 for t, b in zip(tree, bare)]
    stops = [immediate_stop("openai") for _ in range(args.stops)]
    samples = args.rounds * args.cycles
    verdict = "PASS" if statistics.median(overhead) <= TARGET else "MISS"
    print("| measure | through the tree, OpenAI API | xllamacpp direct (floor) | overhead | target |")
    print("| --- | --: | --: | --: | --- |")
    print(f"| tokens/s, {args.tokens}-token replies, same requests, median of {samples} | {statistics.median(tree):.1f} | "
          f"{statistics.median(bare):.1f} | {statistics.median(overhead):.1f}% (worst {max(overhead):.1f}%) | "
          f"≤ {TARGET:g}% {verdict} |")
    if stops:
        print(f"| immediate stop, 2 agents generating: 2nd SIGINT to exit, ms (median / worst of {len(stops)}) | "
              f"{statistics.median(stops):.0f} / {max(stops):.0f} | — | — | — |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
