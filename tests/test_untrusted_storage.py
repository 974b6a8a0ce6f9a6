"""Storage is not trusted: planted symlinks, other users' folders, hostile checkpoints, a full disk.

Every case goes through the real command line and real files: a folder
another user could change is refused in one line with exit 2 before anything
is written, a symlink's target is never touched, a bad checkpoint costs
bounded memory and is skipped for the older valid one, and a disk that fills
up mid-run leaves whole lines, so the next run stays a run of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness import HANG, REPO, Team, by_event, cli_peak, fill_up
from protocol.checkpoints import checkpoint_name

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user (chown, setuid) needs root")


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "supervisor", *args], capture_output=True, text=True, timeout=HANG, env=env)


def cli_measured(*args: str, cwd: Path) -> tuple[int, str, str, int]:
    """(exit code, stdout, stderr, peak resident memory in MiB) of one CLI process."""
    code, out, err, peak_kib = cli_peak(*args, cwd=cwd)
    return code, out, err, peak_kib // 1024


def refused(result: subprocess.CompletedProcess, *phrases: str) -> str:
    """Exit 2 and exactly one line on stderr, holding each phrase; returns the line."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr + result.stdout
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def team(make_team: Callable[..., Team]) -> Team:
    made = make_team(agents=1, latency=0.01, max_cycles=2)
    made.storage.mkdir(mode=0o700)
    return made


@pytest.fixture
def secret(tmp_path: Path) -> Iterator[Path]:
    """A root-owned 0600 file outside storage, the kind a planted symlink points at."""
    path = tmp_path / "secret"
    path.write_bytes(b"precious\n")
    path.chmod(0o600)
    yield path


def untouched(path: Path) -> bool:
    return path.read_bytes() == b"precious\n" and stat.S_IMODE(path.stat().st_mode) == 0o600


def as_nobody(action: Callable[[], None]) -> None:
    """Run `action` in a forked child that has become user nobody."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            action()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# ---- folders and symlinks: refused before anything is written -----------------------


def test_a_symlinked_lock_is_refused_and_its_target_untouched(team: Team, secret: Path) -> None:
    lock = team.storage / ".supervisor.lock"
    lock.symlink_to(secret)
    refused(cli("run", str(team.config)), str(lock), "symlink", f"rm {lock}")
    assert untouched(secret)
    assert sorted(os.listdir(team.storage)) == [".supervisor.lock"]  # no events, no agent folder


@needs_root
def test_a_lock_planted_by_another_user_in_a_world_writable_folder_is_refused(team: Team, secret: Path) -> None:
    team.storage.chmod(0o777)
    folder = os.open(team.storage, os.O_RDONLY | os.O_DIRECTORY)  # nobody cannot pass through tmp_path's 0700 parents
    try:
        as_nobody(lambda: os.symlink(secret, ".supervisor.lock", dir_fd=folder))
    finally:
        os.close(folder)
    assert (team.storage / ".supervisor.lock").lstat().st_uid == NOBODY
    refused(cli("run", str(team.config)), str(team.storage), "writable by group and others", f"chmod 700 {team.storage}")
    assert untouched(secret)


def test_a_symlinked_event_log_is_refused_and_its_target_untouched(team: Team, secret: Path) -> None:
    events = team.storage / "events.jsonl"
    events.symlink_to(secret)
    refused(cli("run", str(team.config)), str(events), "symlink", f"rm {events}")
    assert untouched(secret)


def test_a_symlinked_agent_folder_is_refused_and_gets_no_checkpoints(team: Team, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    folder = team.storage / "agent-a"
    folder.symlink_to(elsewhere, target_is_directory=True)
    refused(cli("run", str(team.config)), str(folder), "symlink")
    assert os.listdir(elsewhere) == []


def test_a_world_writable_storage_folder_is_refused(team: Team) -> None:
    team.storage.chmod(0o777)
    refused(cli("run", str(team.config)), f"storage folder {team.storage}", "mode 0777", f"chmod 700 {team.storage}")
    assert os.listdir(team.storage) == []


def test_a_group_writable_agent_folder_is_refused(team: Team) -> None:
    folder = team.storage / "agent-a"
    folder.mkdir()
    folder.chmod(0o770)
    refused(cli("run", str(team.config)), f"agent folder {folder}", "writable by group", f"chmod 700 {folder}")
    assert os.listdir(folder) == []


@needs_root
def test_a_storage_folder_owned_by_another_user_is_refused(team: Team) -> None:
    os.chown(team.storage, NOBODY, NOBODY)
    refused(cli("run", str(team.config)), f"storage folder {team.storage}", "owned by nobody", "chown")
    assert os.listdir(team.storage) == []


@pytest.mark.parametrize("command", [["status"], ["logs"], ["checkpoints", "--verify"], ["report"]])
def test_the_operator_tools_refuse_a_symlinked_event_log_too(team: Team, secret: Path, command: list[str]) -> None:
    events = team.storage / "events.jsonl"
    events.symlink_to(secret)
    refused(cli(command[0], str(team.config), *command[1:]), str(events), "symlink")
    assert untouched(secret)


def test_storage_created_by_the_run_is_0700_whatever_the_umask(team: Team) -> None:
    shutil.rmtree(team.storage)
    team.data["storage"] = "deep/er/state"
    team.write()
    old = os.umask(0)
    try:
        result = cli("run", str(team.config))
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    for folder in (team.root / "deep", team.root / "deep/er", team.root / "deep/er/state", team.root / "deep/er/state/agent-a"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


# ---- hostile checkpoints: bounded, skipped, resumed past ----------------------------

BOMB_BYTES = 512 * 1024 * 1024  # inflated size; a reader that inflates it all needs > 512 MiB
MEMORY_BOUND_MIB = 200  # the CLI's own ~40 MiB plus at most one checkpoint's worth (64 MiB) inflated, with room


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """~2.3 MB of gzip that inflates to 512 MiB of zeros: one gzip member, as a checkpoint is."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    parts = [packer.compress(chunk) for _ in range(BOMB_BYTES // len(chunk))]
    return b"".join(parts) + packer.flush()


def nested_trailer(depth: int = 100_000) -> bytes:
    """A checkpoint whose last line nests `depth` levels: parsing it first would recurse away."""
    header = json.dumps({"format": "agent-supervisor.checkpoint"}).encode()
    return zlib.compress(header + b"\n" + b"[" * depth + b"]" * depth + b"\n", wbits=31)


def test_a_nested_checkpoint_and_a_gzip_bomb_are_skipped_with_bounded_memory(team: Team, gzip_bomb: bytes) -> None:
    first = team.run()
    assert first.proc.returncode == 0, first.output
    folder = team.storage / "agent-a"
    valid = team.latest("agent-a")
    assert valid is not None and valid.cycle == 2
    nested, bomb = checkpoint_name(3, 90), checkpoint_name(4, 91)
    (folder / nested).write_bytes(nested_trailer())
    (folder / bomb).write_bytes(gzip_bomb)
    for path in (folder / nested, folder / bomb):
        path.chmod(0o600)

    code, out, err, peak = cli_measured("checkpoints", str(team.config), "--verify", cwd=team.root)
    assert code == 1, out + err
    assert "Traceback" not in err and peak < MEMORY_BOUND_MIB, (peak, err)
    for name in (nested, bomb):
        (line,) = [line for line in out.splitlines() if name in line]  # one line per bad file
        assert "corrupt" in line
    assert [line for line in out.splitlines() if valid.checkpoint_id in line and line.rstrip().endswith("ok")]

    code, out, err, peak = cli_measured("status", str(team.config), cwd=team.root)
    assert code == 0 and "Traceback" not in err and peak < MEMORY_BOUND_MIB, (peak, out, err)
    assert valid.checkpoint_id in out and nested in out and bomb in out  # the row, and the skipped ones named

    team.data["agents"][0]["max_cycles"] = 4
    team.write()
    resumed = team.run()
    assert resumed.proc.returncode == 0, resumed.output
    events = resumed.new_events()
    assert sorted(e["checkpoint_id"] for e in by_event(events, "checkpoint_corrupt")) == sorted([nested, bomb])
    assert [e["cycle"] for e in by_event(events, "worker_started")] == [2]  # resumed from the valid one
    team.assert_exactly_once("agent-a", 4)


# ---- a full disk: whole lines, and runs that stay apart -------------------------------


def logs_json(team: Team) -> tuple[dict, str]:
    result = cli("logs", str(team.config), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_a_full_disk_mid_run_leaves_whole_lines_and_the_next_run_apart(team: Team, mounts) -> None:
    team.data["restart"] = "temporary"  # a failed save fails the agent at once, no restarts
    team.write()
    storage = mounts.tmpfs(team.storage, "64k")
    # The event log's last page has 600 bytes free and no page is left after it: the
    # first lines fit, then one is cut short by ENOSPC partway, deterministically.
    (storage / "events.jsonl").write_bytes(b"\n" * (4096 - 600))  # blank lines: readers skip them
    (storage / ".supervisor.lock").write_bytes(b"0\n")  # as a previous run leaves it
    for name in ("events.jsonl", ".supervisor.lock"):
        (storage / name).chmod(0o600)
    filler = fill_up(storage)

    full = team.run()
    assert full.proc.returncode == 3, full.output
    assert "cannot write events.jsonl: No space left on device" in full.output and "Traceback" not in full.output
    assert (storage / "events.jsonl").read_bytes().endswith(b"\n")  # the cut line was taken back whole

    filler.unlink()
    freed = team.run()
    assert freed.proc.returncode == 0, freed.output
    for line in (storage / "events.jsonl").read_text().splitlines():
        if line:
            json.loads(line)  # not one torn or glued line
    document, warnings = logs_json(team)
    assert "skipped" not in warnings, warnings
    starts = by_event(document["events"], "supervisor_started")
    assert [e["pid"] for e in starts] == [full.pid, freed.pid]
    assert document["summary"]["runs"] == 2 and document["summary"]["status"] == "completed"
    team.assert_exactly_once("agent-a", 2)


def test_a_torn_last_line_stays_apart_from_the_next_run(team: Team) -> None:
    first = team.run()
    assert first.proc.returncode == 0, first.output
    events = team.storage / "events.jsonl"
    with open(events, "ab") as handle:  # a crash (or an older version on a full disk) cut this line short
        handle.write(b'{"timestamp": "2026-11-24T03:55:00Z", "level": "info", "event": "cycle_comp')
    second = cli("run", str(team.config))  # not team.run(): the harness's own reader wants whole lines
    assert second.returncode == 0, second.stdout + second.stderr
    document, warnings = logs_json(team)
    assert warnings.count("not valid JSON, skipped") == 1  # the half line alone
    starts = by_event(document["events"], "supervisor_started")
    assert len(starts) == 2 and starts[0]["pid"] == first.pid
    assert document["summary"]["runs"] == 2
