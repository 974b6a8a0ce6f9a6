"""Escape sequences in storage never reach the operator's terminal raw.

Model replies, interrupt messages and even the supervisor's own lines in
events.jsonl may hold control characters: an OSC 52 sets the clipboard, an
OSC 0 retitles the window, CSI 2J clears the screen, and a lone C1 byte (0x9b)
is a CSI to many terminals. Every tool shows them as visible escapes instead,
in text and JSON output alike, and in the HTML report.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from tools_state import event_line, interrupt_line, run_cli, write_team

from protocol.checkpoints import CheckpointStore

CLIPBOARD = "\x1b]52;c;QUJD\x07"  # OSC 52: "ABC" into the clipboard
TITLE = "\x1b]0;title\x07"  # OSC 0: the window's title
CLEAR = "\x1b[2J"  # CSI 2J: clear the screen
C1_CSI = "\x9b31m"  # a C1 CSI: red text, to a terminal that takes 8-bit controls
MESSAGE = f"stop {TITLE} now {C1_CSI}"

# Raw control characters but newline: none may be printed (tab neither, in one-line output).
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def assert_no_raw_control(text: str) -> None:
    found = RAW_CONTROL.search(text)
    assert found is None, f"raw {found.group()!r} at {found.start()}: {text[max(0, found.start() - 60) : found.end() + 60]!r}"


@pytest.fixture
def team(tmp_path: Path) -> dict[str, Any]:
    """The usual state, plus a third run whose lines carry escape sequences in every kind of field."""
    team = write_team(tmp_path)
    hostile = [
        event_line(30, "supervisor_started", "demo", team="demo", pid=f"300{CLEAR}", agents=["counter-a"], resumed={}),
        event_line(31, "cycle_completed", "counter-a", cycle=4, duration_ms=5.0, reply=CLIPBOARD),
        event_line(31, "cycle_completed", "counter-b", cycle=3, duration_ms=5.0, reply=f"cycle 3: {TITLE}{CLEAR} {C1_CSI}"),
        interrupt_line(32, "demo", 1, "USER", "GRACEFUL", MESSAGE),
        interrupt_line(32, "counter-a", 1, "USER", "GRACEFUL", MESSAGE),
        event_line(33, f"worker{C1_CSI}", "counter-a", **{f"key{CLEAR}": "x"}),
        event_line(34, "supervisor_stopped", "demo", status=f"interrupted{TITLE}", exit_code=0),
    ]
    events = team["storage"] / "events.jsonl"
    events.write_text(events.read_text().rsplit("\n", 1)[0] + "\n" + "\n".join(hostile) + "\n")  # the torn tail dropped
    return team


def test_logs_text_shows_escapes_visibly(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "logs", team["config"])
    assert code == 0
    assert_no_raw_control(out)
    assert_no_raw_control(err)
    lines = out.splitlines()
    (bare,) = [line for line in lines if "cycle=4" in line]
    assert bare.endswith(r"reply=\x1b]52;c;QUJD\x07")  # a value without spaces is printed bare: escaped all the same
    (quoted,) = [line for line in lines if "cycle=3 " in line]
    assert r"\u001b]0;title\u0007\u001b[2J \x9b31m" in quoted
    assert r"worker\x9b31m" in out and r"key\x1b[2J=x" in out
    assert r"Status: interrupted\x1b]0;title\x07" in lines


def test_logs_json_escapes_every_control_character(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "logs", team["config"], "--json", "--all-runs")
    assert code == 0
    assert_no_raw_control(out)
    assert r"\u009b31m" in out and r"\u001b]52;c;QUJD\u0007" in out
    document = json.loads(out)  # the same text, read back
    assert [e["reply"] for e in document["events"] if e.get("cycle") == 4] == [CLIPBOARD]
    assert document["summary"]["status"] == f"interrupted{TITLE}"


def test_logs_warnings_and_scope_show_escapes(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "logs", team["config"], "--agent", f"ghost{TITLE}")
    assert code == 0
    assert_no_raw_control(out + err)
    assert r"warning: no agent or group named 'ghost\x1b]0;title\x07'" in err
    assert r"; agents: ghost\x1b]0;title\x07" in out


def test_status_shows_escapes_visibly(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "status", team["config"])
    assert code == 0
    assert_no_raw_control(out)
    title, _header, row_a, *_ = out.splitlines()
    assert title == r"team demo: no run live; the last one interrupted\x1b]0;title\x07 at 2026-11-24T03:55:34.123Z (exit 0)"
    assert row_a.endswith(r'GRACEFUL USER at 2026-11-24T03:55:32.123Z: "stop \u001b]0;title\u0007 now \x9b31m"')

    code, out, _ = run_cli(capsys, "status", team["config"], "--json")
    assert code == 0
    assert_no_raw_control(out)
    assert json.loads(out)[0]["last_interrupt"]["message"] == MESSAGE


def test_status_of_a_live_run_shows_the_pid_escaped(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    events = team["storage"] / "events.jsonl"
    events.write_text(events.read_text().rsplit("\n", 2)[0] + "\n")  # the last run has not stopped
    lock = team["storage"] / ".supervisor.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a live supervisor holds it
        code, out, _ = run_cli(capsys, "status", team["config"])
    finally:
        os.close(fd)
    assert code == 0
    assert_no_raw_control(out)
    assert out.splitlines()[0].startswith(r"team demo: RUN LIVE (pid 300\x1b[2J, started ")


def test_report_shows_escapes_visibly(team: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    written = tmp_path / "report.html"
    code, out, err = run_cli(capsys, "report", team["config"], "-o", str(written))
    assert code == 0, err
    assert_no_raw_control(out + err)
    html = written.read_text()
    assert_no_raw_control(html)
    assert r"reply: \x1b]52;c;QUJD\x07" in html
    assert r"message: stop \x1b]0;title\x07 now \x9b31m" in html
    assert r'class="status interrupted\x1b]0;title\x07"' in html


def test_report_error_quoting_an_argument_shows_escapes(team: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "report", team["config"], "-o", str(tmp_path / f"no-such-folder{CLEAR}" / "r.html"))
    assert (code, out) == (2, "")
    assert_no_raw_control(err)
    assert err.startswith("error: cannot write ") and r"no-such-folder\x1b[2J" in err


def test_report_of_a_lone_surrogate_is_written(team: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """JSON may name half a UTF-16 pair (`\\ud800`): it cannot be written as UTF-8, so it is shown as an escape."""
    events = team["storage"] / "events.jsonl"
    with open(events, "a") as handle:
        handle.write('{"timestamp": "2026-11-24T03:55:34.5Z", "level": "info", "event": "cycle_completed", '
                     '"agent_id": "counter-a", "cycle": 5, "reply": "half \\ud800 a pair"}\n')
    written = tmp_path / "report.html"
    code, _, err = run_cli(capsys, "report", team["config"], "-o", str(written))
    assert code == 0, err
    assert r"reply: half \ud800 a pair" in written.read_text()
    code, out, _ = run_cli(capsys, "logs", team["config"], "--json", "--event", "cycle_completed")
    assert code == 0 and json.loads(out)["events"][-1]["reply"] == "half \ud800 a pair"


def test_checkpoints_show_and_errors_escape(team: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    store = CheckpointStore(team["storage"], "counter-c", keep=20, compress=True)
    store.open_for_writing()
    reply = f"cycle 1: {CLIPBOARD} {C1_CSI}"
    store.save(cycle=1, status="running", messages=[{"role": "assistant", "content": reply}])
    code, out, _ = run_cli(capsys, "checkpoints", team["config"], "--agent", "counter-c", "--show")
    assert code == 0
    assert_no_raw_control(out)
    assert json.loads(out)["messages"][0]["content"] == reply

    code, out, err = run_cli(capsys, "checkpoints", team["config"], "--agent", "counter-c", "--show", CLEAR)
    assert (code, out) == (1, "")
    assert_no_raw_control(err)
    assert r"\x1b[2J" in err and err.count("\n") == 1

    code, out, err = run_cli(capsys, "checkpoints", team["config"], "--agent", f"nobody{TITLE}")
    assert (code, out) == (2, "")
    assert_no_raw_control(err)
    assert r"no agent named 'nobody\x1b]0;title\x07'" in err


def test_json_text_escapes_what_a_terminal_would_obey() -> None:
    from supervisor.tools.text import json_text

    text = json_text({"k": f"\x7f\x85\x9b\u2028\u202e{CLIPBOARD}é✓"}, indent=None)
    assert_no_raw_control(text)
    assert "\u2028" not in text and "\u202e" not in text
    assert text == r'{"k": "\u007f\u0085\u009b\u2028\u202e\u001b]52;c;QUJD\u0007é✓"}'  # other text stays as it is
    assert json.loads(text) == {"k": f"\x7f\x85\x9b\u2028\u202e{CLIPBOARD}é✓"}
