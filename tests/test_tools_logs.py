"""`logs` against real state: filters, the closing statistics, and --follow in a real process with real signals."""

from __future__ import annotations

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
from tools_state import (
    CONFIG,
    EVENTS,
    LONG_REPLY,
    event_line,
    interrupt_line,
    logs_json,
    run_cli,
    stamp,
    write_events,
)

from supervisor.cli import main, parse_when
from supervisor.terminal.console import RULE
from supervisor.tools.stats import InterruptSummary, RunStats
from supervisor.tools.text import format_event, short_time


# ---- logs --------------------------------------------------------------------


def test_logs_json_counts_each_interrupt_once_per_run(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "logs", team["config"], "--json")
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

    _, out, _ = run_cli(capsys, "logs", team["config"], "--json", "--all-runs")
    summary = json.loads(out)["summary"]
    assert {k: summary[k] for k in ("total", "graceful", "immediate", "by_source")} == {
        "total": 3,
        "graceful": 2,
        "immediate": 1,
        "by_source": {"USER": 1, "SYSTEM": 2, "PROGRAMMATIC": 0},
    }
    assert (summary["run"], summary["runs"], summary["status"], summary["cycles"]) == (None, 2, "interrupted", 2)


@pytest.mark.parametrize("argv", [[], ["--all-runs", "--agent", "counter-b"], ["--event", "no_such_event"]], ids=str)
def test_logs_json_is_laid_out_as_json_dumps_would(
    team: dict[str, Any], capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """The document is written event by event, and still reads exactly as one json.dumps(indent=2) of it."""
    code, out, _ = run_cli(capsys, "logs", team["config"], "--json", *argv)
    assert code == 0
    assert out == json.dumps(json.loads(out), indent=2, ensure_ascii=False) + "\n"


def test_logs_filters(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_cli(capsys, "logs", team["config"], "--agent", "counter-b", "--json", "--all-runs")
    document = json.loads(out)
    assert {e["agent_id"] for e in document["events"]} == {"counter-b"}
    assert document["summary"]["total"] == 1 and document["summary"]["by_source"]["USER"] == 1
    _, out, _ = run_cli(capsys, "logs", team["config"], "--agent", "counter-b", "--json")
    summary = json.loads(out)["summary"]  # the last run: counter-b had a cycle and no interrupt in it
    assert (summary["run"], summary["total"], summary["cycles"], summary["status"]) == (2, 0, 1, "interrupted")

    _, out, _ = run_cli(capsys, "logs", team["config"], "--event", "interrupt_initiated", "--agent", "demo", "--json")
    document = json.loads(out)
    assert [e["interrupt_id"] for e in document["events"]] == [1, 1, 2]
    assert document["summary"]["total"] == 2

    # The summary ignores --event: filtering on cycles still ends with the run's interrupts.
    _, out, _ = run_cli(capsys, "logs", team["config"], "--json")
    everything = json.loads(out)["summary"]
    _, out, _ = run_cli(capsys, "logs", team["config"], "--event", "cycle_completed", "--json")
    document = json.loads(out)
    assert [e["cycle"] for e in document["events"]] == [1, 2]
    assert document["summary"] == everything and everything["total"] > 0


def test_logs_text(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "logs", team["config"], "--agent", "counter-a")
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

    _, out, _ = run_cli(capsys, "logs", team["config"], "--event", "cycle_completed", "--agent", "counter-b", "--all-runs")
    (line, _blank, *block) = out.splitlines()
    assert "..." in line and LONG_REPLY not in line and len(line) < 200
    assert "  Total Interrupts: 1" in block and "Cycles: 1" in block  # counter-b's, whatever --event says


def test_logs_without_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "team.yaml").write_text(CONFIG)
    code, out, err = run_cli(capsys, "logs", str(tmp_path / "team.yaml"), "--json")
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
        new = event_line(20, "cycle_completed", "counter-a", cycle=2, max_cycles=10, duration_ms=5.0, reply="cycle 2: x")
        half = len(new) // 2
        _append(events, event_line(20, "cycle_completed", "counter-b", cycle=3) + "\n" + new[:half])  # a line caught mid-write
        time.sleep(0.6)
        assert lines.empty()
        _append(events, new[half:] + "\n")
        assert json.loads(_next(lines))["cycle"] == 2
        _append(events, interrupt_line(21, "counter-a", 3, "PROGRAMMATIC", "GRACEFUL", "budget") + "\n")
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
    first = ""
    try:
        stderr = proc.stderr
        assert stderr is not None
        said: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: said.put(stderr.readline()), daemon=True).start()
        first = _next(said)  # "no events yet": it is waiting for the file, so only now does the file appear
        storage = tmp_path / "state"
        storage.mkdir()
        _append(storage / "events.jsonl", EVENTS[0] + "\n")
        assert "supervisor_started" in _next(lines)
    finally:
        err = first + _stop(proc, signal.SIGTERM)
    assert proc.returncode == 0
    assert "no events yet" in err and "Traceback" not in err
    rest = [_next(lines, timeout=5) for _ in range(16)]
    assert rest[2] == "📊 EXECUTION STATISTICS\n" and "Scope: run 1 of 1, started 2026-11-24T03:55:00.123Z\n" in rest
    assert "Status: unknown\n" in rest and "  Total Interrupts: 0\n" in rest  # no supervisor holds the lock


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
        _append(events, EVENTS[9] + "\n" + interrupt_line(30, "demo", 1, "USER", "IMMEDIATE", "again") + "\n")
        assert json.loads(_next(lines))["message"] == "again"
    finally:
        err = _stop(proc, signal.SIGINT)
    assert proc.returncode == 0 and "Traceback" not in err
    summary = json.loads(_next(lines, timeout=5))["summary"]
    assert (summary["run"], summary["total"], summary["graceful"], summary["immediate"]) == (2, 1, 0, 1)



# ---- logs: filters -------------------------------------------------------------


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
    events = [{"timestamp": stamp(base), "level": "info", "event": "supervisor_started", "agent_id": "demo"}]
    for second, level in enumerate(levels, start=1):
        event: dict[str, Any] = {"timestamp": stamp(base + timedelta(seconds=second)), "event": f"e_{level}", "agent_id": "counter-a"}
        if level is not None:
            event["level"] = level
        events.append(event)
    events.append({"timestamp": stamp(base + timedelta(seconds=9)), "level": "error", "event": "supervisor_stopped",
                   "agent_id": "demo", "status": "failed", "exit_code": 3})
    write_events(team["storage"], events)

    def shown(*argv: str) -> list[str]:
        return [e["event"] for e in logs_json(capsys, team["config"], "--agent", "counter-a", *argv)["events"]]

    assert shown("--level", "warning") == ["e_warning", "e_error", "e_critical"]
    assert shown("--level", "ERROR") == ["e_error", "e_critical"]  # any case
    assert shown("--level", "critical") == ["e_critical"]
    assert shown("--level", "info") == ["e_info", "e_warning", "e_error", "e_critical", "e_None"]  # no level: info
    assert shown("--level", "debug") == shown() == [f"e_{level}" for level in levels]
    # --level picks lines to print; the statistics stay the run's
    summary = logs_json(capsys, team["config"], "--level", "critical")["summary"]
    assert summary == logs_json(capsys, team["config"])["summary"] and summary["status"] == "failed"

    code, out, _ = run_cli(capsys, "logs", team["config"], "--level", "error")
    lines = out.splitlines()
    assert [line.split()[3] for line in lines[: lines.index("")]] == ["e_error", "e_critical", "supervisor_stopped"]


def test_logs_since_until_timestamps(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    def seconds(document: dict[str, Any]) -> list[int]:
        return [int(e["timestamp"][17:19]) for e in document["events"]]

    window = ("--since", "2026-11-24T03:55:10Z", "--until", "2026-11-24T03:55:12.5Z")
    document = logs_json(capsys, team["config"], *window)
    assert seconds(document) == [10, 11, 12, 12]
    # Same instants written without a zone (UTC) and with an offset.
    assert seconds(logs_json(capsys, team["config"], "--since", "2026-11-24 03:55:10", "--until", "2026-11-24T04:55:12.5+01:00")) == [10, 11, 12, 12]
    summary = document["summary"]  # run 2 as far as the window sees it: still running at --until
    assert (summary["run"], summary["runs"], summary["status"], summary["stopped_at"]) == (2, 2, "running", None)
    assert (summary["cycles"], summary["total"], summary["by_source"]["SYSTEM"]) == (1, 1, 1)

    document = logs_json(capsys, team["config"], "--until", "2026-11-24T03:55:06Z")
    assert seconds(document) == [0, 1, 1, 2, 3, 3, 3, 4, 5]
    summary = document["summary"]  # the window's last run is run 1
    assert (summary["run"], summary["runs"], summary["status"], summary["exit_code"]) == (1, 2, "interrupted", 0)
    assert summary["interrupt_latency_ms"] == {"median": 12.5, "max": 12.5, "count": 1}
    assert (summary["total"], summary["by_source"]["USER"], summary["cycles"]) == (1, 1, 1)

    assert seconds(logs_json(capsys, team["config"], "--since", "2026-11-24T03:55:13.5Z")) == [14]
    code, out, _ = run_cli(capsys, "logs", team["config"], *window, "--agent", "counter-b")
    lines = out.splitlines()
    assert len([line for line in lines if line.startswith("2026-")]) == 1 and "cycle_completed" in lines[0]
    assert "Scope: run 2 of 2, started 2026-11-24T03:55:10.123Z; agents: counter-b" in lines
    assert "Status: running" in lines and "Cycles: 1" in lines and "  Total Interrupts: 0" in lines


def test_logs_since_until_durations(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(timezone.utc)
    ages = {"2h": timedelta(hours=2), "30m": timedelta(minutes=30), "5m": timedelta(minutes=5), "10s": timedelta(seconds=10)}
    write_events(team["storage"], [
        {"timestamp": stamp(now - age), "level": "info", "event": f"ago_{name}", "agent_id": "demo"} for name, age in ages.items()
    ])

    def shown(*argv: str) -> list[str]:
        return [e["event"][4:] for e in logs_json(capsys, team["config"], *argv)["events"]]

    assert shown("--since", "10m") == ["5m", "10s"]
    assert shown("--since", "90s") == ["10s"]
    assert shown("--since", "1h", "--until", "1m") == ["30m", "5m"]
    assert shown("--since", "1h30m") == ["30m", "5m", "10s"]
    assert shown("--since", "1d") == shown() == ["2h", "30m", "5m", "10s"]
    assert shown("--until", "3h") == []
    # mixed: a duration ago and a timestamp
    assert shown("--since", "3h", "--until", stamp(now - timedelta(minutes=10))) == ["2h", "30m"]


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
    code, out, err = run_cli(capsys, "logs", team["config"], "--since", "1m", "--until", "2h", "--json")
    assert (code, out) == (2, "")
    assert err.startswith("error: --since (") and "is after --until" in err and err.count("\n") == 1


def test_logs_repeated_and_comma_lists(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    def agents(*argv: str) -> set[str]:
        return {e["agent_id"] for e in logs_json(capsys, team["config"], *argv)["events"]}

    assert agents("--agent", "counter-a", "--agent", "counter-b") == {"counter-a", "counter-b"}
    assert agents("--agent", "counter-a,demo") == {"counter-a", "demo"}
    assert agents("--agent", " counter-b , demo,") == {"counter-b", "demo"}
    document = logs_json(capsys, team["config"], "--event", "worker_started,cycle_completed", "--event", "supervisor_stopped")
    assert [e["event"] for e in document["events"]] == [
        "worker_started", "worker_started", "cycle_completed", "supervisor_stopped", "cycle_completed", "supervisor_stopped",
    ]
    document = logs_json(capsys, team["config"], "--agent", "counter-a", "--agent", "counter-b", "--event", "interrupt_initiated", "--all-runs")
    assert [(e["agent_id"], e["interrupt_id"]) for e in document["events"]] == [("counter-a", 1), ("counter-b", 1), ("counter-a", 1), ("counter-a", 2)]
    assert document["summary"]["total"] == 3

    code, out, err = run_cli(capsys, "logs", team["config"], "--agent", "ghost", "--json")
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
    write_events(team["storage"], [
        {"timestamp": stamp(now - timedelta(seconds=60 - k)), "level": "info", "event": "cycle_completed", "agent_id": "counter-a",
         "cycle": k, "cost_usd": 0.25}
        for k in (1, 2, 3)
    ])
    proc, lines = _start_follow(team["config"], "--json", "--until", stamp(now + timedelta(seconds=1)))
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

    summary = logs_json(capsys, config)["summary"]  # the last run by default
    assert (summary["run"], summary["runs"], summary["status"], summary["exit_code"]) == (2, 2, "interrupted", 0)
    assert (summary["total"], summary["graceful"], summary["immediate"]) == (1, 1, 0)
    assert summary["by_source"] == {"USER": 1, "SYSTEM": 0, "PROGRAMMATIC": 0}
    assert summary == {**summary, **_expected(run2)}
    assert summary["restarts"] == 0 and summary["cycles"] >= 4 and summary["budget_spent_usd"] > 0
    assert summary["interrupt_latency_ms"]["count"] == 2  # both agents stopped on it

    summary = logs_json(capsys, config, "--until", run1[-1]["timestamp"])["summary"]  # run 1, up to its last line
    assert (summary["run"], summary["status"], summary["by_source"]["SYSTEM"], summary["total"]) == (1, "interrupted", 1, 1)
    assert summary == {**summary, **_expected(run1)} and summary["restarts"] == 1

    summary = logs_json(capsys, config, "--all-runs")["summary"]
    assert (summary["run"], summary["runs"], summary["status"], summary["total"]) == (None, 2, "interrupted", 2)
    assert summary["by_source"] == {"USER": 1, "SYSTEM": 1, "PROGRAMMATIC": 0}
    assert summary == {**summary, **_expected(run1 + run2)}

    summary = logs_json(capsys, config, "--all-runs", "--agent", "agent-b")["summary"]
    assert summary == {**summary, **_expected(run1 + run2, "agent-b")} and summary["restarts"] == 0
    assert summary["total"] == 2  # agent-b acknowledged both stops

    # The killed worker's exit is an error line; --level error shows nothing below it.
    shown = logs_json(capsys, config, "--level", "error")["events"]
    assert shown and all(e["level"] in ("error", "critical") for e in shown)

    code, out, _ = run_cli(capsys, "logs", config, "--event", "supervisor_stopped")
    stops, block = out.splitlines()[:2], out.splitlines()[2:]
    assert [line.split()[3] for line in stops] == ["supervisor_stopped"] * 2
    latency = logs_json(capsys, config)["summary"]["interrupt_latency_ms"]
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

