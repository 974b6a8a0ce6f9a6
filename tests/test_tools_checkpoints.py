"""`checkpoints` against real state: list with sizes and compression, verify, show, and prune."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from tools_state import CONFIG, corrupt, run_cli

from protocol.checkpoints import CheckpointStore
from supervisor.cli import main


# ---- checkpoints -------------------------------------------------------------


def test_checkpoints_list_sizes_and_compression(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    storage = team["storage"]
    corrupt(storage, "counter-a", team["ids"]["counter-a"][0])  # listing does not verify: still listed, size unknown
    plain = CheckpointStore(storage, "counter-c", compress=False)  # `compress: false` writes gzip's "stored" blocks
    plain.open_for_writing()
    plain.save(cycle=1, status="running", messages=[{"role": "assistant", "content": "cycle 1: " + "one two " * 50}])
    code, out, _ = run_cli(capsys, "checkpoints", team["config"], "--json")
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

    code, out, _ = run_cli(capsys, "checkpoints", team["config"], "--agent", "counter-b")
    assert code == 0
    header, *lines, total = out.splitlines()
    assert header.split() == ["AGENT", "CHECKPOINT", "CYCLE", "SIZE", "UNCOMPRESSED", "COMPRESSION"]
    assert [line.split()[1] for line in lines] == team["ids"]["counter-b"]
    for line, row in zip(lines, rows[3:5]):
        assert f"  {row['size_bytes']} B  " in line and line.endswith(f"gzip {row['ratio']:.1f}x")
    assert total == f"2 checkpoint(s) of 1 agent(s), {rows[3]['size_bytes'] + rows[4]['size_bytes']} B on disk"

    _, out, _ = run_cli(capsys, "checkpoints", team["config"])
    by_id = {(line.split()[0], line.split()[1]): line for line in out.splitlines()[1:-1]}
    assert by_id["counter-a", torn["checkpoint_id"]].endswith("  ?  gzip (unreadable)")
    assert by_id["counter-c", stored["checkpoint_id"]].endswith("  none")


def test_checkpoints_verify(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "checkpoints", team["config"], "--verify", "--json")
    assert code == 0
    assert all(r["valid"] is True for r in json.loads(out))

    bad = team["ids"]["counter-a"][1]
    corrupt(team["storage"], "counter-a", bad)
    code, out, _ = run_cli(capsys, "checkpoints", team["config"], "--verify", "--json")
    assert code == 1
    rows = {(r["agent"], r["checkpoint_id"]): r for r in json.loads(out)}
    assert rows["counter-a", bad]["valid"] is False and "truncated" in rows["counter-a", bad]["error"]
    assert sum(1 for r in rows.values() if r["valid"] is False) == 1

    code, out, _ = run_cli(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--verify")
    assert code == 1
    verdicts = [line for line in out.splitlines() if line.startswith("counter-a")]
    assert [("corrupt:" in line) for line in verdicts] == [False, True, False]
    assert out.splitlines()[-1] == "verified 3 checkpoint(s): 1 corrupt"


def test_checkpoints_show(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    ids = team["ids"]["counter-a"]
    code, out, _ = run_cli(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--show")
    assert code == 0
    state = json.loads(out)
    assert (state["agent"], state["checkpoint_id"], state["cycle"], state["status"]) == ("counter-a", ids[-1], 3, "interrupted")
    assert {"messages", "budget_spent_usd", "created_at"} <= set(state)
    assert [m["content"] for m in state["messages"] if m["role"] == "assistant"] == [f"cycle {k}: ..." for k in (1, 2, 3)]

    code, out, _ = run_cli(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--show", ids[0])
    assert code == 0 and json.loads(out)["cycle"] == 1

    corrupt(team["storage"], "counter-a", ids[-1])
    code, out, err = run_cli(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--show", "latest", "--json")
    assert code == 0 and json.loads(out)["cycle"] == 2
    assert f"checkpoint {ids[-1]} of agent 'counter-a' is corrupt" in err

    code, out, err = run_cli(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--show", ids[-1])
    assert code == 1 and out == ""
    assert err.startswith(f"error: checkpoint {ids[-1]} of agent 'counter-a' is corrupt: ") and err.count("\n") == 1

    code, out, err = run_cli(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--show", "no-such-id")
    assert code == 1 and out == "" and "no-such-id" in err and err.count("\n") == 1

    missing = "checkpoint_00000099_00000099.jsonl.gz"
    code, out, err = run_cli(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--show", missing)
    assert (code, out) == (1, "")
    assert err == f"error: checkpoint {missing} of agent 'counter-a' is corrupt: missing\n"


def test_checkpoints_show_latest_without_any(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "checkpoints", team["config"], "--agent", "counter-c", "--show", "latest")
    assert (code, out) == (1, "")
    assert err == "error: agent 'counter-c' has no valid checkpoint\n"


def test_checkpoints_usage_errors(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "checkpoints", team["config"], "--agent", "nobody")
    assert (code, out) == (2, "")
    assert err.strip() == f"error: {Path(team['config']).absolute()}: no agent named 'nobody' in team 'demo'"

    code, _, err = run_cli(capsys, "checkpoints", team["config"], "--show")
    assert code == 2 and "--show needs --agent" in err
    code, _, err = run_cli(capsys, "checkpoints", team["config"], "--agent", "nobody", "--show")
    assert code == 2 and "no agent named 'nobody'" in err


# ---- checkpoints --prune -------------------------------------------------------------


def test_prune_keeps_the_newest_n(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    storage, ids = team["storage"], team["ids"]
    sizes = {(agent, cid): (storage / agent / cid).stat().st_size for agent in ids for cid in ids[agent]}
    code, out, _ = run_cli(capsys, "checkpoints", team["config"], "--prune", "2", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["keep"] == 2 and document["not_removed"] == []
    assert [(r["agent"], r["checkpoint_id"], r["cycle"]) for r in document["removed"]] == [("counter-a", ids["counter-a"][0], 1)]
    assert document["freed_bytes"] == sizes["counter-a", ids["counter-a"][0]] == document["removed"][0]["size_bytes"]
    assert [(k["agent"], k["cycle"]) for k in document["kept"]] == [("counter-a", 2), ("counter-a", 3), ("counter-b", 1), ("counter-b", 2)]
    assert sorted(p.name for p in (storage / "counter-a").iterdir()) == ids["counter-a"][1:]

    a2, b1 = sizes["counter-a", ids["counter-a"][1]], sizes["counter-b", ids["counter-b"][0]]
    code, out, _ = run_cli(capsys, "checkpoints", team["config"], "--prune", "1")
    assert code == 0
    assert out.splitlines() == [
        f"counter-a: removed 1 checkpoint(s) (cycle 2), {a2} B freed; kept 1, newest {ids['counter-a'][2]}",
        f"counter-b: removed 1 checkpoint(s) (cycle 1), {b1} B freed; kept 1, newest {ids['counter-b'][1]}",
        "counter-c: nothing to remove (0 checkpoint(s), keeping up to 1)",
        f"removed 2 checkpoint(s), {a2 + b1} B freed",
    ]
    code, out, _ = run_cli(capsys, "checkpoints", team["config"], "--prune", "1", "--agent", "counter-a")
    assert (code, out.splitlines()[-1]) == (0, "removed 0 checkpoint(s), 0 B freed")
    code, out, _ = run_cli(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--show")
    assert json.loads(out)["cycle"] == 3  # resumable from where it was


def test_prune_never_deletes_the_newest_valid_checkpoint(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    ids = team["ids"]["counter-a"]
    for cid in ids[1:]:
        corrupt(team["storage"], "counter-a", cid)  # the newest two are damaged: cycle 1 is the one to resume from
    code, out, _ = run_cli(capsys, "checkpoints", team["config"], "--prune", "1", "--agent", "counter-a", "--json")
    assert code == 0
    document = json.loads(out)
    assert [r["checkpoint_id"] for r in document["removed"]] == [ids[1]]
    assert [k["checkpoint_id"] for k in document["kept"]] == [ids[0], ids[2]]  # the newest by name, and the newest valid
    code, out, _ = run_cli(capsys, "checkpoints", team["config"], "--agent", "counter-a", "--show", "latest")
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
    code, out, _ = run_cli(capsys, "checkpoints", team["config"], "--prune", "2", "--agent", "counter-c", "--json")
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
        code, out, err = run_cli(capsys, "checkpoints", team["config"], "--prune", "1", *extra)
        assert (code, out, err) == (2, "", "error: --prune cannot be combined with --show or --verify\n")
    code, out, err = run_cli(capsys, "checkpoints", team["config"], "--prune", "1", "--agent", "nobody")
    assert (code, out) == (2, "") and "no agent named 'nobody'" in err and err.count("\n") == 1
    assert len(CheckpointStore(team["storage"], "counter-a").list()) == 3

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "team.yaml").write_text(CONFIG)
    code, out, _ = run_cli(capsys, "checkpoints", str(empty / "team.yaml"), "--prune", "1", "--json")
    assert code == 0 and json.loads(out) == {"keep": 1, "removed": [], "freed_bytes": 0, "kept": [], "not_removed": []}
    assert not (empty / "state").exists()  # nothing created where there was nothing
