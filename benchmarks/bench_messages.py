"""Message latency between agents: from the sending cycle durable to `receive` returning, next to its floor.

A real team runs: half its agents send one message per cycle to a partner,
the other half receive them (`benchmarks/mail_agents.py`). Only messages sent
once every worker is up count: one sent earlier waits for its receiver to
start, which is start-up time, not the message's path. For each message,
the latency runs from the sender's checkpoint holding it (`durable_at` of the
sender's `checkpoint_saved` for that cycle, the worker's clock) to the wall
clock at which the receiver's `receive` returned it (recorded in the
receiver's checkpoint). Both clocks are this machine's `time.time()`.

The floor, measured in the same run: one checkpoint save of the same kind
(the real store, fsync and all, in the same file system) plus one pipe round
trip between two processes (a socketpair, one byte each way). A message's
path is the sender's save, then sender -> supervisor -> receiver: two hops of
one round trip.

    python benchmarks/bench_messages.py [--agents 8 32] [--cycles 40] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

from benchmarks.harness import STORAGE, TeamRun, named, timestamp  # noqa: E402
from protocol.checkpoints import CheckpointStore  # noqa: E402


def team(agents: int, cycles: int, pause: float) -> dict:
    pairs = agents // 2
    senders = [{"name": f"s{i}", "agent": "benchmarks.mail_agents:Sender", "task": "send", "max_cycles": cycles,
                "params": {"to": f"r{i}", "pause": pause}} for i in range(pairs)]
    receivers = [{"name": f"r{i}", "agent": "benchmarks.mail_agents:Receiver", "task": "receive",
                  "max_cycles": cycles} for i in range(pairs)]
    return {"team": "bench-messages", "llm": {"provider": "scripted", "latency": 0},
            "checkpoint": {"every": 1, "keep": 3, "compress": True}, "agents": senders + receivers}


def latencies(agents: int, cycles: int, pause: float) -> tuple[list[float], list[float]]:
    """Milliseconds from each message's durable send to its receive, and of that, to the router's `message_sent`."""
    with TeamRun(team(agents, cycles, pause), "bench-messages-") as run:
        code = run.wait_exit(timeout=120 + cycles * agents * 0.05)
        if code != 0:
            raise run.failed(f"the team exited {code}")
        durable = {(e["agent_id"], e["cycle"]): e["durable_at"] for e in named(run.events, "checkpoint_saved")}
        routed = {(e["agent_id"], e["seq"]): timestamp(e) for e in named(run.events, "message_sent")}
        # A message sent before its receiver is up waits for it, as it must: that is start-up, not the path.
        everyone_up = max(timestamp(e) for e in named(run.events, "worker_started"))
        found: list[float] = []
        to_router: list[float] = []
        for i in range(agents // 2):
            checkpoint = CheckpointStore(run.folder / STORAGE, f"r{i}").load_latest()
            assert checkpoint is not None, f"r{i} left no checkpoint"
            for sender, n, received in checkpoint.extra["state"]["got"]:
                if durable[(sender, n)] < everyone_up:
                    continue
                found.append((received - durable[(sender, n)]) * 1000.0)
                to_router.append((routed[(sender, n)] - durable[(sender, n)]) * 1000.0)
        return found, to_router


def save_floor(rounds: int) -> list[float]:
    """Milliseconds for one checkpoint save like a sender's (a short conversation, gzip, fsync, rename, fsync)."""
    with tempfile.TemporaryDirectory(prefix="bench-messages-floor-") as folder:
        store = CheckpointStore(Path(folder), "floor", keep=3, compress=True)
        store.open_for_writing()
        messages = [{"role": "system", "content": "x"}, {"role": "user", "content": "send"}]
        times = []
        for k in range(1, rounds + 1):
            messages.append({"role": "assistant", "content": f"cycle {k}: sent"})
            began = time.perf_counter()
            store.save(cycle=k, status="running", messages=messages, budget_spent_usd=0.0,
                       extra={"mail": {"outbox": [{"to": "r0", "seq": k, "content": {"n": k}}], "next_seq": {"r0": k}}})
            times.append((time.perf_counter() - began) * 1000.0)
        return times


def round_trip_floor(rounds: int) -> list[float]:
    """Milliseconds for one byte to another process and back, over a socketpair."""
    parent, child = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        parent.close()
        try:
            while data := child.recv(1):
                child.sendall(data)
        finally:
            os._exit(0)
    child.close()
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        parent.sendall(b"x")
        parent.recv(1)
        times.append((time.perf_counter() - began) * 1000.0)
    parent.close()
    os.waitpid(pid, 0)
    return times


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--cycles", type=int, default=40, help="messages per sender")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds a sender waits after each send")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each size (the floor is measured before each)")
    args = parser.parse_args()
    print(f"message latency, durable send -> receive returned; {args.cycles} messages per sender, "
          f"{args.repeats} runs per size; floor = median save + median round trip, same run")
    print(f"{'agents':>6} {'messages':>8} {'median ms':>10} {'p99 ms':>8} {'floor ms':>9} "
          f"{'(save':>6} {'+ rtt)':>7} {'median/floor':>13} {'p99/floor':>10} {'to router ms':>13}")
    for agents in args.agents:
        found: list[float] = []
        routed: list[float] = []
        floors: list[tuple[float, float]] = []
        for _ in range(args.repeats):
            save = statistics.median(save_floor(50))
            rtt = statistics.median(round_trip_floor(500))
            floors.append((save, rtt))
            latency, to_router = latencies(agents, args.cycles, args.pause)
            found += latency
            routed += to_router
        save = statistics.median(f[0] for f in floors)
        rtt = statistics.median(f[1] for f in floors)
        floor = save + rtt
        median = statistics.median(found)
        print(f"{agents:>6} {len(found):>8} {median:>10.2f} {p99(found):>8.2f} {floor:>9.2f} {save:>6.2f} {rtt:>7.3f} "
              f"{median / floor:>12.2f}x {p99(found) / floor:>9.2f}x {statistics.median(routed):>13.2f}")
    print("to router: durable send -> the root's message_sent line (median); the rest is the hop to the receiver")


if __name__ == "__main__":
    main()
