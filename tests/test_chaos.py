"""Chaos: randomized interrupts and kills at random moments, then resume to the end.

Each trial runs a fresh team through a few runs. Every run gets one fault at a
random moment (Ctrl+C, double Ctrl+C, SIGTERM, SIGKILL of the supervisor), and
sometimes a SIGKILL of a random worker first (which the supervisor restarts).
After every run: no process is left, every checkpoint on disk verifies, and none
was ever reported corrupt. At the end the team is resumed to completion and each
conversation must hold exactly one reply per cycle. Bounded: a fixed number of
trials with a fixed seed, each run bounded by the harness's hang timeout.
"""

from __future__ import annotations

import random
import signal
from collections import Counter

import psutil

from harness import by_event, gone, wait_gone

TRIALS = 50
MAX_CYCLES = 12
FAULTS = ["ctrl_c", "double_ctrl_c", "sigterm", "kill_supervisor"]
EXPECTED_EXIT = {"ctrl_c": 0, "double_ctrl_c": 1, "sigterm": 0, "kill_supervisor": -signal.SIGKILL}


def _kill_a_worker(run, rng: random.Random) -> bool:
    started = by_event(run.new_events(), "worker_started")
    latest = {e["agent_id"]: e["pid"] for e in started}
    alive = [pid for pid in latest.values() if not gone([pid])]
    if not alive:
        return False
    try:
        psutil.Process(rng.choice(alive)).kill()
    except psutil.NoSuchProcess:
        return False
    return True


def _check_storage(team) -> None:
    for name in team.names:
        store = team.store(name)
        for info in store.list():
            store.verify(info.checkpoint_id)  # raises on a corrupt checkpoint
        team.assert_exactly_once(name, may_be_empty=True)
    assert by_event(team.events(), "checkpoint_corrupt") == []


def test_chaos(make_team, capsys):
    rng = random.Random(20261124)
    injected: Counter[str] = Counter()
    held: Counter[str] = Counter()
    for _ in range(TRIALS):
        team = make_team(latency=rng.choice([0.02, 0.05, 0.1]), max_cycles=MAX_CYCLES, every=rng.randint(1, 3))
        for _ in range(rng.randint(1, 3)):
            run = team.start()
            run.wait_all_started()
            family = [p.pid for p in run.descendants()]
            if rng.random() < 0.4:
                run.wait_cycles(rng.randint(0, 3))
                if _kill_a_worker(run, rng):
                    injected["kill_worker"] += 1
                    # Its restart comes first: a crash during a stop is a failure (exit 3), by design.
                    run.wait_for(lambda ev: by_event(ev, "worker_restarted"), "the killed worker's restart")
                    held["worker_restarted"] += 1
            run.wait_cycles(rng.randint(0, 6))
            if run.proc.poll() is not None:  # it finished before the fault: a clean run
                assert run.wait() == 0, run.output
                held["completed_before_fault"] += 1
                break
            fault = rng.choice(FAULTS)
            injected[fault] += 1
            if fault == "sigterm":
                run.signal(signal.SIGTERM)
            elif fault == "kill_supervisor":
                family = list({*family, *(p.pid for p in run.descendants())})
                run.signal(signal.SIGKILL)
            else:
                run.ctrl_c()
                if fault == "double_ctrl_c":
                    run.wait_for(lambda ev: by_event(ev, "interrupt_initiated"), "the first interrupt")
                    run.ctrl_c()
            code = run.wait()
            # A run that completed in the instant before the signal landed exits 0.
            assert code in (EXPECTED_EXIT[fault], 0), f"{fault}: exit {code}\n{run.output}"
            wait_gone(family, 2)
            held["no_process_left"] += 1
            _check_storage(team)
            held["checkpoints_valid"] += 1
        final = team.run()
        assert final.proc.returncode == 0, final.output
        for name in team.names:
            assert team.assert_exactly_once(name, MAX_CYCLES).status == "completed"
        assert by_event(team.events(), "checkpoint_corrupt") == []
        held["exactly_once"] += 1
    with capsys.disabled():
        print(f"\nchaos: {TRIALS} trials; injected {dict(sorted(injected.items()))}; held {dict(sorted(held.items()))}")
    assert held["exactly_once"] == TRIALS
