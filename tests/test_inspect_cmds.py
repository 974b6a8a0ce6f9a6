"""The read-only commands against real state: status, logs (and --follow), checkpoints."""

from __future__ import annotations

import gzip
import json
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from harness import Team, by_event
from supervisor.cli import main, parse_when
from supervisor.config import load_config
from supervisor.terminal.console import RULE
from supervisor.tools.inspect_cmds import InterruptSummary, RunStats, format_event, short_time
from protocol.checkpoints import CheckpointStore

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
    assert set(a) == {
        "agent", "status", "cycle", "max_cycles", "checkpoint_id", "budget_spent_usd", "last_interrupt", "corrupt", "run_live",
    }
    assert [r["run_live"] for r in rows] == [False] * 3
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
    title, *lines = out.splitlines()
    assert title == "team demo: no run live; the last one interrupted at 2026-11-24T03:55:14.123Z (exit 1)"
    assert lines[0].split() == ["AGENT", "STATUS", "CYCLES", "LATEST", "CHECKPOINT", "BUDGET", "SPENT", "LAST", "INTERRUPT"]
    assert lines[1].split()[:5] == ["counter-a", "interrupted", "3/10", team["ids"]["counter-a"][-1], "$0.0300"]
    assert "IMMEDIATE SYSTEM at 2026-11-24T03:55:13.123Z" in lines[1]
    assert lines[3].startswith("counter-c") and "not started" in lines[3] and " 0/5 " in lines[3] and lines[3].endswith("-")
    # columns line up: text columns start where their header starts, number columns end where theirs ends
    for header in ("STATUS", "LATEST CHECKPOINT", "LAST INTERRUPT"):
        column = lines[0].index(header)
        assert all(line[column - 2 : column] == "  " and line[column] != " " for line in lines[1:4])
    for header in ("CYCLES", "BUDGET SPENT"):
        end = lines[0].index(header) + len(header)
        assert all(line[end - 1] != " " and line[end : end + 2] == "  " for line in lines[1:4])


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
    # By default the statistics are the last run's: two interrupts of its own, ids restarting at 1.
    summary = document["summary"]
    assert {k: summary[k] for k in ("total", "graceful", "immediate", "by_source")} == {
        "total": 2,
        "graceful": 1,
        "immediate": 1,
        "by_source": {"USER": 0, "SYSTEM": 2, "PROGRAMMATIC": 0},
    }
    assert (summary["run"], summary["runs"], summary["status"], summary["exit_code"]) == (2, 2, "interrupted", 1)
    assert f"warning: events.jsonl line {len(EVENTS) + 1}: not valid JSON, skipped" in err

    _, out, _ = _run(capsys, "logs", team["config"], "--json", "--all-runs")
    summary = json.loads(out)["summary"]
    assert {k: summary[k] for k in ("total", "graceful", "immediate", "by_source")} == {
        "total": 3,
        "graceful": 2,
        "immediate": 1,
        "by_source": {"USER": 1, "SYSTEM": 2, "PROGRAMMATIC": 0},
    }
    assert (summary["run"], summary["runs"], summary["status"], summary["cycles"]) == (None, 2, "interrupted", 2)


def test_logs_filters(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _run(capsys, "logs", team["config"], "--agent", "counter-b", "--json", "--all-runs")
    document = json.loads(out)
    assert {e["agent_id"] for e in document["events"]} == {"counter-b"}
    assert document["summary"]["total"] == 1 and document["summary"]["by_source"]["USER"] == 1
    _, out, _ = _run(capsys, "logs", team["config"], "--agent", "counter-b", "--json")
    summary = json.loads(out)["summary"]  # the last run: counter-b had a cycle and no interrupt in it
    assert (summary["run"], summary["total"], summary["cycles"], summary["status"]) == (2, 0, 1, "interrupted")

    _, out, _ = _run(capsys, "logs", team["config"], "--event", "interrupt_initiated", "--agent", "demo", "--json")
    document = json.loads(out)
    assert [e["interrupt_id"] for e in document["events"]] == [1, 1, 2]
    assert document["summary"]["total"] == 2

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
    block = lines[lines.index(RULE) :]
    assert block == [
        RULE,
        "📊 EXECUTION STATISTICS",
        RULE,
        "Scope: run 2 of 2, started 2026-11-24T03:55:10.123Z, stopped 2026-11-24T03:55:14.123Z; agents: counter-a",
        "Status: interrupted",
        "Cycles: 0",
        "Budget Spent: $0.0000",
        "Restarts: 0",
        "",
        "Interrupt Metrics:",
        "  Total Interrupts: 2",
        "  Graceful: 1",
        "  Immediate: 1",
        "  By Source: USER 0, SYSTEM 2, PROGRAMMATIC 0",
        "  Latency: -",
        RULE,
    ]
    assert lines[lines.index(RULE) - 1] == ""  # a blank line between the events and the block
    assert "not valid JSON" in err

    _, out, _ = _run(capsys, "logs", team["config"], "--event", "cycle_completed", "--agent", "counter-b", "--all-runs")
    (line, _blank, *block) = out.splitlines()
    assert "..." in line and LONG_REPLY not in line and len(line) < 200
    assert "  Total Interrupts: 1" in block and "Cycles: 1" in block  # counter-b's, whatever --event says


def test_logs_without_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "team.yaml").write_text(CONFIG)
    code, out, err = _run(capsys, "logs", str(tmp_path / "team.yaml"), "--json")
    assert code == 0
    assert json.loads(out) == {
        "events": [],
        "summary": {
            "total": 0,
            "graceful": 0,
            "immediate": 0,
            "by_source": {"USER": 0, "SYSTEM": 0, "PROGRAMMATIC": 0},
            "run": None,
            "runs": 0,
            "status": "not started",
            "started_at": None,
            "stopped_at": None,
            "exit_code": None,
            "cycles": 0,
            "budget_spent_usd": 0.0,
            "restarts": 0,
            "interrupt_latency_ms": {"median": None, "max": None, "count": 0},
        },
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


@pytest.mark.e2e
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
    assert list(last) == ["summary"]
    summary = last["summary"]  # the last run's, with what was appended to it
    assert {k: summary[k] for k in ("total", "graceful", "immediate", "by_source", "run", "cycles")} == {
        "total": 3,
        "graceful": 2,
        "immediate": 1,
        "by_source": {"USER": 0, "SYSTEM": 2, "PROGRAMMATIC": 1},
        "run": 2,
        "cycles": 1,
    }


@pytest.mark.e2e
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
    rest = [_next(lines, timeout=5) for _ in range(16)]
    assert rest[2] == "📊 EXECUTION STATISTICS\n" and "Scope: run 1 of 1, started 2026-11-24T03:55:00.123Z\n" in rest
    assert "Status: unknown\n" in rest and "  Total Interrupts: 0\n" in rest  # no supervisor holds the lock


# ---- checkpoints -------------------------------------------------------------


def test_checkpoints_list_sizes_and_compression(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    storage = team["storage"]
    _corrupt(storage, "counter-a", team["ids"]["counter-a"][0])  # listing does not verify: still listed, size unknown
    plain = CheckpointStore(storage, "counter-c", compress=False)  # `compress: false` writes gzip's "stored" blocks
    plain.open_for_writing()
    plain.save(cycle=1, status="running", messages=[{"role": "assistant", "content": "cycle 1: " + "one two " * 50}])
    code, out, _ = _run(capsys, "checkpoints", team["config"], "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["agent"], r["cycle"]) for r in rows] == [
        ("counter-a", 1), ("counter-a", 2), ("counter-a", 3), ("counter-b", 1), ("counter-b", 2), ("counter-c", 1),
    ]
    assert all(r["valid"] is None and r["error"] is None for r in rows)
    assert [r["checkpoint_id"] for r in rows[:3]] == team["ids"]["counter-a"]
    for row in rows:
        on_disk = (storage / row["agent"] / row["checkpoint_id"]).stat().st_size
        assert row["size_bytes"] == on_disk > 0
    torn, *whole, stored = rows
    assert (torn["compression"], torn["uncompressed_bytes"], torn["ratio"]) == ("gzip", None, None)
    for row in whole:
        with gzip.open(storage / row["agent"] / row["checkpoint_id"]) as handle:
            content = len(handle.read())
        assert (row["compression"], row["uncompressed_bytes"]) == ("gzip", content)
        assert row["ratio"] == round(content / row["size_bytes"], 2) and row["ratio"] > 1
    assert (stored["compression"], stored["ratio"]) == ("none", None)
    assert stored["size_bytes"] > stored["uncompressed_bytes"] > 400  # stored blocks: the content plus gzip's framing

    code, out, _ = _run(capsys, "checkpoints", team["config"], "--agent", "counter-b")
    assert code == 0
    header, *lines, total = out.splitlines()
    assert header.split() == ["AGENT", "CHECKPOINT", "CYCLE", "SIZE", "UNCOMPRESSED", "COMPRESSION"]
    assert [line.split()[1] for line in lines] == team["ids"]["counter-b"]
    for line, row in zip(lines, rows[3:5]):
        assert f"  {row['size_bytes']} B  " in line and line.endswith(f"gzip {row['ratio']:.1f}x")
    assert total == f"2 checkpoint(s) of 1 agent(s), {rows[3]['size_bytes'] + rows[4]['size_bytes']} B on disk"

    _, out, _ = _run(capsys, "checkpoints", team["config"])
    by_id = {(line.split()[0], line.split()[1]): line for line in out.splitlines()[1:-1]}
    assert by_id["counter-a", torn["checkpoint_id"]].endswith("  ?  gzip (unreadable)")
    assert by_id["counter-c", stored["checkpoint_id"]].endswith("  none")


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


@pytest.mark.e2e
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
    assert (summary["run"], summary["total"], summary["graceful"], summary["immediate"]) == (2, 1, 0, 1)


# ---- logs: filters -------------------------------------------------------------


def _stamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _write_events(storage: Path, events: list[dict[str, Any]]) -> None:
    storage.mkdir(parents=True, exist_ok=True)
    (storage / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def _logs_json(capsys: pytest.CaptureFixture[str], config: str, *argv: str) -> dict[str, Any]:
    code, out, _ = _run(capsys, "logs", config, "--json", *argv)
    assert code == 0
    document: dict[str, Any] = json.loads(out)
    return document


def test_parse_when_forms() -> None:
    now = datetime(2026, 11, 24, 12, 0, 0, tzinfo=timezone.utc)
    ago = {text: now - parse_when(text, now) for text in ("30s", "10m", "2h", "1d", "250ms", "1h30m", "1.5h")}
    assert ago == {
        "30s": timedelta(seconds=30),
        "10m": timedelta(minutes=10),
        "2h": timedelta(hours=2),
        "1d": timedelta(days=1),
        "250ms": timedelta(milliseconds=250),
        "1h30m": timedelta(minutes=90),
        "1.5h": timedelta(minutes=90),
    }
    utc = datetime(2026, 11, 24, 3, 55, 10, tzinfo=timezone.utc)
    for text in ("2026-11-24T03:55:10Z", "2026-11-24T03:55:10", "2026-11-24 03:55:10", "2026-11-24T04:55:10+01:00"):
        assert parse_when(text) == utc, text  # no zone means UTC, as in every event
    assert parse_when("2026-11-24") == datetime(2026, 11, 24, tzinfo=timezone.utc)


def test_logs_level_filter(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    base = datetime(2026, 11, 24, 3, 55, tzinfo=timezone.utc)
    levels = ["debug", "info", "warning", "error", "critical", None]
    events = [{"timestamp": _stamp(base), "level": "info", "event": "supervisor_started", "agent_id": "demo"}]
    for second, level in enumerate(levels, start=1):
        event: dict[str, Any] = {"timestamp": _stamp(base + timedelta(seconds=second)), "event": f"e_{level}", "agent_id": "counter-a"}
        if level is not None:
            event["level"] = level
        events.append(event)
    events.append({"timestamp": _stamp(base + timedelta(seconds=9)), "level": "error", "event": "supervisor_stopped",
                   "agent_id": "demo", "status": "failed", "exit_code": 3})
    _write_events(team["storage"], events)

    def shown(*argv: str) -> list[str]:
        return [e["event"] for e in _logs_json(capsys, team["config"], "--agent", "counter-a", *argv)["events"]]

    assert shown("--level", "warning") == ["e_warning", "e_error", "e_critical"]
    assert shown("--level", "ERROR") == ["e_error", "e_critical"]  # any case
    assert shown("--level", "critical") == ["e_critical"]
    assert shown("--level", "info") == ["e_info", "e_warning", "e_error", "e_critical", "e_None"]  # no level: info
    assert shown("--level", "debug") == shown() == [f"e_{level}" for level in levels]
    # --level picks lines to print; the statistics stay the run's
    summary = _logs_json(capsys, team["config"], "--level", "critical")["summary"]
    assert summary == _logs_json(capsys, team["config"])["summary"] and summary["status"] == "failed"

    code, out, _ = _run(capsys, "logs", team["config"], "--level", "error")
    lines = out.splitlines()
    assert [line.split()[3] for line in lines[: lines.index("")]] == ["e_error", "e_critical", "supervisor_stopped"]


def test_logs_since_until_timestamps(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    def seconds(document: dict[str, Any]) -> list[int]:
        return [int(e["timestamp"][17:19]) for e in document["events"]]

    window = ("--since", "2026-11-24T03:55:10Z", "--until", "2026-11-24T03:55:12.5Z")
    document = _logs_json(capsys, team["config"], *window)
    assert seconds(document) == [10, 11, 12, 12]
    # Same instants written without a zone (UTC) and with an offset.
    assert seconds(_logs_json(capsys, team["config"], "--since", "2026-11-24 03:55:10", "--until", "2026-11-24T04:55:12.5+01:00")) == [10, 11, 12, 12]
    summary = document["summary"]  # run 2 as far as the window sees it: still running at --until
    assert (summary["run"], summary["runs"], summary["status"], summary["stopped_at"]) == (2, 2, "running", None)
    assert (summary["cycles"], summary["total"], summary["by_source"]["SYSTEM"]) == (1, 1, 1)

    document = _logs_json(capsys, team["config"], "--until", "2026-11-24T03:55:06Z")
    assert seconds(document) == [0, 1, 1, 2, 3, 3, 3, 4, 5]
    summary = document["summary"]  # the window's last run is run 1
    assert (summary["run"], summary["runs"], summary["status"], summary["exit_code"]) == (1, 2, "interrupted", 0)
    assert summary["interrupt_latency_ms"] == {"median": 12.5, "max": 12.5, "count": 1}
    assert (summary["total"], summary["by_source"]["USER"], summary["cycles"]) == (1, 1, 1)

    assert seconds(_logs_json(capsys, team["config"], "--since", "2026-11-24T03:55:13.5Z")) == [14]
    code, out, _ = _run(capsys, "logs", team["config"], *window, "--agent", "counter-b")
    lines = out.splitlines()
    assert len([line for line in lines if line.startswith("2026-")]) == 1 and "cycle_completed" in lines[0]
    assert "Scope: run 2 of 2, started 2026-11-24T03:55:10.123Z; agents: counter-b" in lines
    assert "Status: running" in lines and "Cycles: 1" in lines and "  Total Interrupts: 0" in lines


def test_logs_since_until_durations(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(timezone.utc)
    ages = {"2h": timedelta(hours=2), "30m": timedelta(minutes=30), "5m": timedelta(minutes=5), "10s": timedelta(seconds=10)}
    _write_events(team["storage"], [
        {"timestamp": _stamp(now - age), "level": "info", "event": f"ago_{name}", "agent_id": "demo"} for name, age in ages.items()
    ])

    def shown(*argv: str) -> list[str]:
        return [e["event"][4:] for e in _logs_json(capsys, team["config"], *argv)["events"]]

    assert shown("--since", "10m") == ["5m", "10s"]
    assert shown("--since", "90s") == ["10s"]
    assert shown("--since", "1h", "--until", "1m") == ["30m", "5m"]
    assert shown("--since", "1h30m") == ["30m", "5m", "10s"]
    assert shown("--since", "1d") == shown() == ["2h", "30m", "5m", "10s"]
    assert shown("--until", "3h") == []
    # mixed: a duration ago and a timestamp
    assert shown("--since", "3h", "--until", _stamp(now - timedelta(minutes=10))) == ["2h", "30m"]


@pytest.mark.parametrize(
    "argv, phrase",
    [
        (["--since", "yesterday"], "argument --since: invalid time 'yesterday'"),
        (["--until", "10 minutes"], "argument --until: invalid time '10 minutes'"),
        (["--since", "-5m"], "argument --since: expected one argument"),
        (["--since", "2026-13-01"], "invalid time '2026-13-01'"),
        (["--since", ""], "invalid time ''"),
        (["--level", "loud"], "argument --level: invalid choice: 'loud'"),
    ],
)
def test_logs_bad_filter_values_are_usage_errors(
    team: dict[str, Any], capsys: pytest.CaptureFixture[str], argv: list[str], phrase: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["logs", team["config"], *argv])
    out, err = capsys.readouterr()
    assert stopped.value.code == 2 and out == ""
    assert err.count("\n") == 1 and phrase in err and "Traceback" not in err


def test_logs_since_after_until(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "logs", team["config"], "--since", "1m", "--until", "2h", "--json")
    assert (code, out) == (2, "")
    assert err.startswith("error: --since (") and "is after --until" in err and err.count("\n") == 1


def test_logs_repeated_and_comma_lists(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    def agents(*argv: str) -> set[str]:
        return {e["agent_id"] for e in _logs_json(capsys, team["config"], *argv)["events"]}

    assert agents("--agent", "counter-a", "--agent", "counter-b") == {"counter-a", "counter-b"}
    assert agents("--agent", "counter-a,demo") == {"counter-a", "demo"}
    assert agents("--agent", " counter-b , demo,") == {"counter-b", "demo"}
    document = _logs_json(capsys, team["config"], "--event", "worker_started,cycle_completed", "--event", "supervisor_stopped")
    assert [e["event"] for e in document["events"]] == [
        "worker_started", "worker_started", "cycle_completed", "supervisor_stopped", "cycle_completed", "supervisor_stopped",
    ]
    document = _logs_json(capsys, team["config"], "--agent", "counter-a", "--agent", "counter-b", "--event", "interrupt_initiated", "--all-runs")
    assert [(e["agent_id"], e["interrupt_id"]) for e in document["events"]] == [("counter-a", 1), ("counter-b", 1), ("counter-a", 1), ("counter-a", 2)]
    assert document["summary"]["total"] == 3

    code, out, err = _run(capsys, "logs", team["config"], "--agent", "ghost", "--json")
    assert code == 0 and json.loads(out)["events"] == []
    assert "warning: no agent or group named 'ghost' in team 'demo'" in err


def test_run_stats_status() -> None:
    started = {"event": "supervisor_started", "agent_id": "demo", "timestamp": "2026-11-24T03:55:00Z"}
    stats = RunStats()
    stats.add(1, started)
    assert (stats.status(live=True), stats.status(live=False)) == ("running", "unknown")
    stats.add(2, started, "after")  # a later run outside the window: run 1 ended without a word
    assert (stats.run, stats.runs, stats.status(live=True)) == (1, 2, "unknown")
    assert RunStats().status(live=False) == "not started"


@pytest.mark.e2e
def test_follow_stops_by_itself_once_until_passes(team: dict[str, Any]) -> None:
    now = datetime.now(timezone.utc)
    _write_events(team["storage"], [
        {"timestamp": _stamp(now - timedelta(seconds=60 - k)), "level": "info", "event": "cycle_completed", "agent_id": "counter-a",
         "cycle": k, "cost_usd": 0.25}
        for k in (1, 2, 3)
    ])
    proc, lines = _start_follow(team["config"], "--json", "--until", _stamp(now + timedelta(seconds=1)))
    try:
        assert proc.wait(timeout=20) == 0  # no signal: the clock passed --until
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [json.loads(_next(lines))["cycle"] for _ in range(3)] == [1, 2, 3]
    summary = json.loads(_next(lines))["summary"]
    assert (summary["cycles"], summary["budget_spent_usd"], summary["run"]) == (3, 0.75, 0)
    assert lines.empty()


# ---- logs and status against real runs ----------------------------------------------


def _split_runs(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    runs: list[list[dict[str, Any]]] = []
    for event in events:
        if event["event"] == "supervisor_started":
            runs.append([])
        runs[-1].append(event)
    return runs


def _expected(events: list[dict[str, Any]], agent: Optional[str] = None) -> dict[str, Any]:
    mine = [e for e in events if agent in (None, e.get("agent_id"))]
    cycles = by_event(mine, "cycle_completed")
    latencies = [e["latency_ms"] for e in by_event(mine, "interrupt_completed")]
    return {
        "cycles": len(cycles),
        "budget_spent_usd": pytest.approx(sum(e["cost_usd"] for e in cycles), abs=1e-6),
        "restarts": len(by_event(mine, "worker_restarted")),
        "interrupt_latency_ms": {
            "median": pytest.approx(statistics.median(latencies), abs=1e-3) if latencies else None,
            "max": pytest.approx(max(latencies), abs=1e-3) if latencies else None,
            "count": len(latencies),
        },
    }


def test_logs_statistics_of_real_runs(make_team: Callable[..., Team], capsys: pytest.CaptureFixture[str]) -> None:
    """A run with a worker killed and restarted, stopped by SIGTERM; a resume stopped by Ctrl+C."""
    team = make_team(agents=2, latency=0.1, max_cycles=200)
    team.data["llm"]["cost_per_reply"] = 0.01
    team.write()
    config = str(team.config)

    first = team.start()
    first.kill_worker_after("agent-a", 2)
    first.wait_for(lambda ev: by_event(ev, "worker_restarted", "agent-a"), "agent-a restarted")
    first.wait_for(lambda ev: len(by_event(ev, "worker_started", "agent-a")) == 2, "agent-a's new worker")
    first.signal(signal.SIGTERM)
    assert first.wait() == 0, first.output

    second = team.start()
    second.wait_cycles(4)
    second.ctrl_c()
    assert second.wait() == 0, second.output
    run1, run2 = _split_runs(team.events())

    summary = _logs_json(capsys, config)["summary"]  # the last run by default
    assert (summary["run"], summary["runs"], summary["status"], summary["exit_code"]) == (2, 2, "interrupted", 0)
    assert (summary["total"], summary["graceful"], summary["immediate"]) == (1, 1, 0)
    assert summary["by_source"] == {"USER": 1, "SYSTEM": 0, "PROGRAMMATIC": 0}
    assert summary == {**summary, **_expected(run2)}
    assert summary["restarts"] == 0 and summary["cycles"] >= 4 and summary["budget_spent_usd"] > 0
    assert summary["interrupt_latency_ms"]["count"] == 2  # both agents stopped on it

    summary = _logs_json(capsys, config, "--until", run1[-1]["timestamp"])["summary"]  # run 1, up to its last line
    assert (summary["run"], summary["status"], summary["by_source"]["SYSTEM"], summary["total"]) == (1, "interrupted", 1, 1)
    assert summary == {**summary, **_expected(run1)} and summary["restarts"] == 1

    summary = _logs_json(capsys, config, "--all-runs")["summary"]
    assert (summary["run"], summary["runs"], summary["status"], summary["total"]) == (None, 2, "interrupted", 2)
    assert summary["by_source"] == {"USER": 1, "SYSTEM": 1, "PROGRAMMATIC": 0}
    assert summary == {**summary, **_expected(run1 + run2)}

    summary = _logs_json(capsys, config, "--all-runs", "--agent", "agent-b")["summary"]
    assert summary == {**summary, **_expected(run1 + run2, "agent-b")} and summary["restarts"] == 0
    assert summary["total"] == 2  # agent-b acknowledged both stops

    # The killed worker's exit is an error line; --level error shows nothing below it.
    shown = _logs_json(capsys, config, "--level", "error")["events"]
    assert shown and all(e["level"] in ("error", "critical") for e in shown)

    code, out, _ = _run(capsys, "logs", config, "--event", "supervisor_stopped")
    stops, block = out.splitlines()[:2], out.splitlines()[2:]
    assert [line.split()[3] for line in stops] == ["supervisor_stopped"] * 2
    latency = _logs_json(capsys, config)["summary"]["interrupt_latency_ms"]
    assert block[:4] == ["", RULE, "📊 EXECUTION STATISTICS", RULE]
    assert block[4].startswith(f"Scope: run 2 of 2, started {short_time(run2[0]['timestamp'])}, stopped ")
    assert block[5:9] == [
        "Status: interrupted",
        f"Cycles: {len(by_event(run2, 'cycle_completed'))}",
        f"Budget Spent: ${sum(e['cost_usd'] for e in by_event(run2, 'cycle_completed')):.4f}",
        "Restarts: 0",
    ]
    assert block[10:] == [
        "Interrupt Metrics:",
        "  Total Interrupts: 1",
        "  Graceful: 1",
        "  Immediate: 0",
        "  By Source: USER 1, SYSTEM 0, PROGRAMMATIC 0",
        f"  Latency: median {latency['median']:.1f} ms, max {latency['max']:.1f} ms (2 agent stops)",
        RULE,
    ]


def test_live_run_status_logs_prune_refused_then_prune_and_resume(
    make_team: Callable[..., Team], capsys: pytest.CaptureFixture[str]
) -> None:
    team = make_team(agents=2, latency=0.3, max_cycles=10)
    config = str(team.config)
    run = team.start()
    run.wait_all_started()
    run.wait_for(lambda ev: all(len(by_event(ev, "checkpoint_saved", n)) >= 2 for n in team.names), "2 checkpoints each")

    code, out, _ = _run(capsys, "status", config)
    assert code == 0
    title, header, *rows = out.splitlines()
    assert title.startswith(f"team test-team: RUN LIVE (pid {run.pid}, started 20")
    assert [row.split()[:2] for row in rows] == [["agent-a", "running"], ["agent-b", "running"]]
    code, out, _ = _run(capsys, "status", config, "--json")
    assert [(r["status"], r["run_live"]) for r in json.loads(out)] == [("running", True)] * 2
    summary = _logs_json(capsys, config)["summary"]
    assert (summary["status"], summary["run"], summary["stopped_at"]) == ("running", 1, None)

    before = {n: [i.checkpoint_id for i in team.store(n).list()] for n in team.names}
    code, out, err = _run(capsys, "checkpoints", config, "--prune", "1")
    assert (code, out) == (2, "")
    assert err == (
        f"error: storage {team.storage.resolve()}: team 'test-team' is running there (pid {run.pid}); "
        "stop it before pruning checkpoints\n"
    )
    code, out, err = _run(capsys, "checkpoints", config, "--prune", "1", "--json")
    assert (code, out) == (2, "") and "is running there" in err
    for name, ids in before.items():
        assert set(ids) <= {i.checkpoint_id for i in team.store(name).list()}  # nothing deleted

    run.ctrl_c()
    assert run.wait() == 0, run.output
    code, out, _ = _run(capsys, "status", config)
    assert out.splitlines()[0].startswith("team test-team: no run live; the last one interrupted at ")
    latest = {n: team.latest(n) for n in team.names}
    assert all(c is not None and 2 <= c.cycle < 10 for c in latest.values())
    count = {n: len(team.store(n).list()) for n in team.names}

    code, out, _ = _run(capsys, "checkpoints", config, "--prune", "1", "--json")
    assert code == 0
    document = json.loads(out)
    assert [(k["agent"], k["checkpoint_id"]) for k in document["kept"]] == [(n, latest[n].checkpoint_id) for n in team.names]
    assert len(document["removed"]) == sum(count[n] - 1 for n in team.names)
    assert [i.checkpoint_id for n in team.names for i in team.store(n).list()] == [latest[n].checkpoint_id for n in team.names]

    again = team.run()
    assert again.proc.returncode == 0, again.output
    for name in team.names:
        assert team.assert_exactly_once(name, 10).status == "completed"
    resumed = {e["agent_id"]: e["cycle"] for e in by_event(again.new_events(), "worker_started")}
    assert resumed == {n: latest[n].cycle for n in team.names}


# ---- checkpoints --prune -------------------------------------------------------------


def test_prune_keeps_the_newest_n(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    storage, ids = team["storage"], team["ids"]
    sizes = {(agent, cid): (storage / agent / cid).stat().st_size for agent in ids for cid in ids[agent]}
    code, out, _ = _run(capsys, "checkpoints", team["config"], "--prune", "2", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["keep"] == 2 and document["not_removed"] == []
    assert [(r["agent"], r["checkpoint_id"], r["cycle"]) for r in document["removed"]] == [("counter-a", ids["counter-a"][0], 1)]
    assert document["freed_bytes"] == sizes["counter-a", ids["counter-a"][0]] == document["removed"][0]["size_bytes"]
    assert [(k["agent"], k["cycle"]) for k in document["kept"]] == [("counter-a", 2), ("counter-a", 3), ("counter-b", 1), ("counter-b", 2)]
    assert sorted(p.name for p in (storage / "counter-a").iterdir()) == ids["counter-a"][1:]

    a2, b1 = sizes["counter-a", ids["counter-a"][1]], sizes["counter-b", ids["counter-b"][0]]
    code, out, _ = _run(capsys, "checkpoints", team["config"], "--prune", "1")
    assert code == 0
    assert out.splitlines() == [
        f"counter-a: removed 1 checkpoint(s) (cycle 2), {a2} B freed; kept 1, newest {ids['counter-a'][2]}",
        f"counter-b: removed 1 checkpoint(s) (cycle 1), {b1} B freed; kept 1, newest {ids['counter-b'][1]}",
        "counter-c: nothing to remove (0 checkpoint(s), keeping up to 1)",
        f"removed 2 checkpoint(s), {a2 + b1} B freed",
    ]
    code, out, _ = _run(capsys, "checkpoints", team["config"], "--prune", "1", "--agent", "counter-a")
    assert (code, out.splitlines()[-1]) == (0, "removed 0 checkpoint(s), 0 B freed")
    code, out, _ = _run(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--show")
    assert json.loads(out)["cycle"] == 3  # resumable from where it was


def test_prune_never_deletes_the_newest_valid_checkpoint(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    ids = team["ids"]["counter-a"]
    for cid in ids[1:]:
        _corrupt(team["storage"], "counter-a", cid)  # the newest two are damaged: cycle 1 is the one to resume from
    code, out, _ = _run(capsys, "checkpoints", team["config"], "--prune", "1", "--agent", "counter-a", "--json")
    assert code == 0
    document = json.loads(out)
    assert [r["checkpoint_id"] for r in document["removed"]] == [ids[1]]
    assert [k["checkpoint_id"] for k in document["kept"]] == [ids[0], ids[2]]  # the newest by name, and the newest valid
    code, out, _ = _run(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--show", "latest")
    assert code == 0 and json.loads(out)["cycle"] == 1


def test_prune_newest_is_highest_cycle_then_last_written(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    storage = team["storage"]
    messages = [{"role": "assistant", "content": "cycle 1: x"}]
    first = CheckpointStore(storage, "counter-c")
    first.open_for_writing()
    for cycle in (1, 2, 3):
        first.save(cycle=cycle, status="running", messages=messages)
    later = CheckpointStore(storage, "counter-c")  # a second run's worker: names go on from seq 4
    later.open_for_writing()
    later.save(cycle=3, status="running", messages=messages)  # the same cycle again, written last
    later.save(cycle=2, status="running", messages=messages)  # a lower cycle written after it (a fallback)
    code, out, _ = _run(capsys, "checkpoints", team["config"], "--prune", "2", "--agent", "counter-c", "--json")
    assert code == 0
    document = json.loads(out)
    assert [k["checkpoint_id"] for k in document["kept"]] == ["checkpoint_00000003_00000003.jsonl.gz", "checkpoint_00000003_00000004.jsonl.gz"]
    assert [r["checkpoint_id"] for r in document["removed"]] == [
        "checkpoint_00000001_00000001.jsonl.gz", "checkpoint_00000002_00000002.jsonl.gz", "checkpoint_00000002_00000005.jsonl.gz",
    ]


@pytest.mark.parametrize(
    "argv, phrase",
    [
        (["--prune", "0"], "argument --prune: must keep at least 1 checkpoint per agent (got 0)"),
        (["--prune", "-1"], "argument --prune: must keep at least 1 checkpoint per agent (got -1)"),
        (["--prune", "two"], "argument --prune: expected a whole number of checkpoints to keep, got 'two'"),
        (["--prune"], "argument --prune: expected one argument"),
    ],
)
def test_prune_bad_counts_are_usage_errors(
    team: dict[str, Any], capsys: pytest.CaptureFixture[str], argv: list[str], phrase: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["checkpoints", team["config"], *argv])
    out, err = capsys.readouterr()
    assert stopped.value.code == 2 and out == "" and err.count("\n") == 1 and phrase in err
    assert len(CheckpointStore(team["storage"], "counter-a").list()) == 3


def test_prune_other_mistakes(team: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for extra in (["--verify"], ["--agent", "counter-a", "--show"]):
        code, out, err = _run(capsys, "checkpoints", team["config"], "--prune", "1", *extra)
        assert (code, out, err) == (2, "", "error: --prune cannot be combined with --show or --verify\n")
    code, out, err = _run(capsys, "checkpoints", team["config"], "--prune", "1", "--agent", "nobody")
    assert (code, out) == (2, "") and "no agent named 'nobody'" in err and err.count("\n") == 1
    assert len(CheckpointStore(team["storage"], "counter-a").list()) == 3

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "team.yaml").write_text(CONFIG)
    code, out, _ = _run(capsys, "checkpoints", str(empty / "team.yaml"), "--prune", "1", "--json")
    assert code == 0 and json.loads(out) == {"keep": 1, "removed": [], "freed_bytes": 0, "kept": [], "not_removed": []}
    assert not (empty / "state").exists()  # nothing created where there was nothing
