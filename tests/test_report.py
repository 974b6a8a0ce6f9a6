"""`report CONFIG`: the run's timeline as one HTML file, checked as text and as pixels in real Chromium."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import REPO, Team, by_event
from supervisor.tools.report import BAR_HEIGHT, LANE_COLOURS, LANE_PITCH, TEAM_INTERRUPT_COLOUR

CHROMIUM = Path("/usr/bin/chromium")
TOLERANCE = 12  # per RGB channel: anti-aliased edges blend, a bar's inside is its exact colour
MIN_RUN = 12  # pixels of a lane's colour in one row to count as a bar (the legend swatch has 5)


def report(team: Team, *extra: str) -> subprocess.CompletedProcess[str]:
    """`python -m supervisor report CONFIG`, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "supervisor", "report", str(team.config), *extra],
        capture_output=True, text=True, timeout=60, cwd=team.root,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def interrupted_run(team: Team, cycles_each: int) -> None:
    """Start the team, let every agent complete `cycles_each` cycles, Ctrl+C, wait for the graceful stop."""
    run = team.start()
    run.wait_all_started()
    run.wait_for(
        lambda ev: all(len(by_event(ev, "cycle_completed", n)) >= cycles_each for n in team.names),
        f"{cycles_each} cycles of every agent",
    )
    run.ctrl_c()
    assert run.wait() == 0, run.output
    assert by_event(run.new_events(), "interrupt_completed"), "the interrupt reached no agent"


def lanes(html: str) -> list[str]:
    """The lane labels of the first (the latest run's) timeline, top to bottom, group prefix included."""
    timeline = html.split("</svg>")[0]
    return re.findall(r'<text [^>]*class="lane"><title>([^<]*)</title>', timeline)


def assert_offline(html: str) -> None:
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.lower()
    assert not re.search(r"<[^>]*\s(src|href)\s*=", html), "no tag may load or link anything"
    assert "url(" not in html


# ---- a real run: interrupted, then resumed ---------------------------------------------


def test_report_of_an_interrupted_and_resumed_run(make_team: Any) -> None:
    team = make_team(agents=2, latency=0.02, max_cycles=40, groups={"crew": {"agents": 1}})
    interrupted_run(team, cycles_each=2)
    written = team.storage / "report.html"

    # Run 1 while it is the latest: drawn in full, its interrupt a line across the lanes and marks on each lane.
    done = report(team)
    assert done.returncode == 0, done.stderr
    first = written.read_text()
    assert "run 1 of 1" in first and "Earlier runs" not in first
    first_run = team.events()
    acks, stops = by_event(first_run, "interrupt_initiated"), by_event(first_run, "interrupt_completed")
    assert first.count('class="mark team-interrupt"') == 1
    assert first.count('class="mark interrupt"') == len(acks) - 1 >= 1  # the supervisor's own line is the team mark
    assert first.count('class="mark stopped"') == len(stops) >= 1
    assert "User requested graceful shutdown (Ctrl+C)" in first and "source: USER" in first

    assert team.run().proc.returncode == 0  # resumed to completion
    done = report(team)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{written}\n" and done.stderr == ""
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    html = written.read_text()
    assert_offline(html)
    assert team.names == ["agent-a", "agent-b", "crew-a"]
    assert lanes(html) == ["agent-a", "agent-b", "crew / crew-a"]  # one lane per agent, config order
    latest, earlier = html.split("<h2>Earlier runs (1)</h2>")
    assert "run 2 of 2" in latest and 'class="status completed"' in latest
    # Every agent's cycles of this run, as bars with their hover titles.
    for name in team.names:
        assert latest.count(f"cycle_completed — {name}\n") == len(by_event(team.runs[1].new_events(), "cycle_completed", name))
    assert "team-interrupt" not in latest
    # Run 1 is now one line: how it ended, its interrupt, its cycles; no timeline.
    assert "interrupted, exit code 0, 1 interrupt(s)" in earlier
    assert f", {len(by_event(first_run, 'cycle_completed'))} cycle(s)</li>" in earlier
    assert earlier.count("<li") == 1 and "<svg" not in earlier


# ---- it renders: lanes measured in a real headless Chromium's screenshot ---------------


def screenshot(page: Path, png: Path, profile: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (the README's test command does)")
    argv = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
        "--force-device-scale-factor=1", f"--user-data-dir={profile}", f"--screenshot={png}",
        "--window-size=1400,900", page.as_uri(),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    assert png.is_file(), f"chromium wrote no screenshot (exit {done.returncode}):\n{done.stderr[-2000:]}"


def mask(image: Any, colour: str) -> Any:
    """An "L" image: 255 where the screenshot is `colour` give or take TOLERANCE per channel, else 0."""
    from PIL import Image, ImageChops

    target = Image.new("RGB", image.size, colour)
    channels = ImageChops.difference(image, target).point(lambda v: 255 if v <= TOLERANCE else 0).split()
    return ImageChops.multiply(ImageChops.multiply(channels[0], channels[1]), channels[2])


def rows_with(found: Any, min_run: int) -> list[int]:
    """The y of every row of a mask holding at least `min_run` set pixels."""
    width, height = found.size
    data = found.tobytes()
    return [y for y in range(height) if data[y * width : (y + 1) * width].count(255) >= min_run]


def bands(rows: list[int]) -> list[tuple[int, int]]:
    """Runs of consecutive rows as (first, last)."""
    out: list[tuple[int, int]] = []
    for y in rows:
        if out and y == out[-1][1] + 1:
            out[-1] = (out[-1][0], y)
        else:
            out.append((y, y))
    return out


def test_report_renders_one_lane_per_agent_in_chromium(make_team: Any, tmp_path: Path) -> None:
    Image = pytest.importorskip("PIL.Image")
    team = make_team(agents=3, latency=0.02, max_cycles=40, groups={"crew": {"agents": 1}})
    interrupted_run(team, cycles_each=3)
    done = report(team, "-o", str(tmp_path / "out.html"))
    assert done.returncode == 0, done.stderr
    png = tmp_path / "shot.png"
    screenshot(tmp_path / "out.html", png, tmp_path / "chromium-profile")

    image = Image.open(png).convert("RGB")
    agents = len(team.names)
    found = []
    for colour in LANE_COLOURS[:agents]:
        lane_bands = bands(rows_with(mask(image, colour), MIN_RUN))
        assert len(lane_bands) == 1, f"{colour}: expected one band of cycle bars, got {lane_bands}"
        top, bottom = lane_bands[0]
        assert abs((bottom - top + 1) - BAR_HEIGHT) <= 2, f"{colour}: a band {bottom - top + 1}px high"
        found.append((top + bottom) / 2)
    # One lane per agent, in config order, LANE_PITCH apart: a page with fewer lanes, or none, fails here.
    for i, centre in enumerate(found):
        assert abs(centre - found[0] - i * LANE_PITCH) <= 1.5, f"lane centres {found}, pitch {LANE_PITCH}"
    assert not rows_with(mask(image, LANE_COLOURS[agents]), MIN_RUN), "a lane too many"
    # The supervisor's interrupt: one vertical line through every lane, top to bottom.
    top, bottom = int(found[0] - BAR_HEIGHT), int(found[-1] + BAR_HEIGHT)
    red = mask(image, TEAM_INTERRUPT_COLOUR).crop((0, top, image.size[0], bottom)).transpose(Image.Transpose.ROTATE_90)
    through = rows_with(red, int(0.9 * (bottom - top)))  # rows of the rotated mask are the page's columns
    assert through, "no interrupt line crosses the lanes"
    assert max(through) - min(through) <= 4, f"one line expected, red columns at {through}"


# ---- bad input: one line, the contract's exit code, never a traceback --------------------


def test_no_events_is_one_line_and_exit_1(make_team: Any) -> None:
    team = make_team(agents=1)
    done = report(team)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: no events in ") and done.stderr.count("\n") == 1
    assert not (team.storage / "report.html").exists()

    team.storage.mkdir()
    (team.storage / "events.jsonl").write_text(json.dumps({"event": "cycle_completed", "agent_id": "agent-a"}) + "\n")
    done = report(team)
    assert (done.returncode, done.stderr.count("\n")) == (1, 1) and "no run in" in done.stderr, done.stderr


def test_unreadable_storage_and_unwritable_output(make_team: Any, tmp_path: Path) -> None:
    team = make_team(agents=1, latency=0.02, max_cycles=1)
    (team.storage / "events.jsonl").mkdir(parents=True)  # unreadable as a file, even for root
    done = report(team)
    assert done.returncode == 3 and done.stderr.startswith("error: storage ") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr

    (team.storage / "events.jsonl").rmdir()
    team.run()
    done = report(team, "-o", str(tmp_path / "no-such-folder" / "r.html"))
    assert done.returncode == 2 and done.stderr.startswith("error: cannot write ") and done.stderr.count("\n") == 1


def test_corrupt_line_is_skipped_and_the_report_still_written(make_team: Any) -> None:
    team = make_team(agents=2, latency=0.02, max_cycles=2)
    assert team.run().proc.returncode == 0
    path = team.storage / "events.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + "{this is not json\n" + "".join(lines[3:]))
    done = report(team)
    assert done.returncode == 0
    assert done.stderr == "warning: events.jsonl line 4: not valid JSON, skipped\n"
    html = (team.storage / "report.html").read_text()
    assert lanes(html) == team.names
    assert html.count('class="cycle"') == 4
    assert "1 unreadable line(s) skipped" in html


def test_event_text_is_escaped(make_team: Any) -> None:
    """Messages are user and LLM text: they must reach the page as text, never as markup."""
    team = make_team(agents=1)
    team.storage.mkdir()
    nasty = '<script>alert("x")</script><img src=x onerror=1>'

    def ev(second: float, event: str, agent: str, **fields: Any) -> str:
        line = {"timestamp": f"2026-11-24T03:55:{second:06.3f}Z", "level": "info", "event": event, "agent_id": agent}
        return json.dumps({**line, **fields}) + "\n"

    (team.storage / "events.jsonl").write_text(
        ev(0, "supervisor_started", team.team, resumed=[])
        + ev(1, "worker_started", "agent-a", pid=1, cycle=0)
        + ev(2, "cycle_completed", "agent-a", cycle=1, duration_ms=900, reply=nasty, tokens={"prompt": 7, "completion": 5})
        + ev(3, "interrupt_initiated", team.team, source="USER", mode="GRACEFUL", message=nasty)
        + ev(3.5, "interrupt_initiated", "<b>stranger</b>", source="USER", mode="GRACEFUL", message=nasty)
        + ev(4, "supervisor_stopped", team.team, status="interrupted", exit_code=0)
    )
    done = report(team)
    assert done.returncode == 0, done.stderr
    html = (team.storage / "report.html").read_text()
    assert_offline(html)
    assert "<img" not in html and "<b>stranger" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "Events for agents not in this config (not shown): &lt;b&gt;stranger&lt;/b&gt;" in html
    assert ">12<" in html  # the tokens of the one cycle, in the summary table


def test_earlier_runs_are_one_line_each_and_the_oldest_only_counted(
    make_team: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from supervisor.cli import main
    from supervisor.tools import report as report_module

    monkeypatch.setattr(report_module, "EARLIER_SHOWN", 2)
    team = make_team(agents=1)
    team.storage.mkdir()

    def ev(second: int, event: str, agent: str, **fields: Any) -> str:
        line = {"timestamp": f"2026-11-24T03:{second // 60:02d}:{second % 60:02d}.000Z", "level": "info",
                "event": event, "agent_id": agent}
        return json.dumps({**line, **fields}) + "\n"

    lines = []
    for run in range(1, 6):  # five runs; run k has k cycles and ends with exit code k
        t = run * 100
        lines += [ev(t, "supervisor_started", team.team, resumed=[]), ev(t + 1, "worker_started", "agent-a", pid=1)]
        lines += [ev(t + 1 + c, "cycle_completed", "agent-a", cycle=c, duration_ms=500) for c in range(1, run + 1)]
        lines += [ev(t + 9, "supervisor_stopped", team.team, status="failed", exit_code=run)]
    (team.storage / "events.jsonl").write_text("".join(lines))
    assert main(["report", str(team.config)]) == 0
    capsys.readouterr()
    html = (team.storage / "report.html").read_text()
    latest, earlier = html.split("<h2>Earlier runs (4)</h2>")
    assert "run 5 of 5" in latest and latest.count('class="cycle"') == 5
    assert re.findall(r'<li id="run-(\d)">run \d: [^<]* \(9s\), failed, exit code (\d), 0 interrupt\(s\), (\d) cycle\(s\)</li>', earlier) == [
        ("4", "4", "4"), ("3", "3", "3"),
    ]
    assert "<li>and 2 older run(s)</li>" in earlier


def test_messages_are_drawn_as_arrows_from_the_senders_lane_to_the_receivers(make_team: Any) -> None:
    from test_mail_e2e import pipeline

    team = pipeline(make_team, 3)
    run = team.run()
    assert run.proc.returncode == 0, run.output
    done = report(team)
    assert done.returncode == 0, done.stderr
    html = (team.storage / "report.html").read_text()
    assert_offline(html)
    timeline = html.split("</svg>")[0]
    arrows = re.findall(r'<g class="message"><title>message (\d+) from ([a-z-]+) to ([a-z-]+)</title>'
                        r'<line x1="[\d.]+" y1="([\d.]+)" x2="[\d.]+" y2="([\d.]+)"', timeline)
    assert sorted((s, r, int(n)) for n, s, r, _, _ in arrows) == sorted(
        [("producer", "relay", k) for k in (1, 2, 3)] + [("relay", "consumer", k) for k in (1, 2, 3)])
    row = {name: i for i, name in enumerate(lanes(html))}
    for _, sender, receiver, y1, y2 in arrows:  # each arrow runs from its sender's lane to its receiver's
        assert float(y2) - float(y1) == (row[receiver] - row[sender]) * LANE_PITCH
