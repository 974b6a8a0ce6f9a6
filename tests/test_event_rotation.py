"""events.jsonl is rotated before it passes `events.max_bytes`, and every reader reads across the files.

Every line is written once, whole, into exactly one file; the files read
oldest first (`events.jsonl.N` ... `.1`, then `events.jsonl`) give the lines in
the order they were written; the oldest beyond `keep` are dropped; a rotation
left half done by a crash loses nothing. `logs`, `logs --follow`, `status` and
`report` read the files as one stream.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from harness import REPO, Team, by_event, cli, stream_files
from supervisor.runtime.events import EventLog, JsonlFiles, Rotation
from supervisor.tools.events import EventReader, read_events

LINE = '{{"event": "cycle_completed", "agent_id": "a", "n": {n}, "pad": "{pad}"}}'


def line(n: int) -> str:
    return LINE.format(n=n, pad="x" * (n % 37))


def write_lines(storage: Path, count: int, rotation: Rotation, interrupt_every: int = 0) -> JsonlFiles:
    files = JsonlFiles(storage, rotation)
    for n in range(count):
        files.msg(line(n), interrupt=bool(interrupt_every) and n % interrupt_every == 0)
    return files


def numbers_in(path: Path) -> list[int]:
    return [json.loads(text)["n"] for file in stream_files(path) for text in file.read_text().splitlines()]


def test_every_line_lands_once_whole_and_in_order_across_the_files(tmp_path: Path) -> None:
    write_lines(tmp_path, 500, Rotation(max_bytes=1000, keep=100), interrupt_every=3).close()
    events = tmp_path / "events.jsonl"
    assert numbers_in(events) == list(range(500))
    parts = stream_files(events)
    assert len(parts) > 40 and parts[0].name == f"events.jsonl.{len(parts) - 1}"
    for part in parts:
        assert part.stat().st_size <= 1000 and part.read_bytes().endswith(b"\n")
        assert stat.S_IMODE(part.stat().st_mode) == 0o600
    assert numbers_in(tmp_path / "interrupt_metrics.jsonl") == list(range(0, 500, 3))  # rotated by the same rule
    assert len(stream_files(tmp_path / "interrupt_metrics.jsonl")) > 10


def test_the_oldest_files_past_keep_are_dropped(tmp_path: Path) -> None:
    write_lines(tmp_path, 150, Rotation(max_bytes=1000, keep=3)).close()
    names = sorted(path.name for path in tmp_path.glob("events.jsonl*"))
    assert names == ["events.jsonl", "events.jsonl.1", "events.jsonl.2", "events.jsonl.3"]
    kept = numbers_in(tmp_path / "events.jsonl")
    assert kept == list(range(150 - len(kept), 150))  # the newest lines, consecutive: a tail of the stream

    write_lines(tmp_path, 40, Rotation(max_bytes=1000, keep=1)).close()  # keep lowered: the surplus goes too
    assert sorted(path.name for path in tmp_path.glob("events.jsonl*")) == ["events.jsonl", "events.jsonl.1"]


def test_a_line_longer_than_max_bytes_gets_a_file_of_its_own(tmp_path: Path) -> None:
    files = JsonlFiles(tmp_path, Rotation(max_bytes=1000, keep=10))
    files.msg(line(1))
    files.msg(json.dumps({"event": "x", "n": 2, "pad": "y" * 3000}))
    files.msg(line(3))
    files.close()
    assert numbers_in(tmp_path / "events.jsonl") == [1, 2, 3]
    assert [len(path.read_text().splitlines()) for path in stream_files(tmp_path / "events.jsonl")] == [1, 1, 1]


def test_a_rotation_cut_short_by_a_crash_loses_no_line(tmp_path: Path) -> None:
    """The states a crash can leave between the writer's renames: a gap in the numbers, then no live file yet."""
    write_lines(tmp_path, 60, Rotation(max_bytes=1000, keep=20)).close()
    events = tmp_path / "events.jsonl"
    before = [event["n"] for _, event in read_events(events)]
    assert before == list(range(60))
    oldest = max(int(path.suffix[1:]) for path in tmp_path.glob("events.jsonl.*"))
    assert oldest >= 4
    for number in range(oldest, 2, -1):  # the oldest first, as the writer renames; cut before .2 -> .3
        (tmp_path / f"events.jsonl.{number}").rename(tmp_path / f"events.jsonl.{number + 1}")
    assert not (tmp_path / "events.jsonl.3").exists()
    assert [event["n"] for _, event in read_events(events)] == before
    (tmp_path / "events.jsonl.2").rename(tmp_path / "events.jsonl.3")
    (tmp_path / "events.jsonl.1").rename(tmp_path / "events.jsonl.2")
    events.rename(tmp_path / "events.jsonl.1")  # cut before the new live file was created
    assert [event["n"] for _, event in read_events(events)] == before

    files = JsonlFiles(tmp_path, Rotation(max_bytes=1000, keep=20))  # the next run
    for n in range(60, 100):
        files.msg(line(n))
    files.close()
    assert [event["n"] for _, event in read_events(events)] == list(range(100))


def test_rotation_never_follows_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    storage = tmp_path / "state"
    storage.mkdir(mode=0o700)
    (storage / "events.jsonl.1").symlink_to(victim)
    write_lines(storage, 100, Rotation(max_bytes=1000, keep=4)).close()
    assert victim.read_text() == "precious\n"
    assert not any(path.is_symlink() for path in storage.iterdir())  # moved on as a link, then dropped past keep


def test_the_reader_reads_the_files_as_one_stream_and_rewinds_across_them(tmp_path: Path) -> None:
    write_lines(tmp_path, 200, Rotation(max_bytes=1000, keep=100)).close()
    (tmp_path / "events.jsonl.3").write_bytes((tmp_path / "events.jsonl.3").read_bytes() + b'{"torn": ')
    warnings: list[str] = []
    reader = EventReader(tmp_path / "events.jsonl", warnings.append)
    assert reader.open()
    seen, marks = [], {}
    for event in reader.finish():
        if "n" in event:
            seen.append(event["n"])
            marks[event["n"]] = reader.position
    assert seen == list(range(200))
    assert warnings == [f"events.jsonl.3 line {_lines(tmp_path / 'events.jsonl.3')}: not valid JSON, skipped"]
    reader.rewind(marks[17])
    assert [event["n"] for event in reader.finish() if "n" in event] == list(range(17, 200))
    reader.close()


def _lines(path: Path) -> int:
    return len(path.read_bytes().split(b"\n"))


@pytest.mark.e2e  # a real run and real CLI processes
def test_a_run_with_a_tiny_max_bytes_keeps_every_line_once_and_logs_follows_it(make_team: Any) -> None:
    team: Team = make_team(agents=3, max_cycles=12, latency=0.02)
    team.data["events"] = {"max_bytes": 1000, "keep": 100}
    team.write()
    storage = team.storage
    storage.mkdir(mode=0o700)
    follow = subprocess.Popen([sys.executable, "-m", "supervisor", "logs", str(team.config), "--follow", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=team.root,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    followed: list[dict[str, Any]] = []
    stopped = threading.Event()

    def pump() -> None:
        assert follow.stdout is not None
        for text in follow.stdout:
            event = json.loads(text)
            followed.append(event)
            if event.get("event") == "supervisor_stopped":
                stopped.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        run = team.run()
        assert run.proc.returncode == 0, run.output
        assert stopped.wait(30), "logs --follow never showed the run's end"
    finally:
        follow.send_signal(signal.SIGTERM)
        follow.wait(20)
    assert follow.returncode == 0

    parts = stream_files(storage / "events.jsonl")
    assert len(parts) > 10, "the run was meant to rotate many times"
    written = team.events()
    assert len(by_event(written, "cycle_completed")) == 36
    for agent in team.names:
        assert [e["cycle"] for e in by_event(written, "cycle_completed", agent)] == list(range(1, 13))
    assert followed[:-1] == written  # every line once, in order, across every rotation it lived through
    assert followed[-1]["summary"]["cycles"] == 36

    document = json.loads(cli("logs", str(team.config), "--json", cwd=team.root).stdout)
    assert document["events"] == written
    status = cli("status", str(team.config), "--json", cwd=team.root)
    assert status.returncode == 0, status.stderr
    assert [row["cycle"] for row in json.loads(status.stdout)] == [12, 12, 12]
    report = cli("report", str(team.config), "-o", str(team.root / "r.html"), cwd=team.root)
    assert report.returncode == 0, report.stderr
    assert (team.root / "r.html").read_text().count('class="cycle"') == 36


def test_a_rotated_name_that_is_not_a_plain_file_is_skipped_with_a_warning(tmp_path: Path) -> None:
    write_lines(tmp_path, 60, Rotation(max_bytes=1000, keep=20)).close()
    events = tmp_path / "events.jsonl"
    everything = [event["n"] for _, event in read_events(events)]
    victim = tmp_path.parent / f"{tmp_path.name}-victim.jsonl"
    victim.write_text(line(999) + "\n")
    (tmp_path / "events.jsonl.2").unlink()
    (tmp_path / "events.jsonl.2").symlink_to(victim)
    (tmp_path / "events.jsonl.3").unlink()
    os.mkfifo(tmp_path / "events.jsonl.3")  # opened blocking, it would hang the reader
    warnings: list[str] = []
    read = [event["n"] for _, event in read_events(events, warnings.append)]
    assert 999 not in read and read == [n for n in everything if n in read] and len(read) < len(everything)
    assert len(warnings) == 2
    assert "events.jsonl.3: not a regular file (a FIFO); skipped" in warnings
    assert any(text.startswith("events.jsonl.2: ") and "is a symlink" in text for text in warnings)


def test_a_rotation_that_fails_loses_no_line_and_is_said(tmp_path: Path) -> None:
    """A non-empty folder planted under the rotated name: the rename fails, the lines go on into the old file."""
    (tmp_path / "events.jsonl.1").mkdir()
    (tmp_path / "events.jsonl.1" / "keep-me").write_text("x")
    log = EventLog(tmp_path, rotation=Rotation(max_bytes=1000, keep=1), owner="demo")
    for n in range(40):
        log.emit("cycle_completed", agent_id="a", n=n)
    log.close()
    lines = [json.loads(text) for text in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [event["n"] for event in lines if "n" in event] == list(range(40))
    warnings = [event for event in lines if event["event"] == "events_not_rotated"]
    assert warnings and all(w["agent_id"] == "demo" and w["level"] == "warning" for w in warnings)
    assert "cannot rotate events.jsonl" in warnings[0]["error"]
    size = (tmp_path / "events.jsonl").stat().st_size
    assert len(warnings) <= size // 1000  # tried again only after another max_bytes, not at every line
    assert log.failure is None  # the run does not fail over it


def test_a_rotation_finishing_while_the_reader_opens_the_files_loses_no_file(tmp_path: Path, monkeypatch: Any) -> None:
    """The writer's cascade, staged on real files: the reader lists the names mid-rotation, the rotation ends.

    The writer renames `.2` to `.3`, `.1` to `.2`, then the live file to `.1`, then creates a new one. A
    reader that lists the names between the second and third step sees no `.1`; if the rotation ends
    before it opens the live name, it opens the new file, and every name it opened still names what it
    opened. The file now at `.1` must be read all the same, between the two it did open.
    """
    import supervisor.tools.events as tools_events

    for name, n in (("events.jsonl.3", 0), ("events.jsonl.2", 1), ("events.jsonl", 2)):  # `.1` already moved to `.2`
        (tmp_path / name).write_text(line(n) + "\n")
    listed = tools_events.rotated_numbers
    staged = []

    def list_then_finish_the_rotation(folder: int, name: str) -> list[int]:
        numbers = listed(folder, name)
        if not staged:
            staged.append(numbers)
            os.rename(tmp_path / "events.jsonl", tmp_path / "events.jsonl.1")
            (tmp_path / "events.jsonl").write_text(line(3) + "\n")
        return numbers

    monkeypatch.setattr(tools_events, "rotated_numbers", list_then_finish_the_rotation)
    assert [event["n"] for _, event in read_events(tmp_path / "events.jsonl")] == [0, 1, 2, 3]
    assert sorted(staged[0]) == [2, 3]  # it did list mid-rotation


def test_logs_follow_keeps_every_line_once_while_the_writer_rotates_as_fast_as_it_can(tmp_path: Path,
                                                                                      monkeypatch: Any) -> None:
    """A real writer thread rotating every few lines, a real follower polling: each line once, in order."""
    import supervisor.tools.events as tools_events

    monkeypatch.setattr(tools_events, "POLL_SECONDS", 0.0005)
    total = 600  # about 75 files: fewer than `keep`, so none is dropped however far the follower falls behind
    files = JsonlFiles(tmp_path, Rotation(max_bytes=600, keep=100))
    files.msg(line(0))

    def write() -> None:
        for n in range(1, total):
            files.msg(line(n))
        files.close()

    writer = threading.Thread(target=write)
    seen: list[int] = []
    writer.start()
    try:
        give_up = time.monotonic() + 60  # a lost line would have it wait for ever
        for _, event in tools_events.follow_events(tmp_path / "events.jsonl",
                                                   lambda: len(seen) >= total or time.monotonic() > give_up):
            seen.append(event["n"])
    finally:
        writer.join()
    assert seen == list(range(total))


def test_a_stream_that_never_holds_still_is_read_as_it_is_with_a_warning(tmp_path: Path, monkeypatch: Any) -> None:
    """Rotations without end while the files are opened: after its patience the reader reads what it has and says so."""
    import supervisor.tools.events as tools_events

    write_lines(tmp_path, 30, Rotation(max_bytes=1000, keep=20)).close()
    listed = tools_events.rotated_numbers
    calls = []

    def never_the_same(folder: int, name: str) -> list[int]:
        calls.append(1)
        return listed(folder, name) + ([9999] if len(calls) % 2 else [])  # a name that comes and goes

    monkeypatch.setattr(tools_events, "rotated_numbers", never_the_same)
    monkeypatch.setattr(tools_events, "OPEN_PATIENCE", 0.05)
    warnings: list[str] = []
    assert [event["n"] for _, event in read_events(tmp_path / "events.jsonl", warnings.append)] == list(range(30))
    assert len(calls) > 2  # it did try again
    assert warnings == ["events.jsonl: rotated all the while its files were opened; a line may be missed or read twice"]
