"""`status` against real state: rows from checkpoints and events, a live run, and no writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
from harness import Team, by_event
from tools_state import CONFIG, corrupt, logs_json, run_cli

from supervisor.cli import main


# ---- status ------------------------------------------------------------------


def test_status_json(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "status", team["config"], "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["agent"] for r in rows] == ["counter-a", "counter-b", "counter-c"]
    a, b, c = rows
    assert set(a) == {
        "agent", "status", "cycle", "max_cycles", "checkpoint_id", "budget_spent_usd", "last_interrupt", "corrupt", "run_live", "question",
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
    code, out, _ = run_cli(capsys, "status", team["config"])
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
    corrupt(team["storage"], "counter-a", latest)
    code, out, _ = run_cli(capsys, "status", team["config"], "--json")
    assert code == 0
    a = json.loads(out)[0]
    assert (a["cycle"], a["checkpoint_id"], a["corrupt"]) == (2, team["ids"]["counter-a"][1], [latest])


def test_status_without_storage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "team.yaml").write_text(CONFIG)
    code, out, _ = run_cli(capsys, "status", str(tmp_path / "team.yaml"), "--json")
    assert code == 0
    assert [r["status"] for r in json.loads(out)] == ["not started"] * 3
    assert not (tmp_path / "state").exists()  # read-only: nothing created



# ---- the read-only commands together --------------------------------------------


def test_commands_never_write(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    def snapshot() -> dict[str, tuple[int, float]]:
        return {str(p): (p.stat().st_size, p.stat().st_mtime) for p in team["storage"].rglob("*")}

    before = snapshot()
    for argv in (["status"], ["logs"], ["checkpoints", "--verify"], ["checkpoints", "--agent", "counter-a", "--show"]):
        main([argv[0], team["config"], *argv[1:]])
    capsys.readouterr()
    assert snapshot() == before


def test_live_run_status_logs_prune_refused_then_prune_and_resume(
    make_team: Callable[..., Team], capsys: pytest.CaptureFixture[str]
) -> None:
    team = make_team(agents=2, latency=0.3, max_cycles=10)
    config = str(team.config)
    run = team.start()
    run.wait_all_started()
    run.wait_for(lambda ev: all(len(by_event(ev, "checkpoint_saved", n)) >= 2 for n in team.names), "2 checkpoints each")

    code, out, _ = run_cli(capsys, "status", config)
    assert code == 0
    title, header, *rows = out.splitlines()
    assert title.startswith(f"team test-team: RUN LIVE (pid {run.pid}, started 20")
    assert [row.split()[:2] for row in rows] == [["agent-a", "running"], ["agent-b", "running"]]
    code, out, _ = run_cli(capsys, "status", config, "--json")
    assert [(r["status"], r["run_live"]) for r in json.loads(out)] == [("running", True)] * 2
    summary = logs_json(capsys, config)["summary"]
    assert (summary["status"], summary["run"], summary["stopped_at"]) == ("running", 1, None)

    before = {n: [i.checkpoint_id for i in team.store(n).list()] for n in team.names}
    code, out, err = run_cli(capsys, "checkpoints", config, "--prune", "1")
    assert (code, out) == (2, "")
    assert err == (
        f"error: storage {team.storage.resolve()}: team 'test-team' is running there (pid {run.pid}); "
        "stop it before pruning checkpoints\n"
    )
    code, out, err = run_cli(capsys, "checkpoints", config, "--prune", "1", "--json")
    assert (code, out) == (2, "") and "is running there" in err
    for name, ids in before.items():
        assert set(ids) <= {i.checkpoint_id for i in team.store(name).list()}  # nothing deleted

    run.ctrl_c()
    assert run.wait() == 0, run.output
    code, out, _ = run_cli(capsys, "status", config)
    assert out.splitlines()[0].startswith("team test-team: no run live; the last one interrupted at ")
    latest = {n: team.latest(n) for n in team.names}
    assert all(c is not None and 2 <= c.cycle < 10 for c in latest.values())
    count = {n: len(team.store(n).list()) for n in team.names}

    code, out, _ = run_cli(capsys, "checkpoints", config, "--prune", "1", "--json")
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

