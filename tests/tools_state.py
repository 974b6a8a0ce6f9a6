"""The state the operator's tools are tested against: a three-agent team, its checkpoints and events.

Shared by the tests of `status`, `logs` and `checkpoints`: two runs of events
(interrupts in each, ids restarting at 1) ending with a torn line, as after a crash.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from protocol.checkpoints import CheckpointStore
from supervisor.cli import main
from supervisor.config import load_config

CONFIG = """\
team: demo
storage: state
llm: {provider: scripted, latency: 0.0}
checkpoint: {every: 1, keep: 20, compress: true}
agents:
  - name: counter-a
    task: Count from 1 to 50.
    max_cycles: 10
  - name: counter-b
    task: Count from 1 to 40.
    max_cycles: 8
  - name: counter-c
    task: Count from 1 to 25.
    max_cycles: 5
"""

LONG_REPLY = "cycle 2: " + "six seven eight nine ten " * 10


def event_line(second: int, event: str, agent_id: str, level: str = "info", **fields: Any) -> str:
    line = {"timestamp": f"2026-11-24T03:55:{second:02d}.123456Z", "level": level, "event": event, "agent_id": agent_id}
    line.update(fields)
    return json.dumps(line)


def interrupt_line(second: int, agent_id: str, interrupt_id: int, source: str, mode: str, message: str) -> str:
    return event_line(second, "interrupt_initiated", agent_id, source=source, mode=mode, message=message, interrupt_id=interrupt_id)


# Two runs; in each the supervisor's line (agent_id=demo) plus the agents' acks share one interrupt_id,
# and ids restart at 1 in the second run. The file ends with a torn line, as after a crash.
EVENTS = [
    event_line(0, "supervisor_started", "demo", team="demo", pid=100, agents=["counter-a", "counter-b", "counter-c"], resumed={}),
    event_line(1, "worker_started", "counter-a", pid=101, cycle=0),
    event_line(1, "worker_started", "counter-b", pid=102, cycle=0),
    event_line(2, "cycle_completed", "counter-a", cycle=1, max_cycles=10, duration_ms=201.23456, reply="cycle 1: 1 2 3 4 5"),
    interrupt_line(3, "demo", 1, "USER", "GRACEFUL", "Ctrl+C"),
    interrupt_line(3, "counter-a", 1, "USER", "GRACEFUL", "Ctrl+C"),
    interrupt_line(3, "counter-b", 1, "USER", "GRACEFUL", "Ctrl+C"),
    event_line(4, "interrupt_completed", "counter-a", checkpoint_id="x", cycle=1, latency_ms=12.5, mode="GRACEFUL", source="USER"),
    event_line(5, "supervisor_stopped", "demo", status="interrupted", exit_code=0),
    event_line(10, "supervisor_started", "demo", team="demo", pid=200, agents=["counter-a", "counter-b", "counter-c"], resumed={}),
    event_line(11, "cycle_completed", "counter-b", cycle=2, max_cycles=8, duration_ms=300.0, reply=LONG_REPLY),
    interrupt_line(12, "demo", 1, "SYSTEM", "GRACEFUL", "SIGTERM"),
    interrupt_line(12, "counter-a", 1, "SYSTEM", "GRACEFUL", "SIGTERM"),
    interrupt_line(13, "demo", 2, "SYSTEM", "IMMEDIATE", "second SIGTERM"),
    interrupt_line(13, "counter-a", 2, "SYSTEM", "IMMEDIATE", "second SIGTERM"),
    event_line(14, "supervisor_stopped", "demo", level="warning", status="interrupted", exit_code=1),
]
TORN = '{"timestamp": "2026-11-24T03:55:15.0Z", "level": "in'


def write_team(tmp_path: Path) -> dict[str, Any]:
    """A config, checkpoints for two of three agents, and an events.jsonl with a torn last line."""
    config_path = tmp_path / "team.yaml"
    config_path.write_text(CONFIG)
    config = load_config(config_path)
    storage = config.storage
    assert storage == (tmp_path / "state").resolve()
    ids: dict[str, list[str]] = {}
    for agent, cycles, final in (("counter-a", 3, "interrupted"), ("counter-b", 2, "running")):
        store = CheckpointStore(storage, agent, keep=20, compress=True)
        store.open_for_writing()
        messages: list[dict[str, str]] = [{"role": "system", "content": "count"}]
        ids[agent] = []
        for cycle in range(1, cycles + 1):
            messages.append({"role": "assistant", "content": f"cycle {cycle}: ..."})
            status = final if cycle == cycles else "running"
            result = store.save(cycle=cycle, status=status, messages=list(messages), budget_spent_usd=0.01 * cycle)
            ids[agent].append(result.checkpoint_id)
    (storage / "events.jsonl").write_text("\n".join(EVENTS) + "\n" + TORN)
    return {"config": str(config_path), "storage": storage, "ids": ids}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def corrupt(storage: Path, agent: str, checkpoint_id: str) -> None:
    """Cut a checkpoint file in half, as a crash or a bad disk would."""
    store = CheckpointStore(storage, agent)
    (info,) = [i for i in store.list() if i.checkpoint_id == checkpoint_id]
    data = Path(info.path).read_bytes()
    Path(info.path).write_bytes(data[: len(data) // 2])


def stamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_events(storage: Path, events: list[dict[str, Any]]) -> None:
    storage.mkdir(parents=True, exist_ok=True)
    (storage / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def logs_json(capsys: pytest.CaptureFixture[str], config: str, *argv: str) -> dict[str, Any]:
    code, out, _ = run_cli(capsys, "logs", config, "--json", *argv)
    assert code == 0
    document: dict[str, Any] = json.loads(out)
    return document
