"""The read-only commands against real state: status, logs (and --follow), checkpoints."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from supervisor.cli import main
from supervisor.config import load_config
from supervisor.inspect_cmds import InterruptSummary, format_event
from workers.checkpoints import CheckpointStore

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


def _ev(second: int, event: str, agent_id: str, level: str = "info", **fields: Any) -> str:
    line = {"timestamp": f"2026-11-24T03:55:{second:02d}.123456Z", "level": level, "event": event, "agent_id": agent_id}
    line.update(fields)
    return json.dumps(line)


def _interrupt(second: int, agent_id: str, interrupt_id: int, source: str, mode: str, message: str) -> str:
    return _ev(second, "interrupt_initiated", agent_id, source=source, mode=mode, message=message, interrupt_id=interrupt_id)


# Two runs; in each the supervisor's line (agent_id=demo) plus the agents' acks share one interrupt_id,
# and ids restart at 1 in the second run. The file ends with a torn line, as after a crash.
EVENTS = [
    _ev(0, "supervisor_started", "demo", team="demo", pid=100, agents=["counter-a", "counter-b", "counter-c"], resumed={}),
    _ev(1, "worker_started", "counter-a", pid=101, cycle=0),
    _ev(1, "worker_started", "counter-b", pid=102, cycle=0),
    _ev(2, "cycle_completed", "counter-a", cycle=1, max_cycles=10, duration_ms=201.23456, reply="cycle 1: 1 2 3 4 5"),
    _interrupt(3, "demo", 1, "USER", "GRACEFUL", "Ctrl+C"),
    _interrupt(3, "counter-a", 1, "USER", "GRACEFUL", "Ctrl+C"),
    _interrupt(3, "counter-b", 1, "USER", "GRACEFUL", "Ctrl+C"),
    _ev(4, "interrupt_completed", "counter-a", checkpoint_id="x", cycle=1, latency_ms=12.5, mode="GRACEFUL", source="USER"),
    _ev(5, "supervisor_stopped", "demo", status="interrupted", exit_code=0),
    _ev(10, "supervisor_started", "demo", team="demo", pid=200, agents=["counter-a", "counter-b", "counter-c"], resumed={}),
    _ev(11, "cycle_completed", "counter-b", cycle=2, max_cycles=8, duration_ms=300.0, reply=LONG_REPLY),
    _interrupt(12, "demo", 1, "SYSTEM", "GRACEFUL", "SIGTERM"),
    _interrupt(12, "counter-a", 1, "SYSTEM", "GRACEFUL", "SIGTERM"),
    _interrupt(13, "demo", 2, "SYSTEM", "IMMEDIATE", "second SIGTERM"),
    _interrupt(13, "counter-a", 2, "SYSTEM", "IMMEDIATE", "second SIGTERM"),
    _ev(14, "supervisor_stopped", "demo", level="warning", status="interrupted", exit_code=1),
]
TORN = '{"timestamp": "2026-11-24T03:55:15.0Z", "level": "in'


@pytest.fixture
def team(tmp_path: Path) -> dict[str, Any]:
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


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _corrupt(storage: Path, agent: str, checkpoint_id: str) -> None:
    """Cut a checkpoint file in half, as a crash or a bad disk would."""
    store = CheckpointStore(storage, agent)
    (info,) = [i for i in store.list() if i.checkpoint_id == checkpoint_id]
    data = Path(info.path).read_bytes()
    Path(info.path).write_bytes(data[: len(data) // 2])


# ---- status ------------------------------------------------------------------


def test_status_json(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "status", team["config"], "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["agent"] for r in rows] == ["counter-a", "counter-b", "counter-c"]
    a, b, c = rows
    assert set(a) == {"agent", "status", "cycle", "max_cycles", "checkpoint_id", "budget_spent_usd", "last_interrupt", "corrupt"}
    assert (a["status"], a["cycle"], a["max_cycles"], a["checkpoint_id"]) == ("interrupted", 3, 10, team["ids"]["counter-a"][-1])
    assert a["budget_spent_usd"] == pytest.approx(0.03)
    assert a["last_interrupt"] == {
        "mode": "IMMEDIATE",
        "source": "SYSTEM",
        "message": "second SIGTERM",
        "timestamp": "2026-11-24T03:55:13.123456Z",
    }
    assert a["corrupt"] == []
    # Its checkpoint says running, but no supervisor holds the lock: it was interrupted.
    assert (b["status"], b["cycle"], b["max_cycles"]) == ("interrupted", 2, 8)
    assert b["last_interrupt"]["source"] == "USER"
    assert (c["status"], c["cycle"], c["checkpoint_id"], c["last_interrupt"]) == ("not started", 0, None, None)


def test_status_text(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "status", team["config"])
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["AGENT", "STATUS", "CYCLES"]
    assert lines[1].split()[:4] == ["counter-a", "interrupted", "3/10", team["ids"]["counter-a"][-1]]
    assert "IMMEDIATE SYSTEM" in lines[1]
    assert lines[3].startswith("counter-c") and "not started" in lines[3] and "0/5" in lines[3]
    # columns line up: every row has its STATUS where the header has it
    column = lines[0].index("STATUS")
    assert all(line[column - 2 : column] == "  " and line[column] != " " for line in lines[1:4])


def test_status_skips_corrupt_checkpoint(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    latest = team["ids"]["counter-a"][-1]
    _corrupt(team["storage"], "counter-a", latest)
    code, out, _ = _run(capsys, "status", team["config"], "--json")
    assert code == 0
    a = json.loads(out)[0]
    assert (a["cycle"], a["checkpoint_id"], a["corrupt"]) == (2, team["ids"]["counter-a"][1], [latest])


def test_status_without_storage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "team.yaml").write_text(CONFIG)
    code, out, _ = _run(capsys, "status", str(tmp_path / "team.yaml"), "--json")
    assert code == 0
    assert [r["status"] for r in json.loads(out)] == ["not started"] * 3
    assert not (tmp_path / "state").exists()  # read-only: nothing created


# ---- logs --------------------------------------------------------------------


def test_logs_json_counts_each_interrupt_once_per_run(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "logs", team["config"], "--json")
    assert code == 0
    document = json.loads(out)  # one document, nothing else on stdout
    assert len(document["events"]) == len(EVENTS)
    assert document["summary"] == {
        "total": 3,
        "graceful": 2,
        "immediate": 1,
        "by_source": {"USER": 1, "SYSTEM": 2, "PROGRAMMATIC": 0},
    }
    assert f"warning: events.jsonl line {len(EVENTS) + 1}: not valid JSON, skipped" in err


def test_logs_filters(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _run(capsys, "logs", team["config"], "--agent", "counter-b", "--json")
    document = json.loads(out)
    assert {e["agent_id"] for e in document["events"]} == {"counter-b"}
    assert document["summary"]["total"] == 1 and document["summary"]["by_source"]["USER"] == 1

    _, out, _ = _run(capsys, "logs", team["config"], "--event", "interrupt_initiated", "--agent", "demo", "--json")
    document = json.loads(out)
    assert [e["interrupt_id"] for e in document["events"]] == [1, 1, 2]
    assert document["summary"]["total"] == 3

    # The summary ignores --event: filtering on cycles still ends with the run's interrupts.
    _, out, _ = _run(capsys, "logs", team["config"], "--json")
    everything = json.loads(out)["summary"]
    _, out, _ = _run(capsys, "logs", team["config"], "--event", "cycle_completed", "--json")
    document = json.loads(out)
    assert [e["cycle"] for e in document["events"]] == [1, 2]
    assert document["summary"] == everything and everything["total"] > 0


def test_logs_text(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "logs", team["config"], "--agent", "counter-a")
    assert code == 0
    lines = out.splitlines()
    cycle = next(line for line in lines if "cycle_completed" in line)
    assert cycle.startswith("2026-11-24T03:55:02.123Z  info     counter-a")
    assert "cycle=1" in cycle and "duration_ms=201.235" in cycle and 'reply="cycle 1: 1 2 3 4 5"' in cycle
    assert lines[-1] == "Interrupts: total 3, graceful 2, immediate 1; by source: USER 1, SYSTEM 2, PROGRAMMATIC 0"
    assert "not valid JSON" in err

    _, out, _ = _run(capsys, "logs", team["config"], "--event", "cycle_completed", "--agent", "counter-b")
    (line, summary) = out.splitlines()
    assert "..." in line and LONG_REPLY not in line and len(line) < 200
    assert summary.startswith("Interrupts: total 1, graceful 1,")  # counter-b's interrupts, whatever --event says


def test_logs_without_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "team.yaml").write_text(CONFIG)
    code, out, err = _run(capsys, "logs", str(tmp_path / "team.yaml"), "--json")
    assert code == 0
    assert json.loads(out) == {
        "events": [],
        "summary": {"total": 0, "graceful": 0, "immediate": 0, "by_source": {"USER": 0, "SYSTEM": 0, "PROGRAMMATIC": 0}},
    }
    assert "no events yet (" in err and "events.jsonl" in err


def test_summary_and_format_helpers() -> None:
    summary = InterruptSummary()
    for run, agent in ((1, "demo"), (1, "a"), (1, "b"), (2, "demo")):
        summary.add(run, {"event": "interrupt_initiated", "agent_id": agent, "interrupt_id": 1, "mode": "GRACEFUL", "source": "PROGRAMMATIC"})
    assert summary.as_dict()["total"] == 2 and summary.by_source["PROGRAMMATIC"] == 2
    line = format_event({"timestamp": "2026-11-24T03:55:01Z", "level": "error", "event": "worker_error", "agent_id": "a", "message": "two\nlines", "ok": True})
    assert line.startswith("2026-11-24T03:55:01.000Z  error")
    assert '"two\\nlines"' in line and "ok=true" in line and "\n" not in line


# ---- logs --follow (a real process, real signals) ---------------------------------


def _start_follow(config: str, *extra: str) -> tuple[subprocess.Popen[str], "queue.Queue[str]"]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "logs", config, "--follow", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def _next(lines: "queue.Queue[str]", timeout: float = 20.0) -> str:
    return lines.get(timeout=timeout)


def _append(path: Path, data: str) -> None:
    with open(path, "a") as handle:
        handle.write(data)


def _stop(proc: subprocess.Popen[str], signum: int) -> str:
    proc.send_signal(signum)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.stderr is not None
    return proc.stderr.read()


def test_follow_json_lines_until_ctrl_c(team: dict[str, Any]) -> None:
    events = team["storage"] / "events.jsonl"
    events.write_text("\n".join(EVENTS) + "\n")  # no torn tail: appended lines must parse
    proc, lines = _start_follow(team["config"], "--json", "--agent", "counter-a")
    try:
        existing = sum(1 for line in EVENTS if json.loads(line)["agent_id"] == "counter-a")
        shown = [json.loads(_next(lines)) for _ in range(existing)]
        assert [e["event"] for e in shown][:2] == ["worker_started", "cycle_completed"]
        new = _ev(20, "cycle_completed", "counter-a", cycle=2, max_cycles=10, duration_ms=5.0, reply="cycle 2: x")
        half = len(new) // 2
        _append(events, _ev(20, "cycle_completed", "counter-b", cycle=3) + "\n" + new[:half])  # a line caught mid-write
        time.sleep(0.6)
        assert lines.empty()
        _append(events, new[half:] + "\n")
        assert json.loads(_next(lines))["cycle"] == 2
        _append(events, _interrupt(21, "counter-a", 3, "PROGRAMMATIC", "GRACEFUL", "budget") + "\n")
        assert json.loads(_next(lines))["interrupt_id"] == 3
    finally:
        err = _stop(proc, signal.SIGINT)
    assert proc.returncode == 0
    assert "Traceback" not in err and "not valid JSON" not in err
    last = json.loads(_next(lines, timeout=5))
    assert last == {"summary": {"total": 4, "graceful": 3, "immediate": 1, "by_source": {"USER": 1, "SYSTEM": 2, "PROGRAMMATIC": 1}}}


def test_follow_waits_for_the_file_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "team.yaml"
    config.write_text(CONFIG)
    proc, lines = _start_follow(str(config))
    try:
        time.sleep(0.5)
        storage = tmp_path / "state"
        storage.mkdir()
        _append(storage / "events.jsonl", EVENTS[0] + "\n")
        assert "supervisor_started" in _next(lines)
    finally:
        err = _stop(proc, signal.SIGTERM)
    assert proc.returncode == 0
    assert "no events yet" in err and "Traceback" not in err
    assert _next(lines, timeout=5).startswith("Interrupts: total 0,")


# ---- checkpoints -------------------------------------------------------------


def test_checkpoints_list_is_cheap(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    _corrupt(team["storage"], "counter-a", team["ids"]["counter-a"][0])  # listing must not open files
    code, out, _ = _run(capsys, "checkpoints", team["config"], "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["agent"], r["cycle"]) for r in rows] == [("counter-a", 1), ("counter-a", 2), ("counter-a", 3), ("counter-b", 1), ("counter-b", 2)]
    assert all(r["valid"] is None and r["error"] is None and r["size_bytes"] > 0 for r in rows)
    assert [r["checkpoint_id"] for r in rows[:3]] == team["ids"]["counter-a"]

    code, out, _ = _run(capsys, "checkpoints", team["config"], "--agent", "counter-b")
    assert code == 0
    assert out.splitlines()[0].split() == ["AGENT", "CHECKPOINT", "CYCLE", "BYTES"]
    assert [line.split()[1] for line in out.splitlines()[1:]] == team["ids"]["counter-b"]


def test_checkpoints_verify(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "checkpoints", team["config"], "--verify", "--json")
    assert code == 0
    assert all(r["valid"] is True for r in json.loads(out))

    bad = team["ids"]["counter-a"][1]
    _corrupt(team["storage"], "counter-a", bad)
    code, out, _ = _run(capsys, "checkpoints", team["config"], "--verify", "--json")
    assert code == 1
    rows = {(r["agent"], r["checkpoint_id"]): r for r in json.loads(out)}
    assert rows["counter-a", bad]["valid"] is False and "truncated" in rows["counter-a", bad]["error"]
    assert sum(1 for r in rows.values() if r["valid"] is False) == 1

    code, out, _ = _run(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--verify")
    assert code == 1
    verdicts = [line for line in out.splitlines() if line.startswith("counter-a")]
    assert [("corrupt:" in line) for line in verdicts] == [False, True, False]
    assert out.splitlines()[-1] == "verified 3 checkpoint(s): 1 corrupt"


def test_checkpoints_show(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    ids = team["ids"]["counter-a"]
    code, out, _ = _run(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--show")
    assert code == 0
    state = json.loads(out)
    assert (state["agent"], state["checkpoint_id"], state["cycle"], state["status"]) == ("counter-a", ids[-1], 3, "interrupted")
    assert {"messages", "budget_spent_usd", "created_at"} <= set(state)
    assert [m["content"] for m in state["messages"] if m["role"] == "assistant"] == [f"cycle {k}: ..." for k in (1, 2, 3)]

    code, out, _ = _run(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--show", ids[0])
    assert code == 0 and json.loads(out)["cycle"] == 1

    _corrupt(team["storage"], "counter-a", ids[-1])
    code, out, err = _run(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--show", "latest", "--json")
    assert code == 0 and json.loads(out)["cycle"] == 2
    assert f"checkpoint {ids[-1]} of agent 'counter-a' is corrupt" in err

    code, out, err = _run(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--show", ids[-1])
    assert code == 1 and out == ""
    assert err.startswith(f"error: checkpoint {ids[-1]} of agent 'counter-a' is corrupt: ") and err.count("\n") == 1

    code, out, err = _run(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--show", "no-such-id")
    assert code == 1 and out == "" and "no-such-id" in err and err.count("\n") == 1

    missing = "checkpoint_00000099_00000099.jsonl.gz"
    code, out, err = _run(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--show", missing)
    assert (code, out) == (1, "")
    assert err == f"error: checkpoint {missing} of agent 'counter-a' is corrupt: missing\n"


def test_checkpoints_show_latest_without_any(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "checkpoints", team["config"], "--agent", "counter-c", "--show", "latest")
    assert (code, out) == (1, "")
    assert err == "error: agent 'counter-c' has no valid checkpoint\n"


def test_checkpoints_usage_errors(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "checkpoints", team["config"], "--agent", "nobody")
    assert (code, out) == (2, "")
    assert err.strip() == f"error: {Path(team['config']).absolute()}: no agent named 'nobody' in team 'demo'"

    code, _, err = _run(capsys, "checkpoints", team["config"], "--show")
    assert code == 2 and "--show needs --agent" in err
    code, _, err = _run(capsys, "checkpoints", team["config"], "--agent", "nobody", "--show")
    assert code == 2 and "no agent named 'nobody'" in err


def test_commands_never_write(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    def snapshot() -> dict[str, tuple[int, float]]:
        return {str(p): (p.stat().st_size, p.stat().st_mtime) for p in team["storage"].rglob("*")}

    before = snapshot()
    for argv in (["status"], ["logs"], ["checkpoints", "--verify"], ["checkpoints", "--agent", "counter-a", "--show"]):
        main([argv[0], team["config"], *argv[1:]])
    capsys.readouterr()
    assert snapshot() == before


def test_follow_moves_on_to_a_new_file_after_fresh(team: dict[str, Any]) -> None:
    """`run --fresh` moves events.jsonl to the archive; the next run starts a new one."""
    storage = team["storage"]
    events = storage / "events.jsonl"
    events.write_text("\n".join(EVENTS[:9]) + "\n")  # run 1 only
    proc, lines = _start_follow(team["config"], "--json", "--event", "interrupt_initiated")
    try:
        assert [json.loads(_next(lines))["agent_id"] for _ in range(3)] == ["demo", "counter-a", "counter-b"]
        (storage / "archive").mkdir()
        events.rename(storage / "archive" / "events.jsonl")
        time.sleep(0.5)
        _append(events, EVENTS[9] + "\n" + _interrupt(30, "demo", 1, "USER", "IMMEDIATE", "again") + "\n")
        assert json.loads(_next(lines))["message"] == "again"
    finally:
        err = _stop(proc, signal.SIGINT)
    assert proc.returncode == 0 and "Traceback" not in err
    summary = json.loads(_next(lines, timeout=5))["summary"]
    assert (summary["total"], summary["graceful"], summary["immediate"]) == (2, 1, 1)
