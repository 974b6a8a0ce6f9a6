"""Hooks: called in each worker at the points the config names, in priority order,
each bounded in time; one that fails or hangs is logged and skipped, never
breaking a cycle or a shutdown. Real runs, a real Ctrl+C in a pseudo-terminal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import by_event


def _hooks_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _stop_after(team: Any, cycles: int, env: dict[str, str]) -> Any:
    run = team.start(terminal=True, env=env)
    run.wait_for(lambda ev: len(by_event(ev, "cycle_completed")) >= cycles, f"{cycles} cycles")
    run.ctrl_c()
    run.wait()
    return run


def test_hooks_run_at_each_point_in_priority_order(make_team, backend, tmp_path):
    team = make_team(agents=1, latency=0.05, max_cycles=200)
    team.data["hooks"] = [
        {"on": "after_cycle", "call": "tests.hook_probe:second", "priority": 20},
        {"on": "after_cycle", "call": "tests.hook_probe:first", "priority": 10},
        *({"on": point, "call": "tests.hook_probe:record"}
          for point in ("before_checkpoint", "after_checkpoint", "before_interrupt", "after_interrupt")),
    ]
    team.write()
    log = tmp_path / "hooks.jsonl"
    run = _stop_after(team, 2, {"HOOK_LOG": str(log)})
    assert run.proc.returncode == 0, run.output
    calls = _hooks_log(log)
    cycle_one = [(c["probe"], c["hook"]) for c in calls if c["cycle"] == 1]
    assert cycle_one == [("record", "before_checkpoint"), ("record", "after_checkpoint"),
                         ("first", "after_cycle"), ("second", "after_cycle")]
    assert calls[0]["agent"] == "agent-a" and calls[2]["reply"].startswith("cycle 1:")
    # The stop: before_interrupt, then the interrupted checkpoint, and after_interrupt last of all.
    stop = [c for c in calls if c["hook"] in ("before_interrupt", "after_interrupt")]
    assert [c["hook"] for c in stop] == ["before_interrupt", "after_interrupt"]
    assert stop[0]["interrupt"]["source"] == "USER" and stop[0]["interrupt"]["mode"] == "GRACEFUL"
    final = team.assert_exactly_once("agent-a")
    assert calls[-1]["hook"] == "after_interrupt" and calls[-1]["checkpoint_id"] == final.checkpoint_id
    interrupted = [c for c in calls if c["hook"] == "after_checkpoint" and c["status"] == "interrupted"]
    assert len(interrupted) == 1 and calls.index(stop[0]) < calls.index(interrupted[0])
    assert not by_event(team.events(), "hook_failed") and not by_event(team.events(), "hook_timeout")


def test_a_failing_or_slow_hook_is_logged_and_never_breaks_a_shutdown(make_team, tmp_path):
    team = make_team(agents=2, latency=0.05, max_cycles=200)
    team.data["hooks"] = [
        {"on": "after_cycle", "call": "tests.hook_probe:boom"},
        {"on": "after_checkpoint", "call": "tests.hook_probe:slow_async", "timeout": 0.2, "priority": 1},
        {"on": "before_interrupt", "call": "tests.hook_probe:slow", "timeout": "300ms"},
        {"on": "after_interrupt", "call": "tests.hook_probe:no_such_function"},
        {"on": "after_interrupt", "call": "tests.hook_probe:record", "priority": 200},
    ]
    team.write()
    log = tmp_path / "hooks.jsonl"
    run = _stop_after(team, 2, {"HOOK_LOG": str(log)})
    assert run.proc.returncode == 0, run.output
    events = team.events()
    failed = by_event(events, "hook_failed")
    assert {f["call"] for f in failed} == {"tests.hook_probe:boom", "tests.hook_probe:no_such_function"}
    assert any("RuntimeError: boom in a hook" in f["error"] for f in failed)
    assert any("AttributeError" in f["error"] for f in failed)
    timed_out = {(t["agent_id"], t["call"]) for t in by_event(events, "hook_timeout")}
    for agent in team.names:
        assert (agent, "tests.hook_probe:slow") in timed_out and (agent, "tests.hook_probe:slow_async") in timed_out
        assert team.assert_exactly_once(agent).status == "interrupted"
        assert by_event(events, "interrupt_completed", agent)
    # The hook after the broken one still ran, once per agent.
    assert sorted(c["agent"] for c in _hooks_log(log) if c["hook"] == "after_interrupt") == team.names


def test_a_bad_hook_in_the_config_is_one_line_and_exit_2(make_team):
    team = make_team(agents=1)
    for hook, problem in (
        ({"on": "after_cycle", "call": "nosuchpackage.mod:fn"}, "hooks[0].call: no module named 'nosuchpackage'"),
        ({"on": "after_cycle", "call": "not a path"}, "hooks[0].call: must be a dotted path"),
        ({"on": "before_lunch", "call": "tests.hook_probe:record"}, "hooks[0].on: must be one of before_interrupt"),
    ):
        team.data["hooks"] = [hook]
        team.write()
        run = team.run()
        assert run.proc.returncode == 2, run.output
        assert problem in run.output and "Traceback" not in run.output
        assert len(run.output.strip().splitlines()) == 1
