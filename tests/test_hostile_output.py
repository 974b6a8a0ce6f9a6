"""Model output never drives the operator's terminal: escape sequences are shown, not obeyed.

A custom agent plays a prompt-injected model whose replies carry OSC 52 (write
the clipboard), OSC 0 (retitle the window), CSI 2J (clear the screen), a C1
control and a bidi override. The real CLI runs them through the plain console
(a pipe) and the live view (a pseudo-terminal), and what reaches the terminal
holds none of them raw.
"""

from __future__ import annotations

from harness import Team

HOSTILE = "tests.agent_probe:Hostile"
RAW = ("\x1b]52", "\x1b]0;", "\x1b[2J", "\x9b", "\u202e", "\x00")


def hostile_team(make_team) -> Team:
    team = make_team(agents=1, max_cycles=2, latency=0.01)
    team.data["agent"] = HOSTILE
    team.write()
    return team


def test_the_plain_console_shows_escapes_in_a_reply_instead_of_sending_them(make_team):
    team = hostile_team(make_team)
    run = team.start(terminal=False)
    assert run.wait() == 0, run.output
    out = run.output
    for raw in RAW:
        assert raw not in out, (raw, out)
    assert "\\x1b]52;c;QUJD\\x07 clipboard" in out and "\\u202eesrever" in out, out


def test_the_live_view_in_a_real_terminal_shows_escapes_instead_of_sending_them(make_team):
    team = hostile_team(make_team)
    run = team.start(terminal=True, env={"TERM": "xterm-256color"})
    assert run.wait() == 0, run.output
    out = run.output
    assert "\x1b[?25l" in out, "the live view never started"
    for raw in RAW:
        assert raw not in out, (raw, out)
    assert "\\x1b]52;c;QUJD\\x07" in out, out
