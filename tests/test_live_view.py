"""The operator's live view: a table on a real terminal, today's plain lines anywhere else.

End to end, the real CLI runs in a real pseudo-terminal (TERM=xterm-256color
gets the live view; the harness's TERM=dumb, --plain and a pipe get plain
lines) and a real ^C is typed into it. Unit-level, a LiveConsole is fed a
synthetic event stream and drawn into a StringIO-backed rich console.
"""

from __future__ import annotations

import io
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from rich.console import Console as RichConsole

from harness import HANG, Run, Team, by_event
from supervisor.config import TeamConfig
from supervisor.terminal.console import Console
from supervisor.terminal.live_view import STOP_QUIET, LiveConsole, choose_console

LIVE_TERM = {"TERM": "xterm-256color"}
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"


def screen_lines(output: str) -> list[str]:
    """What was written, without escape sequences, one entry per line (a redraw's lines included)."""
    return [line.rstrip() for line in re.split(r"\r?\n|\r", CSI.sub("", output))]


def wait_output(run: Run, text: str) -> None:
    """Until `text` is on the terminal (escape sequences aside); the timeout only catches a hang."""
    deadline = time.monotonic() + HANG
    while time.monotonic() < deadline:
        if text in CSI.sub("", run.output):
            return
        if run.proc.poll() is not None:
            run.wait()
            assert text in CSI.sub("", run.output), f"{text!r} never shown:\n{run.output}"
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {text!r} on the terminal:\n{run.output}")


def table_row(lines: list[str], agent: str, status: str) -> str:
    """The last drawn table row of `agent` with `status` (the final frame's, once the run is over)."""
    rows = [line for line in lines if re.match(rf"^\s*{re.escape(agent)}\s+{status}\s.*[━─]", line)]
    assert rows, f"no row for {agent} ({status}) in:\n" + "\n".join(lines)
    return rows[-1]


def assert_cursor_restored(output: str) -> None:
    assert HIDE_CURSOR in output, "the live view never started"
    assert output.rfind(SHOW_CURSOR) > output.rfind(HIDE_CURSOR), "the cursor was left hidden"


# ---- end to end: the fallback to plain lines ------------------------------------------


def _plain_lines(team: Team, run: Run) -> list[str]:
    text = run.output.replace("\r\n", "\n").replace(str(team.root), "<root>")
    return sorted(text.splitlines())  # agents run side by side: the order of their lines may differ


def test_a_pipe_plain_and_a_dumb_terminal_get_exactly_the_plain_lines(make_team):
    ways = {
        "pipe": ((), False, LIVE_TERM),  # TERM says xterm, but stdout is a pipe
        "--plain": (("--plain",), True, LIVE_TERM),
        "TERM=dumb": ((), True, {"TERM": "dumb"}),
    }
    seen: dict[str, list[str]] = {}
    for way, (extra, terminal, env) in ways.items():
        team = make_team(agents=2, latency=0.05, max_cycles=2)
        run = team.start(*extra, terminal=terminal, env=env)
        assert run.wait() == 0, run.output
        out = run.output
        assert "\x1b" not in out, f"{way}: escape sequences in plain output:\n{out!r}"
        assert "[agent-a] CYCLE 1/2: cycle 1:" in out and "[agent-b] CYCLE 2/2: cycle 2:" in out, out
        assert "Team completed successfully" in out and "EXECUTION STATISTICS" in out, out
        assert "agent-a  completed    cycles 2/2  checkpoint_00000002_00000002.jsonl.gz" in out, out
        seen[way] = _plain_lines(team, run)
    assert seen["pipe"] == seen["--plain"] == seen["TERM=dumb"]


# ---- end to end: the live view in a real terminal ------------------------------------


def test_live_view_in_a_real_terminal_through_a_graceful_ctrl_c(make_team, backend):
    team = make_team(agents=2, latency=1.0, max_cycles=6, groups={"crew": {"agents": 1}})
    team.data["llm"]["cost_per_reply"] = 0.001
    team.write()
    run = team.start(terminal=True, env=LIVE_TERM)
    run.wait_all_started()
    everyone = lambda ev: all(by_event(ev, "cycle_completed", name) for name in team.names)  # noqa: E731
    run.wait_for(everyone, "a cycle of every agent")  # and the next one is in flight for about a second
    wait_output(run, "interrupt: none — Ctrl+C to stop gracefully")
    run.ctrl_c()
    wait_output(run, "interrupt: graceful stop requested (USER: Ctrl+C) — Ctrl+C again to force")
    assert run.wait() == 0, run.output

    out = run.output
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert_cursor_restored(out)
    lines = screen_lines(out)
    text = "\n".join(lines)
    assert "[agent-a] CYCLE 1/6: cycle 1:" in text  # the replies scroll above the table
    assert "interrupt: none — Ctrl+C to stop gracefully" in text
    assert re.search(r"^agent\s+status\s+cycle\s+last event\s+tokens\s+cost$", text, re.M), text
    assert re.search(r"^crew\s+group$", text, re.M), text  # a group's heading, its agents indented under it

    # The final frame stays on screen, then the outcome and the statistics follow it.
    events = run.new_events()
    done = {name: by_event(events, "cycle_completed", name)[-1]["cycle"] for name in team.names}
    for name in team.names:
        row = table_row(lines, name, "interrupted")
        cycles = done[name]
        assert re.search(rf"\s{cycles}/6 ━+─*\s", row), row
        assert "stopped, saved" in row and row.endswith(f"${cycles * 0.001:.4f}"), row
    total = sum(done.values())
    footer = [line for line in lines if re.match(r"^total\s", line)][-1]
    assert f"{total}/18" in footer and footer.endswith(f"${total * 0.001:.4f}"), footer
    assert "interrupt: graceful stop (USER: Ctrl+C)" in text
    final = text.rindex("interrupt: graceful stop (USER: Ctrl+C)")
    assert final < text.rindex("Gracefully interrupted and checkpoints saved") < text.rindex("EXECUTION STATISTICS")
    assert "Status: interrupted" in text and f"Budget Spent: ${total * 0.001:.4f}" in text
    for name in team.names:
        team.assert_exactly_once(name)


def test_live_view_shows_the_immediate_stop_after_a_second_ctrl_c(make_team):
    team = make_team(agents=2, latency=60.0, max_cycles=2, immediate_timeout=2)
    run = team.start(terminal=True, env=LIVE_TERM)
    run.wait_all_started()
    run.ctrl_c()
    run.wait_for(lambda ev: len(by_event(ev, "interrupt_initiated")) == 1 + len(team.names), "every ack")
    wait_output(run, "graceful stop requested (USER: Ctrl+C)")
    run.ctrl_c()
    assert run.wait() == 1, run.output
    out = run.output
    assert "Traceback" not in out
    assert_cursor_restored(out)
    lines = screen_lines(out)
    assert "interrupt: immediate stop (USER: Ctrl+C)" in lines
    for name in team.names:
        assert "0/2" in table_row(lines, name, "interrupted")
    assert "Status: interrupted" in lines


# ---- choosing the console ---------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> TeamConfig:
    return team_config(tmp_path)


def team_config(tmp_path: Path, *, agents: int = 3, groups: bool = False) -> TeamConfig:
    data: dict[str, Any] = {
        "team": "demo",
        "storage": "state",
        "llm": {"provider": "scripted", "latency": 0.1},
        "agents": [{"name": f"agent-{chr(ord('a') + i) if agents <= 26 else i}", "task": "Count.", "max_cycles": 5}
                   for i in range(agents)],
    }
    if groups:
        data["groups"] = [{"name": "crew", "agents": [{"name": "crew-a", "task": "Count.", "max_cycles": 4}]}]
    return TeamConfig.from_mapping(data, source=tmp_path / "team.yaml")


@pytest.mark.e2e
def test_choose_console_live_only_on_a_real_terminal(config, monkeypatch):
    master, slave = os.openpty()
    terminal = open(slave, "w", encoding="utf-8")
    try:
        monkeypatch.setenv("TERM", "xterm-256color")
        assert isinstance(choose_console(config, stream=terminal), LiveConsole)
        assert type(choose_console(config, stream=terminal, plain=True)) is Console
        assert type(choose_console(config, stream=io.StringIO())) is Console
        for term in ("dumb", "unknown", ""):
            monkeypatch.setenv("TERM", term)
            assert type(choose_console(config, stream=terminal)) is Console, term
        monkeypatch.delenv("TERM")
        assert type(choose_console(config, stream=terminal)) is Console
    finally:
        terminal.close()
        os.close(master)


# ---- unit level: a synthetic event stream -------------------------------------------------


def rich_console(stream: Any = None, *, height: int = 40) -> RichConsole:
    return RichConsole(file=stream if stream is not None else io.StringIO(), force_terminal=True, width=120, height=height)


def frame(live: LiveConsole) -> list[str]:
    """The table as it stands, laid out in plain text, 120 columns."""
    out = RichConsole(file=io.StringIO(), width=120, height=200, color_system=None)
    out.print(live.view(final=True))
    return [line.rstrip() for line in out.file.getvalue().splitlines()]  # type: ignore[attr-defined]


def cells(lines: list[str], agent: str) -> list[str]:
    row = [line for line in lines if line.strip().startswith(agent + " ")]
    assert len(row) == 1, lines
    return re.split(r"\s{2,}", row[0].strip())


def feed(live: LiveConsole, *events: dict[str, Any]) -> None:
    for event in events:
        live({"timestamp": "2026-01-01T00:00:00Z", "level": "info", **event})


def test_live_console_rows_follow_the_events(tmp_path):
    stream = io.StringIO()
    live = LiveConsole(team_config(tmp_path, groups=True), console=rich_console(stream), redirect=False)
    before = signal.getsignal(signal.SIGINT)
    live.banner("demo", "/tmp/state", "scripted", 4, {})
    assert not live.active and "AGENT SUPERVISOR - team demo" in stream.getvalue()  # a run that fails here shows no table
    feed(live, {"event": "supervisor_started", "agent_id": "demo", "team": "demo"})
    try:
        assert live.active and HIDE_CURSOR in stream.getvalue()
        assert signal.getsignal(signal.SIGINT) is before  # Ctrl+C stays the supervisor's
        lines = frame(live)
        assert cells(lines, "agent-a") == ["agent-a", "starting", "0/5 ──────────", "waiting for worker", "-", "-"]
        assert lines[-1] == "interrupt: none — Ctrl+C to stop gracefully"
        feed(
            live,
            {"event": "worker_started", "agent_id": "agent-a", "pid": 11, "cycle": 0, "status": "running", "resumed": False},
            {"event": "worker_started", "agent_id": "agent-b", "pid": 12, "cycle": 2, "status": "running", "resumed": True},
            {"event": "worker_started", "agent_id": "agent-c", "pid": 13, "cycle": 0, "status": "running", "resumed": False},
            {"event": "group_started", "agent_id": "crew"},
            {"event": "worker_started", "agent_id": "crew-a", "pid": 14, "cycle": 0, "status": "running", "resumed": False},
            {"event": "cycle_completed", "agent_id": "agent-a", "cycle": 1, "max_cycles": 5, "duration_ms": 1500.0,
             "tokens": {"prompt": 10, "completion": 5}, "cost_usd": 0.001, "reply": "cycle 1: one"},
            {"event": "checkpoint_saved", "agent_id": "agent-a", "checkpoint_id": "c1", "cycle": 1},
            {"event": "cycle_completed", "agent_id": "agent-a", "cycle": 2, "max_cycles": 5, "duration_ms": 1000.0,
             "tokens": {"prompt": 20, "completion": 7}, "cost_usd": 0.0023, "reply": "cycle 2: two"},
            {"event": "cycle_completed", "agent_id": "agent-b", "cycle": 3, "max_cycles": 5, "duration_ms": 250.0,
             "reply": "cycle 3: three"},
        )
        lines = frame(live)
        assert cells(lines, "agent-a") == ["agent-a", "running", "2/5 ━━━━──────", "cycle 2 done, 1.0s", "42", "$0.0033"]
        assert cells(lines, "agent-b") == ["agent-b", "running", "3/5 ━━━━━━────", "cycle 3 done, 0.2s", "-", "-"]
        assert cells(lines, "agent-c") == ["agent-c", "running", "0/5 ──────────", "started, pid 13", "-", "-"]
        assert cells(lines, "crew-a") == ["crew-a", "running", "0/4 ──────────", "started, pid 14", "-", "-"]
        assert any(re.match(r"^crew\s+group$", line) for line in lines), lines
        assert cells(lines, "total") == ["total", "5/19 ━━━───────", "42", "$0.0033"]
        assert re.match(r"^team demo · elapsed \d+:\d\d · 4 running$", lines[0]), lines[0]

        feed(
            live,
            {"event": "interrupt_initiated", "agent_id": "demo", "source": "USER", "mode": "GRACEFUL",
             "message": "User requested graceful shutdown (Ctrl+C)", "interrupt_id": 1},
        )
        live.interrupt_notice("GRACEFUL", "USER", "Ctrl+C detected")
        feed(
            live,
            {"event": "interrupt_initiated", "agent_id": "agent-a", "source": "USER", "mode": "GRACEFUL",
             "message": "User requested graceful shutdown (Ctrl+C)", "interrupt_id": 1},
            {"event": "interrupt_completed", "agent_id": "agent-b", "checkpoint_id": "c3", "cycle": 3, "mode": "GRACEFUL",
             "source": "USER"},
            {"event": "worker_exited", "agent_id": "agent-b", "pid": 12, "exitcode": 0, "status": "interrupted",
             "reason": "interrupted"},
            {"event": "worker_exited", "agent_id": "agent-c", "pid": 13, "exitcode": -9, "status": "failed",
             "reason": "killed by SIGKILL"},
            {"event": "group_exited", "agent_id": "crew", "pid": 15, "status": "failed", "reason": "killed by SIGKILL"},
        )
        lines = frame(live)
        assert cells(lines, "agent-a")[:2] == ["agent-a", "stopping"] and cells(lines, "agent-a")[3] == "finishing the cycle"
        assert cells(lines, "agent-b") == ["agent-b", "interrupted", "3/5 ━━━━━━────", "stopped, saved", "-", "-"]
        assert cells(lines, "agent-c") == ["agent-c", "failed", "0/5 ──────────", "exited: killed by SIGKILL", "-", "-"]
        assert cells(lines, "crew-a")[:2] == ["crew-a", "failed"]
        assert lines[-1] == "interrupt: graceful stop requested (USER: Ctrl+C) — Ctrl+C again to force"

        live.interrupt_notice("IMMEDIATE", "USER", "Second Ctrl+C")
        assert frame(live)[-1] == "interrupt: immediate stop (USER: Ctrl+C)"
        feed(live, {"event": "supervisor_stopped", "agent_id": "demo", "status": "interrupted", "exit_code": 1})
        assert frame(live)[0].startswith("team demo · interrupted · elapsed ")
    finally:
        live.outcome("interrupted", {"mode": "IMMEDIATE", "source": "USER", "message": "stop", "timestamp": "T"})
        live.statistics("interrupted", [], {"total": 2, "graceful": 1, "immediate": 1}, "/tmp/state")

    out = stream.getvalue()
    assert_cursor_restored(out)
    plain = CSI.sub("", out)
    assert "[agent-a] CYCLE 2/5: cycle 2: two" in plain  # the plain console's lines, above the table
    assert "Initiating graceful shutdown" in plain
    assert plain.rindex("interrupt: immediate stop (USER: Ctrl+C)") < plain.index("Stopped immediately")
    assert plain.index("Stopped immediately") < plain.index("EXECUTION STATISTICS")
    assert live._thread is not None and not live._thread.is_alive() and live._thread.daemon
    assert not live.broken


def test_the_drawer_draws_on_events_at_most_refresh_per_second(tmp_path):
    stream = io.StringIO()
    live = LiveConsole(team_config(tmp_path), console=rich_console(stream), redirect=False, idle_refresh=60.0)
    live.banner("demo", "/tmp/state", "scripted", 3, {})
    began = time.monotonic()
    feed(live, {"event": "supervisor_started", "agent_id": "demo", "team": "demo"})
    try:
        assert [t for t in threading.enumerate() if t.name == "live-view"] == [live._thread]
        for cycle in range(1, 201):  # a burst of events, each a line above the table and a change in it
            feed(live, {"event": "cycle_completed", "agent_id": "agent-a", "cycle": cycle, "max_cycles": 5, "reply": "x"})
        deadline = began + HANG
        while live.renders < 1 and time.monotonic() < deadline:  # drawn because something changed, not by a timer
            time.sleep(0.01)
        assert live.renders >= 1
    finally:
        live.stop()
    elapsed = time.monotonic() - began
    assert live.renders <= 2 + elapsed / live.min_interval  # not one draw per event
    assert not any(t.name == "live-view" for t in threading.enumerate())  # the drawer ends with the view
    plain = CSI.sub("", stream.getvalue())
    assert "[agent-a] CYCLE 200/5: x" in plain and "200/5" in plain.split("CYCLE 200/5: x")[-1]  # every line, then the table


def drawing(tmp_path: Path, stream: Any = None) -> LiveConsole:
    """A live view that draws on every change (no idle redraws), its first frame up."""
    live = LiveConsole(team_config(tmp_path), console=rich_console(stream), redirect=False, idle_refresh=60.0,
                       refresh_per_second=1000.0)
    live.banner("demo", "/tmp/state", "scripted", 3, {})
    feed(live, {"event": "supervisor_started", "agent_id": "demo", "team": "demo"})
    deadline = time.monotonic() + HANG
    while live.renders < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    return live


def test_an_immediate_stop_draws_its_last_frame_once_with_the_unshown_lines_above_it(tmp_path):
    """The stop's CPU is the exiting workers': no frame while it runs, one frame of the table when it is over."""
    stream = io.StringIO()
    live = drawing(tmp_path, stream)
    try:
        deadline = time.monotonic() + HANG
        drawn = live.renders
        feed(live, {"event": "interrupt_initiated", "agent_id": "demo", "mode": "IMMEDIATE", "source": "USER",
                    "trigger": "Ctrl+C", "message": "User requested immediate shutdown (double Ctrl+C)"})
        for name in ("agent-a", "agent-b", "agent-c"):
            feed(live, {"event": "worker_exited", "agent_id": name, "pid": 1, "exitcode": 0, "status": "interrupted"})
        while live._wake.is_set() and time.monotonic() < deadline:  # the drawer has seen the news
            time.sleep(0.001)
        before = len(stream.getvalue())
    finally:
        live.stop()
    assert live.renders == drawn  # held back while the workers went
    plain = CSI.sub("", stream.getvalue()[before:])
    assert plain.count("team demo") == 1  # one frame: the old table is not drawn again under the notice
    assert plain.index("Second Ctrl+C! Immediate shutdown") < plain.index("team demo")  # the notice, then the table
    assert "interrupted" in plain[plain.index("team demo"):]


def test_the_last_frame_says_not_started_of_agents_whose_worker_never_came(tmp_path):
    """A stop during a big team's start leaves the agents not forked by then without a worker: not "starting"."""
    stream = io.StringIO()
    live = drawing(tmp_path, stream)
    try:
        feed(live, {"event": "worker_started", "agent_id": "agent-a", "pid": 1, "cycle": 0},
             {"event": "interrupt_initiated", "agent_id": "demo", "mode": "GRACEFUL", "source": "USER",
              "trigger": "Ctrl+C", "message": "User requested graceful shutdown (Ctrl+C)"},
             {"event": "worker_exited", "agent_id": "agent-a", "pid": 1, "exitcode": 0, "status": "interrupted"})
        before = len(stream.getvalue())
    finally:
        live.stop()
    last = screen_lines(stream.getvalue()[before:])
    rows = {line.split()[0]: line for line in last if line.startswith("agent-")}
    assert "interrupted" in rows["agent-a"] and "not started" not in rows["agent-a"]
    for name in ("agent-b", "agent-c"):
        assert "not started" in rows[name] and "starting" not in rows[name], rows[name]


def test_a_graceful_stop_pauses_the_drawer_once_so_a_second_ctrl_c_is_handled_at_once(tmp_path):
    """No frame in the moment after the first Ctrl+C (a frame then delayed the second by 20-40 ms); then it moves on."""
    live = drawing(tmp_path)
    try:
        deadline = time.monotonic() + HANG
        drawn = live.renders
        feed(live, {"event": "interrupt_initiated", "agent_id": "demo", "mode": "GRACEFUL", "source": "USER",
                    "trigger": "Ctrl+C", "message": "User requested graceful shutdown (Ctrl+C)"})
        noticed = time.monotonic()
        while live._wake.is_set() and time.monotonic() < deadline:  # the drawer has seen the news
            time.sleep(0.001)
        time.sleep(STOP_QUIET / 3)
        assert live.renders == drawn  # held back while a second Ctrl+C may come
        while live.renders == drawn and time.monotonic() < deadline:
            time.sleep(0.01)
        assert time.monotonic() - noticed >= STOP_QUIET * 0.9  # then drawn again, after the pause
        paused = live.renders
        feed(live, {"event": "worker_exited", "agent_id": "agent-a", "pid": 1, "exitcode": 0, "status": "interrupted"})
        while live.renders == paused and time.monotonic() < deadline:  # once per stop mode: no second pause
            time.sleep(0.01)
        assert time.monotonic() < deadline
    finally:
        live.stop()


class BrokenTerminal(io.StringIO):
    """A terminal that went away: every write fails."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def write(self, text: str) -> int:
        raise self.error

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("error", [OSError(5, "Input/output error"), RuntimeError("the renderer broke")])
def test_a_broken_terminal_never_breaks_the_run(tmp_path, error):
    live = LiveConsole(team_config(tmp_path), console=rich_console(BrokenTerminal(error)))
    stdout, stderr = sys.stdout, sys.stderr
    live.banner("demo", "/tmp/state", "scripted", 3, {})
    feed(
        live,
        {"event": "worker_started", "agent_id": "agent-a", "pid": 11, "cycle": 0, "status": "running", "resumed": False},
        {"event": "cycle_completed", "agent_id": "agent-a", "cycle": 1, "max_cycles": 5, "reply": "cycle 1: one"},
        {"event": "cycle_completed", "agent_id": "agent-a"},  # malformed: no cycle; the plain line would raise KeyError
    )
    live.interrupt_notice("GRACEFUL", "USER", "Ctrl+C detected")
    live.line("a line")
    live.outcome("interrupted", {"mode": "GRACEFUL", "source": "USER", "message": "stop", "timestamp": "T"})
    live.statistics("interrupted", [], {"total": 1, "graceful": 1, "immediate": 0}, "/tmp/state")
    live.stop()
    assert live.broken and live._live is None
    assert (sys.stdout, sys.stderr) == (stdout, stderr)  # the redirection was undone
    assert live.rows["agent-a"].cycle == 1  # the view kept counting all along


def test_a_big_team_fits_the_terminal(tmp_path):
    live = LiveConsole(team_config(tmp_path, agents=60), console=rich_console(height=25), redirect=False)
    lines = frame(live)
    assert len(lines) <= 25 - 2
    assert any(re.match(r"^\+\d+ more\s+.*\d+ starting$", line) for line in lines), lines
    assert cells(lines, "total")[1] == "0/300 ──────────"


def test_live_rows_show_agents_waiting_held_and_asked(tmp_path):
    stream = io.StringIO()
    live = LiveConsole(team_config(tmp_path, groups=False), console=rich_console(stream), redirect=False)
    live.banner("demo", "/tmp/state", "scripted", 3, {})
    feed(live, {"event": "supervisor_started", "agent_id": "demo", "team": "demo"})
    try:
        feed(
            live,
            {"event": "agent_held", "agent_id": "agent-c", "after": ["agent-a"]},
            {"event": "worker_started", "agent_id": "agent-a", "pid": 11, "cycle": 0, "status": "running", "resumed": False},
            {"event": "worker_started", "agent_id": "agent-b", "pid": 12, "cycle": 0, "status": "running", "resumed": False},
            {"event": "agent_waiting", "agent_id": "agent-a", "for": "message"},
            {"event": "question_asked", "agent_id": "agent-b", "question": "Ship it?\x1b[2J"},
        )
        lines = frame(live)
        assert cells(lines, "agent-a")[:2] == ["agent-a", "waiting"] and cells(lines, "agent-a")[3] == "waiting for a message"
        assert cells(lines, "agent-b")[:2] == ["agent-b", "waiting"] and cells(lines, "agent-b")[3].startswith("❓ Ship it?")
        assert "\x1b[2J" not in stream.getvalue()  # the question is the model's words: never raw on the terminal
        assert cells(lines, "agent-c")[:2] == ["agent-c", "held"] and cells(lines, "agent-c")[3] == "after agent-a"
        feed(
            live,
            {"event": "wait_ended", "agent_id": "agent-a", "for": "message", "outcome": "received"},
            {"event": "question_answered", "agent_id": "agent-b", "question": "Ship it?", "answer": "yes"},
            {"event": "agent_released", "agent_id": "agent-c", "after": ["agent-a"]},
        )
        lines = frame(live)
        assert [cells(lines, n)[1] for n in ("agent-a", "agent-b", "agent-c")] == ["running", "running", "starting"]
        assert cells(lines, "agent-b")[3] == "answered"
    finally:
        live.outcome("completed", None)
        live.statistics("completed", [], {"total": 0, "graceful": 0, "immediate": 0}, "/tmp/state")
    plain = CSI.sub("", stream.getvalue())
    assert "[agent-b] ❓ Ship it?" in plain and "[agent-b] 💬 answered: yes" in plain
    assert "[agent-c] ⏸️  starts once agent-a completed" in plain


def test_the_plain_console_neutralises_questions_and_answers():
    stream = io.StringIO()
    console = Console(stream=stream)
    console({"event": "question_asked", "agent_id": "a", "question": "Go?\x1b]0;pwned\x07\r\nnext"})
    console({"event": "question_answered", "agent_id": "a", "question": "Go?", "answer": "\x1b[31mred\x1b[0m"})
    out = stream.getvalue()
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert out.splitlines()[0].startswith("[a] ❓ Go?")
    assert len(out.splitlines()) == 3  # the question, the hint how to answer, the answer: nothing injected a line


def test_live_rows_show_agents_queued_for_a_model_server(tmp_path):
    stream = io.StringIO()
    live = LiveConsole(team_config(tmp_path, groups=False), console=rich_console(stream), redirect=False)
    live.banner("demo", "/tmp/state", "ollama", 3, {})
    feed(live, {"event": "supervisor_started", "agent_id": "demo", "team": "demo"})
    try:
        feed(
            live,
            {"event": "worker_started", "agent_id": "agent-a", "pid": 11, "cycle": 0, "status": "running", "resumed": False},
            {"event": "worker_started", "agent_id": "agent-b", "pid": 12, "cycle": 0, "status": "running", "resumed": False},
            {"event": "agent_queued", "agent_id": "agent-a", "server": "http://gpu:11434", "ahead": 0, "in_flight": 1},
            {"event": "agent_queued", "agent_id": "agent-b", "server": "http://gpu:11434", "ahead": 1, "in_flight": 1},
        )
        lines = frame(live)
        assert [cells(lines, n)[1] for n in ("agent-a", "agent-b")] == ["queued", "queued"]
        feed(live, {"event": "slot_granted", "agent_id": "agent-a", "server": "http://gpu:11434", "queued_ms": 200.0},
             {"event": "cycle_completed", "agent_id": "agent-b", "cycle": 1, "max_cycles": 3, "duration_ms": 500.0,
              "queued_ms": 300.0, "reply": "x"})
        lines = frame(live)
        assert [cells(lines, n)[1] for n in ("agent-a", "agent-b")] == ["running", "running"]
    finally:
        live.outcome("completed", None)
        live.statistics("completed", [], {"total": 0, "graceful": 0, "immediate": 0}, "/tmp/state")


def test_every_column_lines_up_and_nothing_passes_the_terminal_width(tmp_path):
    """Each row is cut or padded to the same columns: a long reason or a group name cannot push the table wider."""
    live = LiveConsole(team_config(tmp_path, groups=True), console=rich_console(), redirect=False)
    feed(live,
         {"event": "worker_started", "agent_id": "agent-a", "pid": 11},
         {"event": "question_asked", "agent_id": "agent-b", "question": "[bold]not markup[/bold] " + "x" * 300},
         {"event": "cycle_completed", "agent_id": "agent-c", "cycle": 1, "tokens": 123456, "cost_usd": 12.5})
    lines = frame(live)
    head = next(line for line in lines if line.startswith("agent "))
    ends = {cell_len(line.rstrip()) for line in lines if line.startswith(("agent-", "  crew-"))}
    assert ends == {cell_len(head)}, lines  # every row's last column (cost, to the right) ends under its heading
    assert all(cell_len(line) <= 120 for line in lines)
    assert any("…" in line for line in lines if line.startswith("agent-b"))  # cut, with a mark, never wrapped
    assert "[bold]not markup[/bold]" in "".join(lines)  # shown as typed, never read as markup


def test_on_a_terminal_narrower_than_the_table_each_line_is_cut_at_the_edge_never_wrapped(tmp_path):
    """A wrapped row would push the table up a line per row, and the next frame would overwrite the wrong lines."""
    live = LiveConsole(team_config(tmp_path, groups=True), console=rich_console(), redirect=False)
    feed(live, {"event": "worker_started", "agent_id": "agent-a", "pid": 11},
         {"event": "question_asked", "agent_id": "agent-b", "question": "why " * 50})
    view = live.view(final=True)
    for width in (60, 30):
        out = RichConsole(file=io.StringIO(), width=width, height=200, color_system=None)
        out.print(view)
        drawn = out.file.getvalue().splitlines()  # type: ignore[attr-defined]
        assert len(drawn) == len(live.view(final=True).lines), drawn  # type: ignore[attr-defined]
        assert all(cell_len(line) <= width for line in drawn), drawn
        assert drawn[0].startswith("team demo") and drawn[1].startswith("agent ")
    assert drawn[0].endswith("…") and drawn[-1].endswith("…")  # at 30 columns the header and footer say they were cut


def test_the_lines_above_the_last_frame_are_drawn_byte_for_byte_as_one_wrapped_block():
    """They skip rich's word-wrapper when they fit, and a line that does not fit is still wrapped, never cut."""
    from rich.console import Group
    from rich.text import Text

    from supervisor.terminal.live_view import Lines

    lines = ["[agent-0001] ⏹️  stopped", "", "trailing spaces   ", "漢字かなカナ wide " * 4, "tab\there",
             "a reply that runs on " * 12, "[bold]not markup[/bold]"]
    for width in (40, 160):
        def drawn(above: object) -> str:
            out = RichConsole(file=io.StringIO(), width=width, height=100, force_terminal=True, color_system="truecolor")
            out.print(Group(above, Text("the table", style="bold")))
            return out.file.getvalue()  # type: ignore[attr-defined]

        block = drawn(Text("\n".join(lines)))
        assert drawn(Lines([Text(line) for line in lines], wrap=True)) == block
        assert sum("runs on" in line for line in block.splitlines()) > 1  # the long line was wrapped, not cut


def test_each_cells_style_covers_exactly_its_text(tmp_path):
    """A row is one Text with each cell's style as a span: shifted by one, a colour would bleed into the padding."""
    live = LiveConsole(team_config(tmp_path), console=rich_console(), redirect=False)
    feed(live, {"event": "worker_started", "agent_id": "agent-a", "pid": 11},
         {"event": "worker_exited", "agent_id": "agent-a", "exitcode": 1, "status": "failed", "reason": "boom"})
    out = RichConsole(file=io.StringIO(), width=120, height=200, force_terminal=True, color_system="standard")
    out.print(live.view(final=True))
    row = next(line for line in out.file.getvalue().splitlines() if "agent-a" in line)  # type: ignore[attr-defined]
    assert row.startswith("\x1b[1magent-a\x1b[0m ") and "  \x1b[1;31mfailed\x1b[0m  " in row, repr(row)
