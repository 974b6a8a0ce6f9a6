"""How fast the supervisor reacts to Ctrl+C, next to what the machine allows.

Run: `python benchmarks/bench_interrupts.py [--workers 1,8,32,128] [--repeat R] [--agents-per-process K] [--json | --markdown]`

Every step is measured twice in the same run: once through the real product
(`python -m supervisor CONFIG` as a subprocess, synchronised on the lines of
its `events.jsonl`, never on sleeps) and once as a FLOOR, the bare
fork-and-pipe version of the same step written with os.fork/os.pipe or a bare
`multiprocess` forkserver (see `_floors.py`). A number alone says little on a
2-core VM; the ratio to the floor says how much the product adds.

Steps (targets from the issue):
  ack         Ctrl+C to the last worker's acknowledgement      <= 3x floor
  graceful    process exit minus the end of the in-flight cycle <= 50 ms
  immediate   second Ctrl+C to every process gone               <= 200 ms at 8, <= 500 ms at 32
  startup     Popen to the last worker ready                    <= 300 ms at 8
  spawn       supervisor_started to the last worker ready       (no target)
  checkpoint  one save of a 200-message conversation, p50/p99   <= 5 ms
  import      `python -c "import supervisor"`                   < 150 ms
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _floors  # noqa: E402  (needs HERE on sys.path)
from harness import TeamRun, add_agents_per_process, agents, packing, positive_ints, timestamp  # noqa: E402

TEAM = "bench"
SETTLE = 0.3  # seconds between "every worker ready" and Ctrl+C: workers are idle in their LLM call
GRACEFUL_LATENCY = 2.0  # seconds per scripted reply in the ack/graceful runs
IMMEDIATE_LATENCY = 30.0  # long enough that every reply is in flight at the second Ctrl+C
ACK_WAIT = 0.2  # immediate runs: longest wait for the graceful acks before the second Ctrl+C
IMPORT_RUNS = 10
CHECKPOINT_SAVES = 200
CHECKPOINT_MESSAGES = 200
GRACEFUL_FLOOR_BYTES = 50_000
FLOOR_MIN_REPEATS = 5  # floors are cheap: take at least this many for a stable median
TMP_ROOT = "/tmp"


def progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: an observed value, no interpolation to flatter the tail."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


# ---- watching the product --------------------------------------------------------------


class ExitWatch:
    """When each watched pid is gone (exited; a zombie counts as gone), to the event.

    Uses pidfds: the kernel makes one readable the moment its process exits, so
    there is no polling interval in the measure. Without pidfd_open it falls
    back to psutil at ~1 ms.
    """

    def __init__(self, pids: list[int]) -> None:
        self.gone: dict[int, float] = {}
        self.fds: dict[int, int] = {}
        self.fallback: dict[int, psutil.Process] = {}
        self.poller = select.poll()
        for pid in dict.fromkeys(pids):
            try:
                fd = os.pidfd_open(pid)  # type: ignore[attr-defined]
            except ProcessLookupError:
                self.gone[pid] = time.time()
                continue
            except (AttributeError, OSError):
                try:
                    self.fallback[pid] = psutil.Process(pid)
                except psutil.NoSuchProcess:
                    self.gone[pid] = time.time()
                continue
            self.fds[fd] = pid
            self.poller.register(fd, select.POLLIN)

    def _look(self, timeout: float) -> None:
        wait_ms = 1 if self.fallback else max(0, int(timeout * 1000))
        for fd, _ in self.poller.poll(wait_ms if self.fds else 0):
            self.gone[self.fds.pop(fd)] = time.time()
            self.poller.unregister(fd)
            os.close(fd)
        for pid, process in list(self.fallback.items()):
            try:
                dead = process.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                dead = True
            if dead:
                self.gone[pid] = time.time()
                del self.fallback[pid]
        if self.fallback and not self.fds:
            time.sleep(0.001)

    def wait(self, pids: list[int], deadline: float) -> Optional[float]:
        """The time the last of `pids` went, or None if one is still there at `deadline`."""
        while any(pid not in self.gone for pid in pids):
            remaining = deadline - time.time()
            if remaining <= 0:
                return None
            self._look(min(remaining, 0.5))
        return max((self.gone[pid] for pid in pids), default=time.time())

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


TEAM_EXTRA: dict[str, Any] = {}  # keys every team of this run gets (bench_ray.py: the backend)


def team(workers: int, latency: float) -> dict[str, Any]:
    """A team of `workers` scripted agents that would run for days."""
    return {
        **TEAM_EXTRA,
        "team": TEAM,
        "llm": {"provider": "scripted", "latency": latency},
        "checkpoint": {"every": 1, "keep": 20, "compress": True},
        "shutdown": {"graceful_timeout": 60, "immediate_timeout": 2},
        "agents": agents(workers, task="Count from 1 upwards, five numbers per cycle.", max_cycles=100_000, name="agent-{:03d}"),
    }


def start(workers: int, latency: float) -> TeamRun:
    """One real `python -m supervisor` run of `team(workers, latency)` in a fresh folder under TMP_ROOT."""
    return TeamRun(team(workers, latency), "bench-interrupts-", TMP_ROOT)


def acks_of(events: list[dict[str, Any]], interrupt_id: int) -> list[dict[str, Any]]:
    """The workers' acknowledgements of interrupt `interrupt_id` (the team's own line is not one)."""
    return [
        e
        for e in events
        if e["event"] == "interrupt_initiated" and e.get("agent_id") != TEAM and e.get("interrupt_id") == interrupt_id
    ]


def _first(events: list[dict[str, Any]], name: str) -> Optional[dict[str, Any]]:
    return next((e for e in events if e["event"] == name), None)


def _last_ts(events: list[dict[str, Any]], name: str, after: float = 0.0) -> Optional[float]:
    times = [timestamp(e) for e in events if e["event"] == name and timestamp(e) >= after]
    return max(times) if times else None


def _first_ts_after(events: list[dict[str, Any]], name: str, after: float) -> Optional[float]:
    times = [timestamp(e) for e in events if e["event"] == name and timestamp(e) >= after]
    return min(times) if times else None


def _ms(later: Optional[float], earlier: Optional[float]) -> Optional[float]:
    if later is None or earlier is None:
        return None
    return (later - earlier) * 1000.0


def _startup(run: TeamRun, ready: list[dict[str, Any]]) -> dict[str, Optional[float]]:
    last_ready = max(timestamp(e) for e in ready)
    started = _first(run.events, "supervisor_started")
    return {
        "startup_ms": _ms(last_ready, run.popen_at),
        "spawn_ms": _ms(last_ready, timestamp(started) if started else None),
        "popen_to_supervisor_started_ms": _ms(timestamp(started) if started else None, run.popen_at),
    }


def graceful_run(workers: int) -> dict[str, Any]:
    """Steps ack, graceful (and startup): one Ctrl+C while every worker is mid-reply."""
    with start(workers, GRACEFUL_LATENCY) as run:
        assert run.proc is not None
        ready = run.wait_started(workers)
        time.sleep(SETTLE)
        worker_pids = [int(e["pid"]) for e in ready]
        tree = run.process_tree(worker_pids)
        watch = ExitWatch([run.proc.pid, *tree])
        try:
            t0 = time.time()
            os.kill(run.proc.pid, signal.SIGINT)
            exited_at = watch.wait([run.proc.pid], t0 + GRACEFUL_LATENCY + 60)
            if exited_at is None:
                raise run.failed(f"the supervisor did not exit after a graceful Ctrl+C (N={workers})")
            returncode = run.proc.wait()
            tree_gone = watch.wait(tree, time.time() + 3.0)
        finally:
            watch.close()
        run.poll()
        events = run.events
        acks = acks_of(events, 1)
        issued = next((e for e in events if e["event"] == "interrupt_initiated" and e.get("agent_id") == TEAM), None)
        last_cycle = _last_ts(events, "cycle_completed", after=t0)
        result: dict[str, Any] = {
            "returncode": returncode,
            "acks": len(acks),
            # SIGINT to the supervisor's issue, plus issue to the last ack's arrival (stamped on read,
            # before the supervisor spends time logging the acks that came before it)
            "ack_ms": (
                (float(issued["issued_at"]) - t0) * 1000.0 + max(float(e["ack_ms"]) for e in acks)
                if issued is not None and len(acks) == workers
                else None
            ),
            "max_ack_ms": max((float(e["ack_ms"]) for e in acks), default=None),
            "signal_to_issue_ms": (float(issued["issued_at"]) - t0) * 1000.0 if issued else None,
            "graceful_ms": _ms(exited_at, last_cycle),
            # where the graceful time goes, each from the end of the last in-flight cycle
            "last_cycle_to_last_checkpoint_ms": _ms(_last_ts(events, "checkpoint_saved", after=t0), last_cycle),
            "last_cycle_to_last_interrupt_completed_ms": _ms(_last_ts(events, "interrupt_completed"), last_cycle),
            "last_cycle_to_last_worker_exited_ms": _ms(_last_ts(events, "worker_exited"), last_cycle),
            "last_cycle_to_supervisor_stopped_ms": _ms(_last_ts(events, "supervisor_stopped"), last_cycle),
            "in_flight_cycle_ms": _ms(last_cycle, t0),
            "cycle_end_spread_ms": _ms(last_cycle, _first_ts_after(events, "cycle_completed", t0)),
            "tree_gone_after_exit_ms": _ms(tree_gone, exited_at),
            "processes_in_tree": len(tree),
            **_startup(run, ready),
        }
        if returncode != 0:
            result["anomaly"] = f"graceful run exited with code {returncode}, expected 0"
        elif tree_gone is None:
            result["anomaly"] = "a process the supervisor started was still there 3 s after it exited"
        elif len(acks) != workers:
            result["anomaly"] = f"only {len(acks)} of {workers} workers acknowledged the graceful interrupt"
        return result


def immediate_run(workers: int) -> dict[str, Any]:
    """Step immediate (and startup): Ctrl+C, then a second one while every reply is in flight."""
    with start(workers, IMMEDIATE_LATENCY) as run:
        assert run.proc is not None
        ready = run.wait_started(workers)
        time.sleep(SETTLE)
        worker_pids = [int(e["pid"]) for e in ready]
        tree = run.process_tree(worker_pids)
        watch = ExitWatch([run.proc.pid, *tree])
        try:
            os.kill(run.proc.pid, signal.SIGINT)
            deadline = time.time() + ACK_WAIT
            while len(acks_of(run.events, 1)) < workers and time.time() < deadline:
                run.poll()
                time.sleep(0.001)
            acked = len(acks_of(run.events, 1))
            t1 = time.time()
            os.kill(run.proc.pid, signal.SIGINT)
            gone_at = watch.wait([run.proc.pid, *worker_pids], t1 + 10.0)
            tree_gone = watch.wait(tree, t1 + 10.0)
            returncode = run.proc.wait(timeout=5)
        finally:
            watch.close()
        run.poll()
        events = run.events
        workers_gone = max((watch.gone[pid] for pid in worker_pids if pid in watch.gone), default=None)
        result: dict[str, Any] = {
            "returncode": returncode,
            "graceful_acks_before_second": acked,
            "immediate_ms": _ms(gone_at, t1),
            "workers_gone_ms": _ms(workers_gone, t1),
            "supervisor_exit_ms": _ms(watch.gone.get(run.proc.pid), t1),
            "tree_gone_ms": _ms(tree_gone, t1),
            "second_to_last_ack_ms": _ms(max((timestamp(e) for e in acks_of(events, 2)), default=None), t1),
            "second_to_last_worker_exited_ms": _ms(_last_ts(events, "worker_exited"), t1),
            "second_to_supervisor_stopped_ms": _ms(_last_ts(events, "supervisor_stopped"), t1),
            "processes_in_tree": len(tree),
            **_startup(run, ready),
        }
        if gone_at is None:
            result["anomaly"] = "some process was still there 10 s after the second Ctrl+C"
        elif returncode != 1:
            result["anomaly"] = f"immediate run exited with code {returncode}, expected 1"
        elif tree_gone is None:
            result["anomaly"] = "the forkserver was still there 10 s after the second Ctrl+C"
        return result


# ---- steps that do not need a team ------------------------------------------------------


def forkserver_floor(workers: int) -> dict[str, float]:
    """The bare forkserver floor, in a fresh interpreter so each repeat pays its own boot."""
    # `-c`, not the script path: a script would be re-imported as __mp_main__ in every child,
    # a cost the product (run with -m) does not pay.
    code = f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import _floors; print(json.dumps(_floors.forkserver_floor({workers})))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(out.stdout)


def conversation(count: int) -> list[dict[str, str]]:
    """A deterministic conversation of `count` messages, ~350 bytes of JSON each, prose-like so gzip works as on real text."""
    rng = random.Random(20240611)
    words = (
        "the agent counts numbers and reports each cycle with care while the supervisor keeps a durable "
        "checkpoint of every reply so that a resume never repeats work nor loses a completed step in order "
        "five six seven eight nine ten eleven twelve thirteen fourteen fifteen plan tool result summary next"
    ).split()
    messages = [{"role": "system", "content": "You are a careful agent. " + " ".join(rng.choices(words, k=40))}]
    for index in range(1, count):
        role = "user" if index % 2 else "assistant"
        messages.append({"role": role, "content": f"cycle {index}: " + " ".join(rng.choices(words, k=52))})
    return messages


def checkpoint_step() -> dict[str, Any]:
    """Step checkpoint: CheckpointStore.save of a 200-message conversation, interleaved with the bare durable write of the same size."""
    from protocol.checkpoints import CheckpointStore

    folder = Path(tempfile.mkdtemp(prefix="bench-checkpoints-", dir=TMP_ROOT))
    try:
        messages = conversation(CHECKPOINT_MESSAGES)
        json_bytes = sum(len(json.dumps(m, separators=(",", ":"), ensure_ascii=False)) + 1 for m in messages)
        store = CheckpointStore(folder, "a", keep=20)
        store.open_for_writing()
        floor_dir = folder / "floor"
        floor_dir.mkdir(mode=0o700)
        store.save(cycle=0, status="running", messages=messages)  # warm-up, not counted
        saves: list[float] = []
        floors: list[float] = []
        sizes: list[int] = []
        for cycle in range(1, CHECKPOINT_SAVES + 1):
            started = time.perf_counter()
            result = store.save(cycle=cycle, status="running", messages=messages, budget_spent_usd=0.0)
            saves.append((time.perf_counter() - started) * 1000.0)
            sizes.append(result.bytes)
            payload = os.urandom(result.bytes)
            started = time.perf_counter()
            _floors.durable_write(floor_dir, f"floor_{cycle:08d}.bin", payload)
            floors.append((time.perf_counter() - started) * 1000.0)
        return {
            "json_bytes": json_bytes,
            "file_bytes": int(statistics.median(sizes)),
            "save_ms": saves,
            "floor_ms": floors,
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def import_step() -> dict[str, list[float]]:
    """Step import: `python -c "import supervisor"` against `python -c "pass"`, interleaved, after one warm-up each."""

    def wall(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, stdin=subprocess.DEVNULL)
        return (time.perf_counter() - started) * 1000.0

    wall("pass")
    wall("import supervisor")
    floor, measured = [], []
    for _ in range(IMPORT_RUNS):
        floor.append(wall("pass"))
        measured.append(wall("import supervisor"))
    return {"import_ms": measured, "floor_ms": floor}


# ---- the table ---------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a step at one team size, its samples, its floor and its verdict."""

    step: str
    workers: Optional[int]
    samples: list[float]
    floor: list[float]
    target: str
    limit: Optional[float] = None  # ms; None: no target at this size
    judge: str = "median"  # which statistic meets the target: median, worst, or floor-ratio
    worst_label: str = "max"
    worst: Optional[float] = None  # overrides max(samples), e.g. a p99
    median_override: Optional[float] = None
    floor_override: Optional[float] = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> Optional[float]:
        if self.median_override is not None:
            return self.median_override
        return statistics.median(self.samples) if self.samples else None

    @property
    def worst_value(self) -> Optional[float]:
        if self.worst is not None:
            return self.worst
        return max(self.samples) if self.samples else None

    @property
    def floor_value(self) -> Optional[float]:
        if self.floor_override is not None:
            return self.floor_override
        return statistics.median(self.floor) if self.floor else None

    @property
    def ratio(self) -> Optional[float]:
        if self.median is None or not self.floor_value:
            return None
        return self.median / self.floor_value

    @property
    def result(self) -> str:
        if self.median is None:
            return "FAIL"  # a run produced no measure: see the notes
        if self.judge == "ratio":
            return "—" if self.ratio is None else ("PASS" if self.ratio <= 3.0 else "MISS")
        if self.limit is None:
            return "—"
        value = self.worst_value if self.judge == "worst" else self.median
        assert value is not None
        return "PASS" if value <= self.limit else "MISS"

    def cells(self) -> list[str]:
        return [
            self.step,
            "—" if self.workers is None else str(self.workers),
            _num(self.median),
            f"{_num(self.worst_value)} ({self.worst_label})" if self.worst_value is not None else "—",
            _num(self.floor_value),
            "—" if self.ratio is None else f"{self.ratio:.1f}×",
            self.target,
            self.result,
        ]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(median=self.median, worst=self.worst_value, floor_median=self.floor_value, ratio=self.ratio, result=self.result)
        for key in ("median_override", "floor_override"):
            data.pop(key)
        return data


HEADERS = ["step", "N", "median ms", "worst ms", "floor ms", "×floor", "target", "result"]


def _num(value: Optional[float]) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render_text(rows: list[Row]) -> str:
    table = [HEADERS] + [row.cells() for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    right = {1, 2, 3, 4, 5}

    def fmt(line: list[str]) -> str:
        return "  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))).rstrip()

    lines = [fmt(HEADERS), "  ".join("-" * w for w in widths)]
    lines += [fmt(row.cells()) for row in rows]
    return "\n".join(lines)


def render_markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "| " + " | ".join(["---", "--:", "--:", "--:", "--:", "--:", "---", "---"]) + " |"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


LEGEND = """\
ack: SIGINT to the last worker's ack arriving at the supervisor (issued_at + max ack_ms); floor: 1 byte down N pipes to N idle forked children, 1 byte back from each.
graceful: supervisor exit minus the last cycle_completed after the SIGINT; floor: N children end a 'cycle' together, each write+fsync+rename+fsync-dir 50 KB, last reap.
immediate: second SIGINT to every worker and the supervisor gone (zombie = gone), judged on the worst repeat; floor: 1 byte to N idle children that then _exit, last reap.
startup: Popen to the last worker_started; floor: `python -c pass` + bare forkserver boot + N bare starts. spawn: supervisor_started to the last worker_started; floor: boot + N starts.
checkpoint pQ: the Q-th percentile of {saves} CheckpointStore.save calls (worst = slowest save); floor: the same percentile of os.open O_EXCL+write+fsync+rename+fsync dir of as many bytes, interleaved.
import: median of {runs} runs of `python -c "import supervisor"`; floor: `python -c pass`. worst = max across repeats unless marked."""


def machine() -> dict[str, Any]:
    fs = next((p.fstype for p in psutil.disk_partitions(all=True) if p.mountpoint == _mount_of(TMP_ROOT)), "?")
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "tmp_filesystem": fs,
    }


def _mount_of(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


# ---- the run --------------------------------------------------------------------------------


def repeats_for(workers: int, forced: Optional[int]) -> int:
    if forced is not None:
        return forced
    return 3 if workers <= 32 else 1


def bench(worker_counts: list[int], forced_repeat: Optional[int]) -> tuple[list[Row], list[str], dict[str, Any]]:
    rows: list[Row] = []
    notes: list[str] = []
    raw: dict[str, Any] = {}

    progress("import: python -c 'import supervisor' vs 'pass'")
    imports = import_step()
    raw["import"] = imports
    interpreter_ms = statistics.median(imports["floor_ms"])

    progress(f"checkpoint: {CHECKPOINT_SAVES} saves of a {CHECKPOINT_MESSAGES}-message conversation")
    ckpt = checkpoint_step()
    raw["checkpoint"] = {k: v for k, v in ckpt.items()}
    saves, floors = ckpt["save_ms"], ckpt["floor_ms"]
    checkpoint_rows = [
        Row(
            f"checkpoint p{q}",
            None,
            saves,
            floors,
            "≤ 5 ms",
            limit=5.0,
            worst_label="max",
            median_override=percentile(saves, q),
            floor_override=percentile(floors, q),
            extra={"percentile": q, "json_bytes": ckpt["json_bytes"], "file_bytes": ckpt["file_bytes"]},
        )
        for q in (50, 99)
    ]
    notes.append(
        f"checkpoint: {ckpt['json_bytes'] / 1000:.0f} KB of JSON -> {ckpt['file_bytes'] / 1000:.1f} KB gzip; "
        f"save p50 {_num(percentile(saves, 50))} / p90 {_num(percentile(saves, 90))} / p99 {_num(percentile(saves, 99))} ms, "
        f"floor p50 {_num(percentile(floors, 50))} / p90 {_num(percentile(floors, 90))} / p99 {_num(percentile(floors, 99))} ms"
    )

    per_n: dict[int, dict[str, list[Any]]] = {}
    for workers in worker_counts:
        repeat = repeats_for(workers, forced_repeat)
        floor_repeat = max(repeat, FLOOR_MIN_REPEATS)
        runs: dict[str, list[Any]] = {"graceful": [], "immediate": [], "forkserver": [], "ack_floor": [], "graceful_floor": [], "immediate_floor": []}
        for index in range(repeat):
            progress(f"N={workers} run {index + 1}/{repeat}: graceful stop (latency {GRACEFUL_LATENCY:g}s)")
            result = graceful_run(workers)
            runs["graceful"].append(result)
            progress(
                f"  ack {_num(result['ack_ms'])} ms (max ack_ms {_num(result['max_ack_ms'])}), "
                f"graceful +{_num(result['graceful_ms'])} ms, startup {_num(result['startup_ms'])} ms"
            )
            progress(f"N={workers} run {index + 1}/{repeat}: immediate stop (latency {IMMEDIATE_LATENCY:g}s)")
            result = immediate_run(workers)
            runs["immediate"].append(result)
            progress(f"  all gone {_num(result['immediate_ms'])} ms after the second SIGINT, startup {_num(result['startup_ms'])} ms")
        progress(f"N={workers}: floors ({floor_repeat} repeats)")
        scratch = Path(tempfile.mkdtemp(prefix="bench-floors-", dir=TMP_ROOT))
        try:
            for index in range(floor_repeat):
                runs["ack_floor"].append(_floors.ack_floor(workers, SETTLE) * 1000.0)
                runs["immediate_floor"].append(_floors.immediate_floor(workers, SETTLE) * 1000.0)
                runs["graceful_floor"].append(_floors.graceful_floor(workers, scratch / f"g{index}", GRACEFUL_FLOOR_BYTES) * 1000.0)
                runs["forkserver"].append(forkserver_floor(workers))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        per_n[workers] = runs
        for kind in ("graceful", "immediate"):
            for result in runs[kind]:
                if "anomaly" in result:
                    notes.append(f"N={workers} {kind}: {result['anomaly']}")

    raw["teams"] = per_n

    def samples(workers: int, kind: str, key: str) -> list[float]:
        return [r[key] for r in per_n[workers][kind] if r.get(key) is not None]

    ack_rows, graceful_rows, immediate_rows, startup_rows, spawn_rows = [], [], [], [], []
    for workers in worker_counts:
        runs = per_n[workers]
        boot = [f["boot_ms"] for f in runs["forkserver"]]
        starts = [f["start_ms"] for f in runs["forkserver"]]
        ack_rows.append(
            Row("ack", workers, samples(workers, "graceful", "ack_ms"), runs["ack_floor"], "≤ 3× floor", judge="ratio",
                extra={"max_ack_ms": samples(workers, "graceful", "max_ack_ms"),
                       "signal_to_issue_ms": samples(workers, "graceful", "signal_to_issue_ms")})
        )
        graceful_rows.append(
            Row("graceful", workers, samples(workers, "graceful", "graceful_ms"), runs["graceful_floor"], "≤ +50 ms", limit=50.0,
                extra={k: samples(workers, "graceful", k) for k in (
                    "last_cycle_to_last_checkpoint_ms", "last_cycle_to_last_interrupt_completed_ms",
                    "last_cycle_to_last_worker_exited_ms", "last_cycle_to_supervisor_stopped_ms", "tree_gone_after_exit_ms")})
        )
        immediate_limit = {8: 200.0, 32: 500.0}.get(workers)
        immediate_rows.append(
            Row("immediate", workers, samples(workers, "immediate", "immediate_ms"), runs["immediate_floor"],
                f"≤ {immediate_limit:.0f} ms" if immediate_limit else "—", limit=immediate_limit, judge="worst",
                extra={k: samples(workers, "immediate", k) for k in (
                    "workers_gone_ms", "supervisor_exit_ms", "tree_gone_ms", "second_to_last_ack_ms",
                    "second_to_last_worker_exited_ms", "second_to_supervisor_stopped_ms")})
        )
        both = samples(workers, "graceful", "startup_ms") + samples(workers, "immediate", "startup_ms")
        full_floor = [interpreter_ms + b + s for b, s in zip(boot, starts)]
        startup_rows.append(
            Row("startup", workers, both, full_floor, "≤ 300 ms" if workers == 8 else "—", limit=300.0 if workers == 8 else None,
                extra={"popen_to_supervisor_started_ms": samples(workers, "graceful", "popen_to_supervisor_started_ms")
                       + samples(workers, "immediate", "popen_to_supervisor_started_ms"),
                       "floor_interpreter_ms": interpreter_ms, "floor_boot_ms": boot, "floor_starts_ms": starts})
        )
        spawn_rows.append(
            # The supervisor's own start-up of its workers (the 30 ms floor is of this step);
            # `startup` above adds the interpreter and the supervisor's imports to it.
            Row("spawn", workers, samples(workers, "graceful", "spawn_ms") + samples(workers, "immediate", "spawn_ms"),
                [b + s for b, s in zip(boot, starts)], "≤ 300 ms" if workers == 8 else "—",
                limit=300.0 if workers == 8 else None)
        )

        def g(key: str, workers: int = workers) -> str:
            return _num(_median(samples(workers, "graceful", key)))

        def i(key: str, workers: int = workers) -> str:
            return _num(_median(samples(workers, "immediate", key)))

        notes.append(
            f"N={workers} (medians, ms): ack: SIGINT -> team interrupt_initiated {g('signal_to_issue_ms')}, "
            f"max ack_ms {_num(max(samples(workers, 'graceful', 'max_ack_ms'), default=None))}; "
            f"graceful: last cycle -> last checkpoint_saved {g('last_cycle_to_last_checkpoint_ms')} -> supervisor_stopped "
            f"{g('last_cycle_to_supervisor_stopped_ms')} -> exit {g('graceful_ms')}, forkserver etc. gone {g('tree_gone_after_exit_ms')} after; "
            f"immediate: workers gone {i('workers_gone_ms')}, supervisor_stopped {i('second_to_supervisor_stopped_ms')}, "
            f"exit {i('supervisor_exit_ms')}, forkserver etc. gone {i('tree_gone_ms')}; "
            f"start-up: Popen -> supervisor_started {_num(_median(startup_rows[-1].extra['popen_to_supervisor_started_ms']))}, "
            f"bare forkserver boot {_num(statistics.median(boot))} + {workers} bare starts {_num(statistics.median(starts))}"
        )
    rows = ack_rows + graceful_rows + immediate_rows + startup_rows + spawn_rows
    rows += checkpoint_rows
    rows.append(Row("import", None, imports["import_ms"], imports["floor_ms"], "< 150 ms", limit=150.0))
    return rows, notes, raw


def _median(values: list[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,8,32,128", help="team sizes, comma-separated (default 1,8,32,128)")
    parser.add_argument("--repeat", type=int, help="runs per team size (default 3 for N<=32, 1 for 128)")
    add_agents_per_process(parser)
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON document on stdout instead of the table")
    output.add_argument("--markdown", action="store_true", help="the table as Markdown, for the README")
    parser.add_argument("--json-out", metavar="FILE", help="also write the JSON document (with raw samples) to FILE")
    args = parser.parse_args(argv)
    worker_counts = positive_ints(parser, "--workers", args.workers)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat needs a positive integer")
    TEAM_EXTRA.update(packing(args.agents_per_process))

    began = time.perf_counter()
    rows, notes, raw = bench(worker_counts, args.repeat)
    elapsed = time.perf_counter() - began
    info = machine()
    progress(f"done in {elapsed:.0f} s")
    legend = LEGEND.format(saves=CHECKPOINT_SAVES, runs=IMPORT_RUNS)
    document = {
        "machine": info,
        "settings": {
            "workers": worker_counts,
            "repeat": {str(n): repeats_for(n, args.repeat) for n in worker_counts},
            "settle_s": SETTLE,
            "graceful_latency_s": GRACEFUL_LATENCY,
            "immediate_latency_s": IMMEDIATE_LATENCY,
        },
        "elapsed_s": round(elapsed, 1),
        "rows": [row.as_dict() for row in rows],
        "notes": notes,
        "legend": legend.splitlines(),
        "raw": raw,
    }
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(document, indent=1, default=str) + "\n")
    if args.json:
        print(json.dumps(document, indent=1, default=str))
        return 0
    where = (
        f"{info['cpus']} CPUs, {info['memory_gib']} GiB, Python {info['python']}, Linux {info['kernel']}, "
        f"/tmp on {info['tmp_filesystem']}; repeats: "
        + ", ".join(f"N={n}: {repeats_for(n, args.repeat)}" for n in worker_counts)
    )
    if args.markdown:
        print(render_markdown(rows))
        print()
        print(where + ".")
        print()
        for line in legend.splitlines() + notes:
            print(f"- {line}")
    else:
        print(render_text(rows))
        print()
        print(where)
        for line in legend.splitlines() + notes:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
