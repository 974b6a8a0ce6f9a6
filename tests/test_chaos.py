"""Chaos: randomized interrupts and kills at random moments, then resume to the end.

Each trial runs a fresh team through a few runs; half the teams put some agents
in a group (a sub-supervisor process with its own strategy). Every run gets one
fault at a random moment (Ctrl+C, double Ctrl+C, SIGTERM, SIGKILL of the
supervisor), and sometimes a SIGKILL of a random worker or group first (which
its supervisor restarts).
After every run: no process is left, every checkpoint on disk verifies, and none
was ever reported corrupt. At the end the team is resumed to completion and each
conversation must hold exactly one reply per cycle. Bounded: a fixed number of
trials with a fixed seed, each run bounded by the harness's hang timeout.
The trials themselves are in `chaos.py`; the Ray cluster runs them too (`test_ray_cluster.py`).
"""

from __future__ import annotations

from chaos import run_chaos

TRIALS = 30  # with the mail chaos and the Ray cluster's 20: seventy seeded trials of stops and kills


def test_chaos(make_team, capsys):
    injected, held = run_chaos(make_team, TRIALS, 20261124)
    with capsys.disabled():
        print(f"\nchaos: {TRIALS} trials; injected {dict(sorted(injected.items()))}; held {dict(sorted(held.items()))}")
    assert held["exactly_once"] == TRIALS


PACKED_TRIALS = 10


def test_chaos_with_agents_that_share_processes(make_team, capsys):
    """The same faults on teams whose agents share processes: a kill of one takes its siblings, and resume holds."""
    injected, held = run_chaos(make_team, PACKED_TRIALS, 20261130, team_keys={"agents_per_process": 2})
    with capsys.disabled():
        print(f"\nchaos, packs of 2: {PACKED_TRIALS} trials; injected {dict(sorted(injected.items()))}; "
              f"held {dict(sorted(held.items()))}")
    assert held["exactly_once"] == PACKED_TRIALS
