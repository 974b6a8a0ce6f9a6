"""Tests for protocol.checkpoints: durable saves, strict loads, latest-by-name, retention."""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import pickle
import signal
import stat
from pathlib import Path
from typing import Callable

import pytest

from protocol.checkpoints import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    CheckpointCorrupt,
    CheckpointInfo,
    CheckpointStore,
    CheckpointWriteError,
    SaveResult,
)

AGENT = "alice"


def conversation(count: int, size: int = 330) -> list[dict]:
    """A deterministic conversation; 200 messages of 330 chars is ~70 KB of JSON."""
    text = "The agent reviews the plan, checks the data and writes the next step. "
    out = []
    for i in range(count):
        body = (f"[{i}] " + text * (size // len(text) + 1))[:size]
        out.append({"role": "user" if i % 2 == 0 else "assistant", "content": body})
    return out


def opened(tmp_path: Path, agent: str = AGENT, **kwargs) -> CheckpointStore:
    store = CheckpointStore(tmp_path / "storage", agent, **kwargs)
    store.open_for_writing()
    return store


def save(store: CheckpointStore, cycle: int, **kwargs) -> SaveResult:
    kwargs.setdefault("status", "running")
    kwargs.setdefault("messages", conversation(3))
    return store.save(cycle=cycle, **kwargs)


def ids(store: CheckpointStore) -> list[str]:
    return [info.checkpoint_id for info in store.list()]


def read_lines(path: Path) -> list[bytes]:
    return gzip.decompress(path.read_bytes()).split(b"\n")[:-1]


# ---- round trip and file format ---------------------------------------------


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    store = opened(tmp_path)
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "héllo ✓ 🚀 \u2028 line\nbreak \"quoted\""},
        {"role": "assistant", "content": "", "name": "tool-x", "meta": {"tokens": 3}},
    ]
    extra = {"model": "scripted", "nested": {"a": [1, 2.5, None, True]}}
    result = store.save(cycle=7, status="interrupted", messages=messages, budget_spent_usd=1.25, extra=extra)

    assert result.checkpoint_id == "checkpoint_00000007_00000001.jsonl.gz"
    assert result.cycle == 7
    assert result.bytes == (store.directory / result.checkpoint_id).stat().st_size
    assert result.duration_ms > 0
    loaded = store.load(result.checkpoint_id)
    assert loaded.agent == AGENT
    assert loaded.checkpoint_id == result.checkpoint_id
    assert loaded.cycle == 7
    assert loaded.status == "interrupted"
    assert loaded.messages == messages
    assert loaded.budget_spent_usd == 1.25 and isinstance(loaded.budget_spent_usd, float)
    assert loaded.extra == extra
    assert loaded.created_at.endswith("Z") and "." in loaded.created_at
    assert loaded.to_dict() == {
        "agent": AGENT,
        "checkpoint_id": result.checkpoint_id,
        "cycle": 7,
        "status": "interrupted",
        "messages": messages,
        "budget_spent_usd": 1.25,
        "created_at": loaded.created_at,
        "extra": extra,
    }
    # A fresh reader (the CLI) sees the same thing without open_for_writing.
    assert CheckpointStore(tmp_path / "storage", AGENT).load_latest() == loaded


def test_file_layout_header_messages_trailer(tmp_path: Path) -> None:
    store = opened(tmp_path)
    messages = conversation(4)
    result = store.save(cycle=2, status="running", messages=messages, extra={"k": "v"})
    raw = (store.directory / result.checkpoint_id).read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip mtime=0: deterministic output
    lines = read_lines(store.directory / result.checkpoint_id)
    header = json.loads(lines[0])
    assert header == {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "agent": AGENT,
        "checkpoint_id": result.checkpoint_id,
        "cycle": 2,
        "status": "running",
        "budget_spent_usd": 0.0,
        "created_at": header["created_at"],
        "message_count": 4,
        "extra": {"k": "v"},
    }
    assert [json.loads(line) for line in lines[1:-1]] == messages
    body = b"".join(line + b"\n" for line in lines[:-1])
    assert json.loads(lines[-1]) == {"sha256": hashlib.sha256(body).hexdigest(), "lines": 5}
    assert b'", "' not in lines[0] and b'": ' not in lines[0]  # compact separators


def test_large_conversation_round_trips(tmp_path: Path) -> None:
    store = opened(tmp_path)
    messages = conversation(200)
    assert 65_000 <= len(json.dumps(messages, separators=(",", ":"))) <= 80_000
    result = store.save(cycle=200, status="completed", messages=messages, budget_spent_usd=3.5)
    loaded = store.load(result.checkpoint_id)
    assert loaded.messages == messages and loaded.cycle == 200 and loaded.status == "completed"


def test_lone_surrogate_round_trips(tmp_path: Path) -> None:
    store = opened(tmp_path)
    messages = [{"role": "user", "content": "broken \ud800 text"}]
    result = store.save(cycle=1, status="running", messages=messages)
    assert store.load(result.checkpoint_id).messages == messages


def test_uncompressed_is_readable_gzip_and_larger(tmp_path: Path) -> None:
    packed = opened(tmp_path / "a", compress=True)
    plain = opened(tmp_path / "b", compress=False)
    messages = conversation(50)
    small = packed.save(cycle=1, status="running", messages=messages)
    big = plain.save(cycle=1, status="running", messages=messages)
    assert big.checkpoint_id.endswith(".jsonl.gz")
    assert big.bytes > small.bytes
    assert json.loads(read_lines(plain.directory / big.checkpoint_id)[0])["format"] == CHECKPOINT_FORMAT
    assert plain.load(big.checkpoint_id).messages == messages


# ---- durability, modes, atomic rename ----------------------------------------


def test_modes_are_0700_and_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = opened(tmp_path)
        result = save(store, 1)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "storage").stat().st_mode) == 0o700
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((store.directory / result.checkpoint_id).stat().st_mode) == 0o600


def test_save_writes_temp_then_renames_and_fsyncs_file_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = opened(tmp_path)
    calls: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename

    def spy_fsync(fd: int) -> None:
        calls.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def spy_rename(src, dst, **kwargs) -> None:  # names relative to the folder descriptor
        calls.append(f"rename {Path(src).name} -> {Path(dst).name}")
        real_rename(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "rename", spy_rename)
    result = save(store, 1)
    assert calls[0] == "fsync-file"
    assert calls[1].startswith("rename .tmp-") and calls[1].endswith(f" -> {result.checkpoint_id}")
    assert calls[2] == "fsync-dir"
    assert len(calls) == 3


def test_failed_fsync_raises_write_error_and_keeps_previous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Running as root ignores folder modes, so a full disk is simulated by making
    # os.fsync fail with ENOSPC instead of making the folder read-only.
    store = opened(tmp_path)
    first = save(store, 1, messages=conversation(5))

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(CheckpointWriteError) as caught:
        save(store, 2)
    monkeypatch.undo()

    err = caught.value
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert str(store.directory) in str(err) and "\n" not in str(err)
    assert sorted(os.listdir(store.directory)) == [first.checkpoint_id]  # no temp file left
    latest = store.load_latest()
    assert latest is not None and latest.checkpoint_id == first.checkpoint_id
    assert pickle.loads(pickle.dumps(err)).errno == errno.ENOSPC
    # The store still works afterwards and never reuses the failed name.
    again = save(store, 2)
    assert again.checkpoint_id == "checkpoint_00000002_00000003.jsonl.gz"


def test_failed_folder_fsync_rolls_back_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = opened(tmp_path)
    first = save(store, 1)
    real_fsync = os.fsync

    def fail_on_directory(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fail_on_directory)
    with pytest.raises(CheckpointWriteError):
        save(store, 2)
    monkeypatch.undo()
    assert ids(store) == [first.checkpoint_id]
    assert os.listdir(store.directory) == [first.checkpoint_id]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_raises_write_error(tmp_path: Path) -> None:
    store = opened(tmp_path)
    first = save(store, 1)
    store.directory.chmod(0o500)
    try:
        with pytest.raises(CheckpointWriteError) as caught:
            save(store, 2)
        assert caught.value.errno == errno.EACCES
    finally:
        store.directory.chmod(0o700)
    assert ids(store) == [first.checkpoint_id]


def test_bad_arguments_write_nothing(tmp_path: Path) -> None:
    store = opened(tmp_path)
    with pytest.raises(ValueError):
        save(store, 1, status="paused")
    with pytest.raises(ValueError):
        save(store, -1)
    with pytest.raises(ValueError):
        save(store, 1, messages=[{"role": "user"}])
    with pytest.raises(ValueError):
        save(store, 1, budget_spent_usd=float("nan"))
    with pytest.raises(TypeError):
        save(store, 1, extra={"x": object()})
    with pytest.raises(RuntimeError):
        CheckpointStore(tmp_path / "other", AGENT).save(cycle=1, status="running", messages=[])
    assert os.listdir(store.directory) == []


# ---- names, latest, listing ----------------------------------------------------


def test_latest_is_highest_cycle_then_last_written(tmp_path: Path) -> None:
    store = opened(tmp_path)
    save(store, 5, messages=[{"role": "user", "content": "first five"}])
    second = save(store, 5, messages=[{"role": "user", "content": "second five"}])
    save(store, 4, messages=[{"role": "user", "content": "four"}])
    latest = CheckpointStore(tmp_path / "storage", AGENT).load_latest()
    assert latest is not None
    assert latest.checkpoint_id == second.checkpoint_id
    assert latest.messages[0]["content"] == "second five"
    assert [(i.cycle, i.seq) for i in store.list()] == [(4, 3), (5, 1), (5, 2)]


def test_list_is_read_only_and_ignores_other_files(tmp_path: Path) -> None:
    reader = CheckpointStore(tmp_path / "storage", AGENT)
    assert reader.list() == []
    assert reader.load_latest() is None
    assert not (tmp_path / "storage").exists()

    store = opened(tmp_path)
    result = save(store, 1)
    for junk in ("notes.txt", "checkpoint_1_1.jsonl.gz", f"{result.checkpoint_id}.bak", "checkpoint_000000001_00000009.jsonl.gz"):
        (store.directory / junk).write_bytes(b"x")
    (store.directory / "checkpoint_00000009_00000009.jsonl.gz").mkdir()
    infos = reader.list()
    assert infos == [
        CheckpointInfo(
            checkpoint_id=result.checkpoint_id,
            cycle=1,
            seq=1,
            path=store.directory / result.checkpoint_id,
            size_bytes=result.bytes,
        )
    ]


def test_sequence_continues_from_names_on_reopen(tmp_path: Path) -> None:
    store = opened(tmp_path)
    save(store, 1)
    save(store, 2)
    (store.directory / "checkpoint_00000001_00000041.jsonl.gz").write_bytes(b"corrupt, but its name counts")
    reopened = opened(tmp_path)
    assert save(reopened, 3).checkpoint_id == "checkpoint_00000003_00000042.jsonl.gz"


@pytest.mark.parametrize(
    "bad_id",
    [
        "../x",
        "../alice/checkpoint_00000001_00000001.jsonl.gz",
        "/etc/passwd",
        "",
        ".tmp-x",
        "checkpoint_1_1.jsonl.gz",
        "checkpoint_00000001_00000001.jsonl",
        "checkpoint_00000001_00000001.jsonl.gz\n",
        "checkpoint_00000001_00000001.jsonl.gz/../../x",
        "checkpoint_\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661_00000001.jsonl.gz",
    ],
)
def test_invalid_checkpoint_ids_are_rejected(tmp_path: Path, bad_id: str) -> None:
    store = opened(tmp_path)
    save(store, 1)
    with pytest.raises(ValueError):
        store.load(bad_id)
    with pytest.raises(ValueError):
        store.verify(bad_id)


@pytest.mark.parametrize("agent", ["", ".", "..", "../bob", "a/b", "a\\b", "a\0b"])
def test_invalid_agent_names_are_rejected(tmp_path: Path, agent: str) -> None:
    with pytest.raises(ValueError):
        CheckpointStore(tmp_path, agent)


def test_missing_checkpoint_is_reported_as_missing(tmp_path: Path) -> None:
    store = opened(tmp_path)
    with pytest.raises(CheckpointCorrupt) as caught:
        store.load("checkpoint_00000001_00000001.jsonl.gz")
    assert caught.value.reason == "missing"
    assert caught.value.checkpoint_id == "checkpoint_00000001_00000001.jsonl.gz"


# ---- stale temp files ------------------------------------------------------------


def test_stale_temp_files_are_removed_and_never_loaded(tmp_path: Path) -> None:
    store = opened(tmp_path)
    first = save(store, 1)
    # A valid-looking newer checkpoint that a crash left before its rename.
    stale = store.directory / ".tmp-x"
    other = opened(tmp_path / "elsewhere")
    newer = save(other, 9)
    stale.write_bytes((other.directory / newer.checkpoint_id).read_bytes())

    reader = CheckpointStore(tmp_path / "storage", AGENT)
    assert ids(reader) == [first.checkpoint_id]
    assert reader.load_latest().checkpoint_id == first.checkpoint_id  # type: ignore[union-attr]

    writer = CheckpointStore(tmp_path / "storage", AGENT)
    assert writer.open_for_writing() == [".tmp-x"]
    assert not stale.exists()
    assert os.listdir(store.directory) == [first.checkpoint_id]


# ---- retention -------------------------------------------------------------------


def test_retention_keeps_newest_without_listing_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = opened(tmp_path, keep=3)

    def no_listing(*args, **kwargs):
        raise AssertionError("save must not list the folder")

    monkeypatch.setattr(os, "scandir", no_listing)
    monkeypatch.setattr(os, "listdir", no_listing)
    saved = [save(store, cycle).checkpoint_id for cycle in (1, 2, 2, 3, 4, 5)]
    monkeypatch.undo()
    assert ids(store) == saved[-3:]
    assert sorted(os.listdir(store.directory)) == sorted(saved[-3:])


def test_retention_orders_by_cycle_then_seq(tmp_path: Path) -> None:
    store = opened(tmp_path, keep=2)
    a = save(store, 5).checkpoint_id
    b = save(store, 5).checkpoint_id
    c = save(store, 6).checkpoint_id
    assert ids(store) == [b, c]  # (5, 1) was the oldest
    lower = save(store, 4).checkpoint_id  # sorts below both: it alone would go, but it was just saved
    assert ids(store) == [lower, b, c]
    d = save(store, 7).checkpoint_id
    assert ids(store) == [c, d]
    assert a not in ids(store)


def test_retention_counts_existing_files_and_never_deletes_others(tmp_path: Path) -> None:
    store = opened(tmp_path, keep=2)
    for cycle in (1, 2, 3):
        save(store, cycle)
    (store.directory / "notes.txt").write_text("mine")
    reopened = opened(tmp_path, keep=2)
    newest = save(reopened, 4).checkpoint_id
    assert ids(reopened) == ["checkpoint_00000003_00000003.jsonl.gz", newest]
    assert (store.directory / "notes.txt").read_text() == "mine"


def test_retention_never_deletes_the_checkpoint_just_saved(tmp_path: Path) -> None:
    store = opened(tmp_path, keep=1)
    save(store, 10)
    lower = save(store, 9)  # e.g. resumed from cycle 8 after cycle 10 turned out corrupt
    assert (store.directory / lower.checkpoint_id).exists()
    assert store.load(lower.checkpoint_id).cycle == 9


def test_retention_tolerates_files_deleted_behind_its_back(tmp_path: Path) -> None:
    store = opened(tmp_path, keep=1)
    first = save(store, 1)
    (store.directory / first.checkpoint_id).unlink()
    second = save(store, 2)
    assert ids(store) == [second.checkpoint_id]


# ---- corruption ------------------------------------------------------------------


def _recompress(path: Path, edit: Callable[[bytes], bytes]) -> None:
    path.write_bytes(gzip.compress(edit(gzip.decompress(path.read_bytes())), mtime=0))


def _truncate_at(fraction: float) -> Callable[[Path], None]:
    def corrupt(path: Path) -> None:
        raw = path.read_bytes()
        path.write_bytes(raw[: max(1, int(len(raw) * fraction))])

    return corrupt


def _truncate_last(n: int) -> Callable[[Path], None]:
    def corrupt(path: Path) -> None:
        path.write_bytes(path.read_bytes()[:-n])

    return corrupt


def _flip_middle_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _edit_json_content(path: Path) -> None:
    def edit(data: bytes) -> bytes:
        assert b"reviews" in data
        return data.replace(b"reviews", b"REVIEWS", 1)  # still valid JSON, sha256 now stale

    _recompress(path, edit)


def _drop_trailer(path: Path) -> None:
    _recompress(path, lambda data: b"".join(line + b"\n" for line in data.split(b"\n")[:-2]))


def _drop_a_message_and_fix_the_trailer(path: Path) -> None:
    def edit(data: bytes) -> bytes:
        lines = data.split(b"\n")[:-1]
        body = b"".join(line + b"\n" for line in lines[:1] + lines[2:-1])
        trailer = json.dumps({"sha256": hashlib.sha256(body).hexdigest(), "lines": body.count(b"\n")})
        return body + trailer.encode() + b"\n"

    _recompress(path, edit)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(64) + b"definitely not gzip")


def _plain_text(path: Path) -> None:
    path.write_bytes(gzip.decompress(path.read_bytes()))


def _another_agents_file(path: Path) -> None:
    other = opened(path.parent.parent.parent / "bob-storage", agent="bob")
    cycle = int(path.name.split("_")[1])
    for _ in range(int(path.name.split("_")[2][:8])):
        result = save(other, cycle)
    path.write_bytes((other.directory / result.checkpoint_id).read_bytes())


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "truncated-1-byte-kept": _truncate_at(0.0),
    "truncated-at-10pct": _truncate_at(0.1),
    "truncated-at-half": _truncate_at(0.5),
    "truncated-at-90pct": _truncate_at(0.9),
    "truncated-crc-trailer": _truncate_last(4),
    "truncated-last-byte": _truncate_last(1),
    "flipped-middle-byte": _flip_middle_byte,
    "edited-json-content": _edit_json_content,
    "trailer-missing": _drop_trailer,
    "message-count-mismatch": _drop_a_message_and_fix_the_trailer,
    "empty-file": _empty,
    "non-gzip-garbage": _garbage,
    "not-compressed": _plain_text,
    "another-agents-header": _another_agents_file,
}


@pytest.mark.parametrize("corrupt", list(CORRUPTIONS.values()), ids=list(CORRUPTIONS))
def test_corruption_is_detected_and_skipped(tmp_path: Path, corrupt: Callable[[Path], None]) -> None:
    store = opened(tmp_path)
    good = save(store, 1, messages=conversation(20))
    bad = save(store, 2, messages=conversation(20))
    bad_path = store.directory / bad.checkpoint_id
    corrupt(bad_path)
    damaged = bad_path.read_bytes()

    with pytest.raises(CheckpointCorrupt) as caught:
        store.verify(bad.checkpoint_id)
    assert caught.value.checkpoint_id == bad.checkpoint_id
    assert caught.value.reason and "\n" not in str(caught.value)
    store.verify(good.checkpoint_id)

    reports: list[tuple[str, str]] = []
    latest = CheckpointStore(tmp_path / "storage", AGENT).load_latest(on_corrupt=lambda i, r: reports.append((i, r)))
    assert latest is not None and latest.checkpoint_id == good.checkpoint_id
    assert latest.messages == conversation(20)
    assert reports == [(bad.checkpoint_id, caught.value.reason)]
    assert bad_path.read_bytes() == damaged  # loading never deletes or repairs


def test_header_naming_another_file_is_corrupt(tmp_path: Path) -> None:
    store = opened(tmp_path)
    result = save(store, 3)
    moved = store.directory / "checkpoint_00000003_00000007.jsonl.gz"
    os.rename(store.directory / result.checkpoint_id, moved)
    with pytest.raises(CheckpointCorrupt, match="file name"):
        store.verify(moved.name)


def test_fallback_walks_past_several_corrupt_and_reports_each(tmp_path: Path) -> None:
    store = opened(tmp_path)
    valid = save(store, 1)
    broken = [save(store, cycle).checkpoint_id for cycle in (2, 3, 4)]
    for name in broken:
        _garbage(store.directory / name)
    reports: list[tuple[str, str]] = []
    latest = store.load_latest(on_corrupt=lambda i, r: reports.append((i, r)))
    assert latest is not None and latest.checkpoint_id == valid.checkpoint_id
    assert [i for i, _ in reports] == list(reversed(broken))

    _garbage(store.directory / valid.checkpoint_id)
    assert store.load_latest() is None  # no callback: still skipped, still None


def test_corrupt_exception_is_one_line_and_pickles() -> None:
    err = CheckpointCorrupt("checkpoint_00000001_00000001.jsonl.gz", "bad\ngzip   data")
    assert err.reason == "bad gzip data"
    assert str(err) == "checkpoint checkpoint_00000001_00000001.jsonl.gz: bad gzip data"
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.checkpoint_id, copy.reason) == (err.checkpoint_id, err.reason)
    assert isinstance(Checkpoint("a", "b", 0, "running", [], 0.0, "t", {}).to_dict(), dict)


# ---- hostile files: bounded, never followed, checked against what save writes ----------


def _header(store: CheckpointStore, name: str, **changes: object) -> dict:
    """A header as save writes it, for checkpoint `name` of `store`."""
    cycle = int(name.split("_")[1])
    header = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "agent": store.agent,
        "checkpoint_id": name,
        "cycle": cycle,
        "status": "running",
        "budget_spent_usd": 0.0,
        "created_at": "2026-11-24T03:55:00.000000Z",
        "message_count": 0,
        "extra": {},
    }
    header.update(changes)
    return header


def _forge(path: Path, lines: list[bytes]) -> None:
    """A checkpoint of `lines` with a valid trailer: the checksum proves integrity, not origin."""
    body = b"".join(line + b"\n" for line in lines)
    trailer = json.dumps({"sha256": hashlib.sha256(body).hexdigest(), "lines": len(lines)}, separators=(",", ":"))
    path.write_bytes(gzip.compress(body + trailer.encode() + b"\n", mtime=0))


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _planted(tmp_path: Path) -> tuple[CheckpointStore, str, Path]:
    """A store with one valid checkpoint (cycle 1) and the path of a newer name to plant at (cycle 2)."""
    store = opened(tmp_path)
    good = save(store, 1).checkpoint_id
    name = "checkpoint_00000002_00000009.jsonl.gz"
    return store, good, store.directory / name


def _falls_back(store: CheckpointStore, good: str, bad: str) -> str:
    """The bad one is reported corrupt, and the newest valid one is what a resume gets; returns the reason."""
    reports: list[tuple[str, str]] = []
    latest = CheckpointStore(store.storage, store.agent).load_latest(on_corrupt=lambda i, r: reports.append((i, r)))
    assert latest is not None and latest.checkpoint_id == good
    (report,) = reports
    assert report[0] == bad and "\n" not in report[1]
    return report[1]


def test_a_deeply_nested_trailer_is_corrupt_without_a_valid_checksum(tmp_path: Path) -> None:
    store, good, path = _planted(tmp_path)
    header = json.dumps(_header(store, path.name)).encode()
    path.write_bytes(gzip.compress(header + b"\n" + _nested(100_000).encode() + b"\n"))
    assert "trailer" in _falls_back(store, good, path.name)


@pytest.mark.parametrize("where", ["header", "message"])
@pytest.mark.parametrize("depth", [100_000, 150])  # past the recursion limit, and merely past the nesting limit
def test_deep_nesting_behind_a_valid_checksum_is_corrupt(tmp_path: Path, where: str, depth: int) -> None:
    store, good, path = _planted(tmp_path)
    if where == "header":
        header = json.dumps(_header(store, path.name))[:-1] + ', "extra": {"state": ' + _nested(depth) + "}}"
        lines = [header.encode()]
    else:
        message = '{"role": "user", "content": "x", "meta": ' + _nested(depth) + "}"
        lines = [json.dumps(_header(store, path.name, message_count=1)).encode(), message.encode()]
    _forge(path, lines)
    assert "nests deeper than" in _falls_back(store, good, path.name)


def test_save_refuses_what_a_reader_would_refuse_and_writes_up_to_the_limit(tmp_path: Path) -> None:
    from protocol.checkpoints import MAX_NESTING

    def deep(levels: int) -> object:
        value: object = {}
        for _ in range(levels - 1):
            value = {"d": value}
        return value

    store = opened(tmp_path)
    with pytest.raises(ValueError, match="nests deeper"):
        save(store, 1, extra=deep(MAX_NESTING))  # extra sits one level down, inside the header
    with pytest.raises(ValueError, match="nests deeper"):
        save(store, 1, messages=[{"role": "user", "content": "x", "meta": deep(MAX_NESTING)}])
    assert os.listdir(store.directory) == []
    message = {"role": "user", "content": "x", "meta": deep(MAX_NESTING - 1)}
    at_limit = save(store, 1, extra=deep(MAX_NESTING - 1), messages=[message])
    assert store.load(at_limit.checkpoint_id).extra == deep(MAX_NESTING - 1)


def test_content_beyond_the_size_limit_is_neither_written_nor_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = opened(tmp_path)
    big = save(store, 1, messages=conversation(40)).checkpoint_id
    monkeypatch.setattr("protocol.checkpoints.MAX_CONTENT_BYTES", 4096)
    with pytest.raises(ValueError, match="more than a checkpoint may hold"):
        save(store, 2, messages=conversation(40))
    assert ids(store) == [big]  # nothing new on disk
    with pytest.raises(CheckpointCorrupt, match="inflates to more than"):
        store.load(big)


def test_a_gzip_bomb_is_refused_holding_no_more_than_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tracemalloc
    import zlib

    limit = 1 << 20  # a small limit keeps the bomb quick to build; the rule is the same at 64 MiB
    monkeypatch.setattr("protocol.checkpoints.MAX_CONTENT_BYTES", limit)
    store, good, path = _planted(tmp_path)
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    path.write_bytes(b"".join(packer.compress(chunk) for _ in range(32)) + packer.flush())  # 32 MiB of zeros
    assert path.stat().st_size < limit // 4
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointCorrupt, match="inflates to more than"):
            store.load(path.name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * limit  # the limit and one step of inflating, not the 32 MiB the file claims
    assert "inflates to more than" in _falls_back(store, good, path.name)


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"budget_spent_usd": 10**400}, "budget_spent_usd"),  # too large for a float: no OverflowError
        ({"budget_spent_usd": -1.0}, "budget_spent_usd"),
        ({"cycle": True}, "wrong type"),
        ({"created_at": "2026-11-24T03:55:00Z" + " " * 100}, "created_at"),
        ({"extra": []}, "wrong type"),
        ({"status": "paused"}, "unknown status"),
        ({"message_count": -1}, "message count"),
    ],
)
def test_every_header_field_is_checked_behind_a_valid_checksum(tmp_path: Path, changes: dict, reason: str) -> None:
    store, good, path = _planted(tmp_path)
    _forge(path, [json.dumps(_header(store, path.name, **changes)).encode()])
    assert reason in _falls_back(store, good, path.name)


def test_data_after_the_gzip_stream_is_corrupt(tmp_path: Path) -> None:
    store = opened(tmp_path)
    result = save(store, 1)
    path = store.directory / result.checkpoint_id
    path.write_bytes(path.read_bytes() + gzip.compress(b"more\n"))
    with pytest.raises(CheckpointCorrupt, match="after the gzip stream"):
        store.load(result.checkpoint_id)


def test_a_symlink_under_a_checkpoint_name_is_never_followed(tmp_path: Path) -> None:
    store, good, path = _planted(tmp_path)
    other = opened(tmp_path / "elsewhere")
    target = other.directory / save(other, 2).checkpoint_id  # a valid checkpoint, but only through the link
    path.symlink_to(target)
    assert "symlink" in _falls_back(store, good, path.name)
    # Retention removes the link, never what it points at.
    writer = CheckpointStore(tmp_path / "storage", AGENT, keep=1)
    writer.open_for_writing()
    save(writer, 3)
    assert not os.path.lexists(path) and target.exists()


def test_a_fifo_under_a_checkpoint_name_does_not_hang_a_reader(tmp_path: Path) -> None:
    store, good, path = _planted(tmp_path)
    os.mkfifo(path, 0o600)

    def hung(*_: object) -> None:
        raise TimeoutError("the reader blocked opening a FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)  # turns a hang into a failure
    try:
        assert "not a regular file" in _falls_back(store, good, path.name)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_file_larger_than_any_checkpoint_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, good, path = _planted(tmp_path)
    path.write_bytes(b"\0" * 10_000)
    monkeypatch.setattr("protocol.checkpoints.MAX_FILE_BYTES", 4096)
    assert "more than a checkpoint can be" in _falls_back(store, good, path.name)


def test_a_stale_temp_symlink_is_removed_as_a_link(tmp_path: Path) -> None:
    store = opened(tmp_path)
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    (store.directory / ".tmp-planted").symlink_to(precious)
    assert CheckpointStore(tmp_path / "storage", AGENT).open_for_writing() == [".tmp-planted"]
    assert precious.read_text() == "keep me"


def test_a_symlinked_agent_folder_is_refused_by_readers_and_the_writer(tmp_path: Path) -> None:
    from protocol.storage_files import UntrustedStorage

    elsewhere = opened(tmp_path / "elsewhere")
    save(elsewhere, 1)
    before = sorted(os.listdir(elsewhere.directory))
    (tmp_path / "storage").mkdir(mode=0o700)
    (tmp_path / "storage" / AGENT).symlink_to(elsewhere.directory, target_is_directory=True)
    store = CheckpointStore(tmp_path / "storage", AGENT)
    for attempt in (store.list, store.load_latest, store.open_for_writing):
        with pytest.raises(UntrustedStorage, match="symlink"):
            attempt()
    assert sorted(os.listdir(elsewhere.directory)) == before


@pytest.mark.parametrize("folder", ["storage", "agent"])
def test_a_folder_others_can_write_is_refused(tmp_path: Path, folder: str) -> None:
    from protocol.storage_files import UntrustedStorage

    store = opened(tmp_path)
    save(store, 1)
    path = store.storage if folder == "storage" else store.directory
    path.chmod(0o777)
    with pytest.raises(UntrustedStorage) as caught:
        CheckpointStore(tmp_path / "storage", AGENT).load_latest()
    assert str(caught.value).count("\n") == 0 and f"chmod 700 {path}" in str(caught.value)
