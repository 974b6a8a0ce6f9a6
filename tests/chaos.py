"""The chaos trials, shared by `test_chaos.py` (the local backend) and `test_ray_cluster.py` (a Ray cluster).

What a trial does and what it checks is told in `test_chaos.py`.
"""

from __future__ import annotations

import random
import signal
from collections import Counter
from typing import Optional

import psutil

from harness import by_event, gone, wait_gone

MAX_CYCLES = 12
STRATEGIES = ["one_for_one", "one_for_all", "rest_for_one"]
FAULTS = ["ctrl_c", "double_ctrl_c", "sigterm", "kill_supervisor"]
EXPECTED_EXIT = {"ctrl_c": 0, "double_ctrl_c": 1, "sigterm": 0, "kill_supervisor": -signal.SIGKILL}


def _kill_a_child(run, rng: random.Random) -> tuple[str, str]:
    """SIGKILL a random live worker or group; returns (kind, name), or ("", "") if none was alive."""
    started = [e for e in run.new_events() if e["event"] in ("worker_started", "group_started")]
    latest = {e["agent_id"]: (e["pid"], e["event"].split("_")[0]) for e in started}
    alive = [(name, pid, kind) for name, (pid, kind) in latest.items() if not gone([pid])]
    if not alive:
        return "", ""
    name, pid, kind = rng.choice(alive)
    try:
        psutil.Process(pid).kill()
    except psutil.NoSuchProcess:
        return "", ""
    return kind, name


def inject(run, fault: str) -> None:
    """One of FAULTS, as a user or the system would deliver it."""
    if fault == "sigterm":
        run.signal(signal.SIGTERM)
    elif fault == "kill_supervisor":
        run.signal(signal.SIGKILL)
    else:
        run.ctrl_c()
        if fault == "double_ctrl_c":  # a Ctrl+C after the run's last moment is ignored: it may just have ended
            run.wait_for(lambda ev: by_event(ev, "interrupt_initiated") or run.proc.poll() is not None,
                         "the first interrupt or the run's end")
            if run.proc.poll() is None:  # not reaped yet, so its pid is still its own
                run.ctrl_c()


def _last_run(events: list) -> list:
    starts = [i for i, e in enumerate(events) if e["event"] == "supervisor_started"]
    return events[starts[-1]:] if starts else []


def _exit_fits(fault: str, code: int, events: list) -> bool:
    """The exit code the fault calls for, or exactly the one the run's own events justify instead.

    0 instead of -9 or 1 only when the run completed before the fault landed, or
    (double Ctrl+C) when the immediate stop found no worker still running.
    """
    stopped = by_event(events, "supervisor_stopped")
    completed = bool(stopped) and stopped[-1]["status"] == "completed"
    if fault == "kill_supervisor":
        return code == -signal.SIGKILL or (code == 0 and completed)
    if fault == "double_ctrl_c":
        team_immediate = [e for e in by_event(events, "interrupt_initiated")
                          if e["mode"] == "IMMEDIATE" and e.get("trigger") == "Ctrl+C"]
        forced = bool(team_immediate) and team_immediate[-1]["workers"] > 0
        return code == (1 if forced else 0)
    return code == 0 and bool(stopped)


def _restarted_or_done(run, kind: str, name: str) -> str:
    """Wait for the killed child's restart, or learn it had already finished its work.

    A child that said its last word (`stopped`, completed) a moment before the SIGKILL
    landed is done, not crashed: its supervisor rightly records it completed.
    """
    def outcome(events: list) -> str:
        mine = [e for e in events if e.get("agent_id") == name]
        if by_event(mine, f"{kind}_restarted"):
            return "restarted"
        if any(e["status"] == "completed" for e in by_event(mine, f"{kind}_exited")):
            return "finished_before_kill"
        return ""

    return run.wait_for(outcome, f"the killed {kind}'s restart")


def _cycles_or_exit(run, count: int) -> None:
    """Wait for `count` more cycles, or for the run to finish first (everything may be done)."""
    def ready(events: list) -> bool:
        return run.proc.poll() is not None or len(by_event(events, "cycle_completed")) >= count

    run.wait_for(ready, f"{count} cycles or the end of the run")


def _check_storage(team) -> None:
    for name in team.names:
        store = team.store(name)
        for info in store.list():
            store.verify(info.checkpoint_id)  # raises on a corrupt checkpoint
        team.assert_exactly_once(name, may_be_empty=True)
    assert by_event(team.events(), "checkpoint_corrupt") == []


def run_chaos(make_team, trials: int, seed: int, *, team_keys: Optional[dict] = None, settle: float = 2.0,
              runs: tuple[int, int] = (1, 3)) -> tuple[Counter, Counter]:
    """`trials` seeded trials; `team_keys` go into every team's config (a backend); `settle`: seconds every
    process of a run (its workers too, wherever they ran) has to be gone after it ends."""
    rng = random.Random(seed)
    injected: Counter[str] = Counter()
    held: Counter[str] = Counter()
    for _ in range(trials):
        grouped = rng.random() < 0.5
        team = make_team(
            agents=rng.randint(1, 2) if grouped else 3,
            latency=rng.choice([0.02, 0.05, 0.1]),
            max_cycles=MAX_CYCLES,
            every=rng.randint(1, 3),
            groups={"crew": {"agents": 2, "strategy": rng.choice(STRATEGIES)}} if grouped else None,
        )
        if team_keys:
            team.data.update(team_keys)
            team.write()
        injected["grouped_team"] += grouped
        for _ in range(rng.randint(*runs)):
            run = team.start()
            run.wait_all_started()
            family = [p.pid for p in run.descendants()]
            if rng.random() < 0.4:
                _cycles_or_exit(run, rng.randint(0, 3))
                kind, name = _kill_a_child(run, rng)
                if kind:
                    injected[f"kill_{kind}"] += 1
                    # Its restart comes first: a crash during a stop is a failure (exit 3), by design.
                    outcome = _restarted_or_done(run, kind, name)
                    held[f"{kind}_{outcome}"] += 1
            _cycles_or_exit(run, rng.randint(0, 6))
            if run.proc.poll() is not None:  # it finished before the fault: a clean run
                assert run.wait() == 0, run.output
                held["completed_before_fault"] += 1
                break
            fault = rng.choice(FAULTS)
            injected[fault] += 1
            family = list({*family, *(p.pid for p in run.descendants()), *_child_pids(run)})  # restarted ones too
            inject(run, fault)
            code = run.wait()
            assert _exit_fits(fault, code, _last_run(team.events())), f"{fault}: exit {code}\n{run.output}"
            wait_gone(family, settle)
            held["no_process_left"] += 1
            _check_storage(team)
            held["checkpoints_valid"] += 1
        final = team.run()
        assert final.proc.returncode == 0, final.output
        for name in team.names:
            assert team.assert_exactly_once(name, MAX_CYCLES).status == "completed"
        assert by_event(team.events(), "checkpoint_corrupt") == []
        held["exactly_once"] += 1
    return injected, held


def _child_pids(run) -> list[int]:
    """Every worker and group this run started, by its events: on a Ray cluster they are not our descendants."""
    return [e["pid"] for e in run.new_events() if e["event"] in ("worker_started", "group_started") and e.get("pid")]
