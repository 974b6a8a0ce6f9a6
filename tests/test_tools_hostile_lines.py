"""A line in events.jsonl that would cost the tools their stack or their memory is skipped with a warning.

Storage may hold what another process or person wrote. A line nested 100,000
levels deep used to end `logs`, `status` and `report` in a RecursionError; a
line of hundreds of megabytes was held whole in memory. Each is now one
warning on stderr, and the lines around it are read as usual.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tools_state import EVENTS, TORN, event_line, run_cli

from supervisor.tools.events import MAX_DEPTH, MAX_LINE_BYTES, EventReader, Position

COMMANDS = (["logs"], ["logs", "--json"], ["status"], ["status", "--json"], ["report"])


def nested(depth: int) -> str:
    """An event line whose `v` field is `depth - 1` lists deep: the line itself is `depth` levels."""
    return event_line(1, "deep", "counter-a", v="@").replace('"@"', "[" * (depth - 1) + "]" * (depth - 1))


def write_lines(team: dict[str, Any], lines: list[str], tail: str = TORN) -> Path:
    path: Path = team["storage"] / "events.jsonl"
    path.write_text("\n".join(lines) + "\n" + tail)
    return path


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_a_line_nested_100000_deep_is_skipped(team: dict[str, Any], argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    write_lines(team, EVENTS[:3] + [nested(100_000)] + EVENTS[3:])
    code, out, err = run_cli(capsys, argv[0], team["config"], *argv[1:])
    assert code == 0, err
    assert f"warning: events.jsonl line 4: nested deeper than {MAX_DEPTH} levels, skipped\n" in err
    assert "Traceback" not in err
    if argv == ["logs", "--json"]:
        assert len(json.loads(out)["events"]) == len(EVENTS)  # every other line still there
    if argv == ["status", "--json"]:
        assert json.loads(out)[0]["last_interrupt"]["message"] == "second SIGTERM"


def test_nesting_up_to_the_limit_is_kept(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    write_lines(team, EVENTS[:3] + [nested(MAX_DEPTH), nested(MAX_DEPTH + 1)] + EVENTS[3:], tail="")
    code, out, err = run_cli(capsys, "logs", team["config"], "--json", "--event", "deep")
    assert code == 0
    (kept,) = json.loads(out)["events"]
    depth, value = 1, kept["v"]
    while value:
        depth, value = depth + 1, value[0]
    assert depth == MAX_DEPTH - 1  # the field: one level less than its line
    assert err == f"warning: events.jsonl line 5: nested deeper than {MAX_DEPTH} levels, skipped\n"


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_a_line_over_the_size_limit_is_skipped(team: dict[str, Any], argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    huge = event_line(1, "cycle_completed", "counter-a", cycle=9, reply="x" * (2 * MAX_LINE_BYTES))  # valid JSON, too big
    write_lines(team, EVENTS[:3] + [huge] + EVENTS[3:])
    code, out, err = run_cli(capsys, argv[0], team["config"], *argv[1:])
    assert code == 0, err
    assert "warning: events.jsonl line 4: longer than 1 MiB, skipped\n" in err
    if argv[0] == "logs":  # the lines after it keep their numbers
        assert f"warning: events.jsonl line {len(EVENTS) + 2}: not valid JSON, skipped\n" in err
    if argv == ["logs", "--json"]:
        assert [e.get("cycle") for e in json.loads(out)["events"] if e["event"] == "cycle_completed"] == [1, 2]


def test_an_overlong_last_line_without_newline_is_skipped(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    write_lines(team, EVENTS, tail='{"event": "' + "y" * (MAX_LINE_BYTES + 10))
    code, out, err = run_cli(capsys, "logs", team["config"], "--json")
    assert code == 0 and len(json.loads(out)["events"]) == len(EVENTS)
    assert err == f"warning: events.jsonl line {len(EVENTS) + 1}: longer than 1 MiB, skipped\n"


def test_a_growing_overlong_line_is_dropped_as_it_comes(tmp_path: Path) -> None:
    """Followed as it is written, an overlong line is never held: what is kept back stays under the limit."""
    path = tmp_path / "events.jsonl"
    warnings: list[str] = []
    reader = EventReader(path, warnings.append)
    path.write_text(EVENTS[0] + "\n")
    assert reader.open() and [e["event"] for e in reader.read()] == ["supervisor_started"]
    with open(path, "a") as handle:
        for _ in range(5):  # 5 MiB of one line, a piece at a time, each piece read as it lands
            handle.write("z" * MAX_LINE_BYTES)
            handle.flush()
            assert list(reader.read()) == []
            assert len(reader._pending) <= MAX_LINE_BYTES
        handle.write("\n" + EVENTS[1] + "\n")
    assert [e["event"] for e in reader.read()] == ["worker_started"]
    assert warnings == ["events.jsonl line 2: longer than 1 MiB, skipped"]
    reader.close()


def test_positions_point_at_each_line_across_skipped_ones(tmp_path: Path) -> None:
    """`report` goes back to where the last run starts: positions stay right past blank, bad and overlong lines."""
    lines = [EVENTS[0], "", "x" * (2 * MAX_LINE_BYTES), "{bad", EVENTS[1], "   ", EVENTS[2], EVENTS[3]]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines))  # the last line without its newline
    starts = [sum(len(line) + 1 for line in lines[:i]) for i in range(len(lines))]
    reader = EventReader(path, lambda _text: None)
    assert reader.open()
    seen = [(event["event"], reader.position) for event in reader.finish()]
    names = [json.loads(lines[i])["event"] for i in (0, 4, 6, 7)]
    assert seen == [(name, Position(starts[i], i + 1)) for name, i in zip(names, (0, 4, 6, 7))]
    reader.rewind(seen[2][1])
    assert [(event["event"], reader.position) for event in reader.finish()] == seen[2:]
    reader.close()


def test_an_impossible_timestamp_is_no_time_at_all(team: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`03:55:60` looks like ISO 8601 but is not a time: such a line cannot be placed, and nothing crashes."""
    odd = event_line(1, "cycle_completed", "counter-a", cycle=7).replace("03:55:01.123456", "03:55:60.5")
    write_lines(team, EVENTS[:1] + [odd] + EVENTS[1:])
    code, out, err = run_cli(capsys, "logs", team["config"], "--json", "--since", "2026-11-24T03:55:00Z")
    assert code == 0, err
    assert 7 not in [e.get("cycle") for e in json.loads(out)["events"]]  # no time: not inside the window
    code, _, err = run_cli(capsys, "report", team["config"], "-o", str(tmp_path / "r.html"))
    assert code == 0, err


@pytest.mark.parametrize("argv", [*COMMANDS, ["logs", "--event", "x"], ["logs", "--all-runs", "--level", "warning"]], ids=" ".join)
def test_fields_of_the_wrong_type_are_no_crash(team: dict[str, Any], argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Valid JSON, but a list where a name belongs: compared, counted and shown, never used as a key."""
    odd = [
        {"timestamp": "2026-11-24T03:55:14.5Z", "level": ["x"], "event": ["x"], "agent_id": ["counter-a"]},
        {"timestamp": "2026-11-24T03:55:14.6Z", "level": "info", "event": "interrupt_initiated", "agent_id": ["counter-a"],
         "interrupt_id": {"a": 1}, "source": {"a": 1}, "mode": [2]},
        {"timestamp": "2026-11-24T03:55:14.7Z", "level": "info", "event": ["cycle_completed"], "agent_id": "counter-a"},
        {"timestamp": ["2026"], "level": {}, "event": {"e": 1}, "agent_id": {"a": 1}},
    ]
    write_lines(team, EVENTS[:-1] + [json.dumps(e) for e in odd] + EVENTS[-1:], tail="")
    code, out, err = run_cli(capsys, argv[0], team["config"], *argv[1:])
    assert code == 0, err
    assert "Traceback" not in err
    if argv == ["logs", "--json"]:
        assert len(json.loads(out)["events"]) == len(EVENTS) + len(odd)
