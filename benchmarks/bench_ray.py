"""The Ray backend beside the local one: same machine, same run, same steps.

Run: `python benchmarks/bench_ray.py [--workers 8,32] [--markdown]` (needs `pip install '.[ray]'`).

For each team size, both backends run the steps of `bench_interrupts.py` through
the real product (`python -m supervisor`, synchronised on `events.jsonl`):

  ready      exec to the last worker_started (a local Ray started for the run included)
  ack        Ctrl+C to the last worker's acknowledgement
  graceful   process exit minus the end of the in-flight cycle
  immediate  second Ctrl+C to every process of the run gone
  memory     USS of the supervisor and everything it started, every worker ready

and then what a SIGKILL of the supervisor leaves: with a local Ray, the time
until none of its processes is left; on a cluster (`ray.cluster_utils.Cluster`,
three nodes on this machine), the time until the team's workers are gone, the
cluster itself living on. The goal: a stop never more than 100 ms slower than
the local backend's at 32 agents.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_interrupts as steps  # noqa: E402
from harness import TeamRun  # noqa: E402

GOAL_MS = 100.0  # a Ray stop at 32 agents may be at most this much slower than a local one


def progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def memory_run(workers: int) -> dict[str, float]:
    """USS of the whole tree once every worker is ready (a local Ray's processes included), in MB."""
    with TeamRun(steps.team(workers, 30.0), "bench-ray-mem-", steps.TMP_ROOT) as run:
        run.wait_started(workers, timeout=600)
        time.sleep(1.0)  # Ray's helpers settle
        tree = [psutil.Process(run.pid), *psutil.Process(run.pid).children(recursive=True)]
        total = 0.0
        for process in tree:
            try:
                total += process.memory_full_info().uss
            except psutil.Error:
                pass
        os.kill(run.pid, signal.SIGINT)
        os.kill(run.pid, signal.SIGINT)
        run.wait_exit(60)
        return {"tree_mb": total / 1e6, "processes": float(len(tree))}


def kill_run(workers: int, extra: dict[str, Any]) -> dict[str, Optional[float]]:
    """SIGKILL the supervisor once every worker is ready: seconds until its workers, then its whole tree, are gone."""
    config = {**steps.team(workers, 30.0), **extra}
    with TeamRun(config, "bench-ray-kill-", steps.TMP_ROOT) as run:
        ready = run.wait_started(workers, timeout=600)
        workers_pids = [int(e["pid"]) for e in ready]
        tree = run.process_tree(workers_pids)
        procs = [psutil.Process(pid) for pid in tree if psutil.pid_exists(pid)]
        killed = time.monotonic()
        os.kill(run.pid, signal.SIGKILL)
        run.proc.wait()  # type: ignore[union-attr]
        gone: dict[int, float] = {}
        while len(gone) < len(procs) and time.monotonic() - killed < 60:
            for process in procs:
                if process.pid not in gone and not _running(process):
                    gone[process.pid] = time.monotonic() - killed
            time.sleep(0.02)
        worker_times = [gone.get(pid) for pid in workers_pids]
        return {
            "workers_gone_s": max(worker_times) if None not in worker_times else None,  # type: ignore[type-var]
            "tree_gone_s": max(gone.values()) if len(gone) == len(procs) else None,
            "left_after_60s": float(len(procs) - len(gone)),
        }


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def one_size(workers: int) -> list[dict[str, Any]]:
    rows = []
    for backend in ("local", "ray"):
        steps.TEAM_EXTRA = {"backend": backend}
        progress(f"{backend}, {workers} agents: graceful")
        graceful = steps.graceful_run(workers)
        progress(f"{backend}, {workers} agents: immediate")
        immediate = steps.immediate_run(workers)
        progress(f"{backend}, {workers} agents: memory")
        memory = memory_run(workers)
        rows.append({"backend": backend, "workers": workers, "ready_ms": graceful["startup_ms"],
                     "ack_ms": graceful["ack_ms"], "graceful_ms": graceful["graceful_ms"],
                     "immediate_ms": immediate["immediate_ms"], **memory,
                     "anomaly": graceful.get("anomaly") or immediate.get("anomaly")})
    steps.TEAM_EXTRA = {}
    return rows


def cluster_kill(workers: int) -> dict[str, Optional[float]]:
    """The team on a three-node cluster, its supervisor SIGKILLed: until its workers are gone (the cluster lives on)."""
    from ray.cluster_utils import Cluster

    os.makedirs("/tmp/ray", exist_ok=True)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 << 20,
                                                            "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1, object_store_memory=100 << 20)
    cluster.wait_for_nodes()
    try:
        result = kill_run(workers, {"backend": "ray", "ray": {"address": cluster.address}})
        result["cluster_alive"] = float(cluster.remaining_processes_alive())
        return result
    finally:
        cluster.shutdown()


def _num(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="8,32")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.workers.split(",")]
    rows = [row for size in sizes for row in one_size(size)]
    bar = "|" if args.markdown else " "
    print(f"{bar} backend | agents | ready ms | ack ms | graceful ms | immediate ms | tree USS MB | processes {bar}".strip())
    if args.markdown:
        print("| --- | --: | --: | --: | --: | --: | --: | --: |")
    for row in rows:
        cells = [row["backend"], str(row["workers"]), _num(row["ready_ms"]), _num(row["ack_ms"]),
                 _num(row["graceful_ms"]), _num(row["immediate_ms"]), _num(row["tree_mb"]), f"{row['processes']:.0f}"]
        print(f"{bar} " + " | ".join(cells) + f" {bar}".rstrip() if args.markdown else "  ".join(cells))
        if row["anomaly"]:
            print(f"  anomaly: {row['anomaly']}")
    print()
    for size in sizes:
        local = next(r for r in rows if r["backend"] == "local" and r["workers"] == size)
        ray = next(r for r in rows if r["backend"] == "ray" and r["workers"] == size)
        for step in ("ack_ms", "graceful_ms", "immediate_ms"):
            if local[step] is not None and ray[step] is not None:
                slower = ray[step] - local[step]
                verdict = "" if size != 32 else (" PASS" if slower <= GOAL_MS else " MISS")
                print(f"{size} agents, {step[:-3]}: Ray {slower:+.0f} ms beside local (goal at 32: <= +{GOAL_MS:g} ms){verdict}")
    progress("SIGKILL of the supervisor, local Ray")
    local_ray = kill_run(8, {"backend": "ray"})
    print(f"\nSIGKILL, local Ray, 8 agents: workers gone after {_num(local_ray['workers_gone_s'])} s, "
          f"every process of the run after {_num(local_ray['tree_gone_s'])} s, left after 60 s: {local_ray['left_after_60s']:.0f}")
    progress("SIGKILL of the supervisor, 3-node cluster")
    on_cluster = cluster_kill(8)
    print(f"SIGKILL, 3-node cluster, 8 agents: workers gone after {_num(on_cluster['workers_gone_s'])} s; "
          f"the cluster alive after: {bool(on_cluster['cluster_alive'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
