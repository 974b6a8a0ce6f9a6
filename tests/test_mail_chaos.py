"""Chaos for agents working together: a numbered pipeline under random stops and kills, resumed to the end.

Each trial runs producer -> relay -> consumer (in half the trials the relay and
the consumer run in a group) through one to three runs, each ended by a fault
at a random moment: Ctrl+C, double Ctrl+C, SIGTERM, SIGKILL of the
supervisor, sometimes after a SIGKILL of a random worker. After every run no
process is left and every checkpoint verifies; after the last run, resumed to
completion, the consumer received every number exactly once and in order,
and every agent did exactly its cycles. Seeded and bounded.
"""

from __future__ import annotations

import random
from collections import Counter

from harness import by_event, wait_gone
from chaos import FAULTS, _exit_fits, _kill_a_child, _last_run, inject
from test_mail_e2e import pipeline, received

TRIALS = 30
CYCLES = 6


def test_mail_chaos(make_team, capsys):
    rng = random.Random(20261129)
    injected: Counter[str] = Counter()
    held: Counter[str] = Counter()
    for _ in range(TRIALS):
        grouped = rng.random() < 0.5
        team = pipeline(make_team, CYCLES, pause=rng.choice([0.0, 0.02, 0.05]), every=rng.randint(1, 2),
                        group="crew" if grouped else None)
        injected["grouped"] += grouped
        for _ in range(rng.randint(1, 3)):
            run = team.start()
            run.wait_for(lambda ev: len(by_event(ev, "worker_started")) >= 3 or run.proc.poll() is not None,
                         "the workers")
            killed = ""
            if rng.random() < 0.4:
                killed, _name = _kill_a_child(run, rng)
                injected[f"kill_{killed}" if killed else "kill_missed"] += 1
            target = rng.randint(0, 2 * CYCLES)
            run.wait_for(lambda ev: run.proc.poll() is not None or len(by_event(ev, "cycle_completed")) >= target,
                         f"{target} cycles or the end")
            if run.proc.poll() is not None:
                held["completed_before_fault"] += 1
                break
            family = [p.pid for p in run.descendants()]
            fault = rng.choice(FAULTS)
            injected[fault] += 1
            inject(run, fault)
            code = run.wait()
            # A worker killed just before a stop is a crash during the stop: a failure (exit 3), by design.
            fits = _exit_fits(fault, code, _last_run(team.events())) or (killed and code == 3)
            assert fits, f"{fault}: exit {code}\n{run.output}"
            held[f"exit_{code}"] += 1
            wait_gone(family, 2)
            for name in team.names:
                for info in team.store(name).list():
                    team.store(name).verify(info.checkpoint_id)
        final = team.run()
        assert final.proc.returncode == 0, final.output
        assert received(team) == list(range(1, CYCLES + 1)), team.events()[-40:]
        for name in team.names:
            latest = team.latest(name)
            assert (latest.cycle, latest.status) == (CYCLES, "completed")
            replies = [m["content"] for m in latest.messages if m["role"] == "assistant"]
            assert len(replies) == CYCLES and all(r.startswith(f"cycle {k}:") for k, r in enumerate(replies, 1))
        assert by_event(team.events(), "checkpoint_corrupt") == []
        held["exactly_once"] += 1
    with capsys.disabled():
        print(f"\nmail chaos: {TRIALS} trials; injected {dict(sorted(injected.items()))}; held {dict(sorted(held.items()))}")
    assert held["exactly_once"] == TRIALS
