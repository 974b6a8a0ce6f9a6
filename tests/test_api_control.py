"""The Python API's side of steering a live team: start_agent, stop, restart_agent, reload.

The same semantics as the operator's commands, from the embedding program:
source PROGRAMMATIC, the one stop path, a stopped agent resumed from its checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_api import Events

from harness import HANG, by_event
from protocol.checkpoints import CheckpointStore
from supervisor.api import TeamRunner
from supervisor.config import TeamConfig
from supervisor.errors import UserError
from workers.providers.scripted import scripted_reply


def _data(cycles: int = 12) -> dict[str, Any]:
    return {
        "team": "api-team",
        "storage": "state",
        "llm": {"provider": "scripted", "latency": 0.1},
        "checkpoint": {"every": 1, "keep": 50},
        "agents": [{"name": n, "task": f"Count, as {n}.", "max_cycles": cycles} for n in ("alpha", "beta", "gamma")],
    }


def _exactly_once(tmp_path: Path, agent: str, cycles: int) -> None:
    checkpoint = CheckpointStore(tmp_path / "state", agent).load_latest()
    assert checkpoint is not None and checkpoint.cycle == cycles
    replies = [m["content"] for m in checkpoint.messages if m["role"] == "assistant"]
    assert replies == [scripted_reply(k) for k in range(1, cycles + 1)]


@pytest.mark.e2e
def test_stop_then_start_agent_resumes_it_and_restart_agent_restarts(tmp_path: Path) -> None:
    events = Events()
    runner = TeamRunner(_data(), base_dir=tmp_path, quiet=True, on_event=events).start()
    events.wait_for("cycle_completed", "beta", 2)
    runner.stop("beta")
    events.wait_for("worker_exited", "beta")
    runner.start_agent("beta")
    events.wait_for("worker_started", "beta", 2)
    runner.restart_agent("gamma")
    events.wait_for("worker_started", "gamma", 2)
    with pytest.raises(ValueError):
        runner.start_agent("nobody")
    assert runner.wait(HANG) == 0
    restarted = [e for e in by_event(events.seen, "interrupt_initiated", "api-team") if e.get("agents") == ["gamma"]]
    assert [(e["source"], e["trigger"]) for e in restarted] == [("PROGRAMMATIC", "program")]
    for name in ("alpha", "beta", "gamma"):
        _exactly_once(tmp_path, name, 12)


@pytest.mark.e2e
def test_reload_applies_the_difference_and_a_bad_one_changes_nothing(tmp_path: Path) -> None:
    events = Events()
    data = _data()
    runner = TeamRunner(data, base_dir=tmp_path, quiet=True, on_event=events).start()
    events.wait_for("cycle_completed", "alpha", 1)
    renamed = TeamConfig.from_mapping({**data, "team": "other"}, source=tmp_path / "<api>", base_dir=tmp_path)
    with pytest.raises(UserError, match="`team` cannot change"):
        runner.reload(renamed)
    scraped = TeamConfig.from_mapping({**data, "metrics": {"listen": "127.0.0.1:0"}}, source=tmp_path / "<api>",
                                      base_dir=tmp_path)
    with pytest.raises(UserError, match="`metrics` cannot change"):  # served from the run's start, or not at all
        runner.reload(scraped)
    data["agents"][0]["max_cycles"] = 14
    data["agents"].append({"name": "delta", "task": "Count, as delta.", "max_cycles": 3})
    new = TeamConfig.from_mapping(data, source=tmp_path / "<api>", base_dir=tmp_path)
    assert runner.reload(new) == {"added": ["delta"], "removed": [], "changed": ["alpha"]}
    assert runner.wait(HANG) == 0
    assert len(by_event(events.seen, "config_reloaded")) == 1
    _exactly_once(tmp_path, "alpha", 14)
    _exactly_once(tmp_path, "delta", 3)
    assert len(by_event(events.seen, "worker_started", "beta")) == 1


@pytest.mark.e2e
def test_answer_returns_once_the_answer_is_saved_and_refuses_an_agent_not_asking(tmp_path: Path) -> None:
    data = _data(cycles=3)
    data["agents"][0].update({"agent": "tests.mail_agents:Asker", "params": {"question": "Which colour?"}})
    events = Events()
    runner = TeamRunner(data, base_dir=tmp_path, quiet=True, on_event=events).start()
    events.wait_for("question_asked", "alpha")
    with pytest.raises(UserError, match="agent beta is not waiting for an answer"):
        runner.answer("beta", "blue")
    with pytest.raises(ValueError, match="no agent 'nobody'"):
        runner.answer("nobody", "blue")
    runner.answer("alpha", "green")
    store = CheckpointStore(tmp_path / "state", "alpha")  # durable when answer() returned: a save of cycle 1 holds it
    saved = [store.load(info.checkpoint_id) for info in store.list() if info.cycle == 1]
    assert any(c.extra.get("mail", {}).get("answers") == [{"question": "Which colour?", "answer": "green"}] for c in saved)
    assert runner.wait(HANG) == 0
    final = CheckpointStore(tmp_path / "state", "alpha").load_latest()
    assert final is not None and final.extra["state"]["answers"] == ["green"]
