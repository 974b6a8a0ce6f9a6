"""Concurrency caps (`max_concurrent`) across the tree, against an Ollama TEST DOUBLE that counts.

The supervisor and its workers run for real and call the double over HTTP
with the official ollama client; the double (tests/ollama_double.py) holds
each generation for a fixed latency and records the most it ever had in
progress at once: what the server really saw, not what the supervisor thinks.
"""

from __future__ import annotations

from typing import Any

import psutil
import pytest

from harness import by_event
from ollama_double import MODEL, OllamaDouble
from openai_double import OpenAIDouble

pytestmark = pytest.mark.e2e


def _use(team, host: str, cap: int, **llm: object) -> None:
    team.data["llm"] = {"provider": "ollama", "host": host, "model": MODEL, "request_timeout": 30,
                        "max_concurrent": cap, **llm}
    team.write()


def _queued(events: list[dict[str, Any]]) -> set[str]:
    return {e["agent_id"] for e in by_event(events, "agent_queued")}


def test_never_more_calls_than_the_cap_reach_the_server_and_every_agent_completes(make_team):
    team = make_team(agents=12, max_cycles=2, groups={"crew": {"agents": 4}})
    with OllamaDouble(latency=0.1) as double:
        _use(team, double.host, 4)
        run = team.run()
        peak, calls = double.backend.peak, double.backend.calls
    assert run.proc.returncode == 0, run.output
    assert calls == 16 * 2
    assert peak == 4  # the cap, across the team's agents and the group's alike: never more, and used in full
    for name in team.names:
        team.assert_exactly_once(name, 2)
    events = run.new_events()
    assert _queued(events)
    assert len(by_event(events, "slot_granted")) == len(by_event(events, "agent_queued"))
    cycles = by_event(events, "cycle_completed")
    assert len(cycles) == 32 and all(c["queued_ms"] >= 0 for c in cycles)  # every call took a slot, the group's too
    assert any(c["queued_ms"] > 0 for c in cycles)


def test_the_openai_provider_keeps_to_the_cap_too(make_team):
    team = make_team(agents=6, max_cycles=2)
    with OpenAIDouble(latency=0.2) as double:
        team.data["llm"] = {"provider": "openai", "base_url": double.base_url, "model": MODEL, "request_timeout": 30,
                            "max_concurrent": 2}
        team.write()
        run = team.run()
        peak = double.backend.peak
    assert run.proc.returncode == 0, run.output
    assert peak == 2
    for name in team.names:
        team.assert_exactly_once(name, 2)
    assert _queued(run.new_events())


@pytest.mark.parametrize("where", ["team", "group"])
def test_the_slot_of_a_killed_worker_comes_back_and_the_others_finish(make_team, where):
    groups = {"crew": {"agents": 3}} if where == "group" else None
    team = make_team(agents=0 if groups else 3, max_cycles=1, restart="temporary", groups=groups)
    if groups:
        del team.data["agents"]
    with OllamaDouble(latency=3.0) as double:
        _use(team, double.host, 1)
        run = team.start()
        pids = run.wait_all_started()
        queued = run.wait_for(lambda ev: _queued(ev) if len(_queued(ev)) == 2 else None, "two agents queued")
        (holder,) = set(team.names) - queued  # the one call in flight: its worker dies holding the slot
        psutil.Process(pids[holder]).kill()
        code = run.wait()
    assert code == 3, run.output  # the killed agent failed (restart: temporary); nobody waits on its slot
    for name in queued:
        team.assert_exactly_once(name, 1)


def test_a_graceful_stop_ends_the_waits_for_slots_at_once(make_team):
    team = make_team(agents=4, max_cycles=1)
    with OllamaDouble(latency=3.0) as double:
        _use(team, double.host, 1)
        run = team.start(terminal=True)
        queued = run.wait_for(lambda ev: _queued(ev) if len(_queued(ev)) == 3 else None, "three agents queued")
        run.ctrl_c()
        code = run.wait()
    assert code == 0, run.output
    events = run.new_events()
    (holder,) = set(team.names) - queued
    order = [(e["event"], e["agent_id"]) for e in events]
    holder_done = order.index(("cycle_completed", holder))  # the call in flight finishes: a graceful stop
    for name in queued:  # a wait is not a call: it ended at once, long before the call in flight
        assert order.index(("interrupt_completed", name)) < holder_done
        assert not by_event(events, "cycle_completed", name)
        assert team.latest(name).status == "interrupted"
    assert team.latest(holder).status == "completed"
