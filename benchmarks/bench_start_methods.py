"""Which `multiprocess` start method should start workers? Measured, not guessed.

For each start method, start N processes whose target needs the worker code
(`workers.agent_loop` imported) and writes one byte to its pipe; time from the
first `start()` to the last byte. `fork` inherits the parent's imports,
`forkserver` forks from a server that preloaded them, `spawn` imports them in
every child. The server's own boot (exec, preload, first child) is reported
apart, since the supervisor pays it once per run and overlaps it with its own
start-up.

    python benchmarks/bench_start_methods.py [--workers 8,32] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PRELOAD = ["workers.entry", "workers.agent_loop", "protocol.checkpoints", "workers.providers.scripted"]


def ready_target(conn: Any) -> None:
    """What a worker needs before it can say 'ready': its modules, then one byte.

    The pipe end travels as a Connection so that it reaches forkserver and
    spawn children too (a bare fd number means nothing in a process that did
    not inherit it).
    """
    import workers.agent_loop  # noqa: F401  (inherited, preloaded or imported, per method)

    conn.send_bytes(b"r")
    os._exit(0)


def time_start(method: str, count: int) -> tuple[float, float]:
    """(server boot ms, ms from the first start() to the last worker ready)."""
    import multiprocess

    ctx = multiprocess.get_context(method)
    boot = 0.0
    if method == "forkserver":
        from multiprocess import forkserver

        ctx.set_forkserver_preload(PRELOAD)
        began = time.perf_counter()
        forkserver.ensure_running()
        _start_and_wait(ctx, 1)  # the server answers only once its preload is imported
        boot = (time.perf_counter() - began) * 1000.0
    if method == "fork":
        import importlib

        importlib.import_module("workers.agent_loop")  # a fork inherits what the parent imported
    return boot, _start_and_wait(ctx, count)


def _start_and_wait(ctx: Any, count: int) -> float:
    """ms from the first start() to the last worker's byte."""
    read_end, write_end = ctx.Pipe(duplex=False)
    began = time.perf_counter()
    procs = [ctx.Process(target=ready_target, args=(write_end,)) for _ in range(count)]
    for proc in procs:
        proc.start()
    for _ in range(count):
        if not read_end.poll(60):
            raise RuntimeError("a worker never said ready")
        read_end.recv_bytes()
    elapsed = (time.perf_counter() - began) * 1000.0
    for proc in procs:
        proc.join()
    read_end.close()
    write_end.close()
    return elapsed


def measure_in_fresh_process(method: str, workers: int) -> tuple[float, float]:
    """Each sample in a new interpreter, so no method inherits another's warm state."""
    import json
    import subprocess

    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r});"
        f"import bench_start_methods as b; print(json.dumps(b.time_start({method!r}, {workers})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    boot, elapsed = json.loads(out.stdout.strip().splitlines()[-1])
    return float(boot), float(elapsed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="8,32")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(n) for n in args.workers.split(",")]
    rows: list[dict[str, Any]] = []
    for workers in sizes:
        for method in ("fork", "forkserver", "spawn"):
            samples = [measure_in_fresh_process(method, workers) for _ in range(args.repeat)]
            rows.append(
                {
                    "method": method,
                    "workers": workers,
                    "boot": statistics.median(s[0] for s in samples),
                    "ready": statistics.median(s[1] for s in samples),
                    "worst": max(s[1] for s in samples),
                }
            )
            print(f"  {method} x{workers} done", file=sys.stderr)
    print("| start method | N | server boot ms | start to all ready ms (median) | worst ms |")
    print("| --- | --: | --: | --: | --: |")
    for row in rows:
        boot = f"{row['boot']:.1f}" if row["method"] == "forkserver" else "-"
        print(f"| {row['method']} | {row['workers']} | {boot} | {row['ready']:.1f} | {row['worst']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
