"""The checkpoint store's rules one at a time: each corruption's reason, each refused argument, pruning.

`checkpoint_corrupt` events and `checkpoints --verify` show the reason a file
was refused, so each check is reached here on its own (the file is edited and
its trailer resealed, so only the check under test can fail) and its words are
asserted. Real files, real gzip, real fsync throughout.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from protocol.checkpoints import (
    CheckpointCorrupt,
    CheckpointInfo,
    CheckpointStore,
    CheckpointWriteError,
)

AGENT = "alice"
MESSAGES = [{"role": "user", "content": "plan the trip"}, {"role": "assistant", "content": "Paris, then Lyon"}]


def opened(tmp_path: Path, agent: str = AGENT, **kwargs: Any) -> CheckpointStore:
    store = CheckpointStore(tmp_path / "storage", agent, **kwargs)
    store.open_for_writing()
    return store


def saved(tmp_path: Path, cycle: int = 1) -> tuple[CheckpointStore, Path]:
    store = opened(tmp_path)
    result = store.save(cycle=cycle, status="running", messages=MESSAGES)
    return store, store.directory / result.checkpoint_id


def reseal(path: Path, lines: list[bytes], trailer: Any = None) -> None:
    """Write `lines` (header and messages) back with a trailer that matches them, unless one is given."""
    body = b"".join(line + b"\n" for line in lines)
    if trailer is None:
        trailer = {"sha256": hashlib.sha256(body).hexdigest(), "lines": len(lines)}
    path.write_bytes(gzip.compress(body + json.dumps(trailer).encode() + b"\n", mtime=0))


def overwrite(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def lines_of(path: Path) -> list[bytes]:
    return gzip.decompress(path.read_bytes()).split(b"\n")[:-2]  # without the trailer


def with_header(**changes: Any) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        lines = lines_of(path)
        header = json.loads(lines[0])
        for key, value in changes.items():
            if value is KeyError:
                del header[key]
            else:
                header[key] = value
        reseal(path, [json.dumps(header).encode(), *lines[1:]])

    return edit


def with_lines(edit_lines: Callable[[list[bytes]], list[bytes]]) -> Callable[[Path], None]:
    return lambda path: reseal(path, edit_lines(lines_of(path)))


def raw(data: bytes, compress: bool = True) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(gzip.compress(data, mtime=0) if compress else data)

    return write


def trailer(value: Any) -> Callable[[Path], None]:
    return lambda path: reseal(path, lines_of(path), trailer=value)


NAME = "checkpoint_00000001_00000001.jsonl.gz"

REASONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty": (raw(b"", compress=False), "empty file"),
    "truncated": (lambda p: overwrite(p, p.read_bytes()[:-4]), "truncated gzip stream"),
    "no-content": (raw(b""), "no content"),
    "no-final-newline": (raw(b'{"a":1}'), "content does not end with a newline (truncated)"),
    "trailer-not-json": (raw(b"{}\nnot json\n"), "trailer missing or not JSON"),
    "trailer-a-list": (trailer([1, 2]), "trailer missing or malformed"),
    "trailer-sha-not-str": (trailer({"sha256": 1, "lines": 3}), "trailer missing or malformed"),
    "trailer-lines-bool": (trailer({"sha256": "00", "lines": True}), "trailer missing or malformed"),
    "trailer-count": (trailer({"sha256": "0" * 64, "lines": 5}), "line count mismatch: trailer says 5, found 3"),
    "sha256": (trailer({"sha256": "0" * 64, "lines": 3}), "sha256 mismatch"),
    "no-header": (with_lines(lambda lines: []), "header missing"),
    "header-not-json": (with_lines(lambda lines: [b"{nope", *lines[1:]]), "header is not JSON"),
    "header-a-list": (with_lines(lambda lines: [b"[]", *lines[1:]]), "header is not an object"),
    "field-missing": (with_header(extra=KeyError), "header field 'extra' missing"),
    "field-type": (with_header(cycle="1"), "header field 'cycle' has the wrong type"),
    "field-bool": (with_header(cycle=True), "header field 'cycle' has the wrong type"),
    "format": (with_header(format="tarball"), "not a checkpoint (format 'tarball')"),
    "version": (with_header(version=2), "unsupported version 2"),
    "agent": (with_header(agent="bob"), "belongs to agent 'bob', not 'alice'"),
    "cycle": (with_header(cycle=9), "header cycle does not match the file name"),
    "status": (with_header(status="paused"), "unknown status 'paused'"),
    "budget-negative": (with_header(budget_spent_usd=-1), "budget_spent_usd is not a finite amount >= 0"),
    "budget-nan": (with_header(budget_spent_usd=float("nan")), "budget_spent_usd is not a finite amount >= 0"),
    "created-not-a-time": (with_header(created_at="yesterday"), "created_at is not an ISO 8601 UTC timestamp"),
    "created-naive": (with_header(created_at="2026-01-01T00:00:00"), "created_at is not an ISO 8601 UTC timestamp"),
    "message-count": (with_header(message_count=3), "message count mismatch: header says 3, found 2"),
    "message-not-json": (with_lines(lambda lines: [*lines[:2], b"{oops"]), "message 1 is not JSON"),
    "message-a-list": (with_lines(lambda lines: [lines[0], b"[]", lines[2]]), "message 0 is not an object"),
    "message-no-role": (with_lines(lambda lines: [lines[0], lines[1], b'{"content":"x"}']),
                        "message 1 has no string 'role'"),
}


@pytest.mark.parametrize("name", list(REASONS))
def test_each_check_refuses_with_its_own_reason(tmp_path: Path, name: str) -> None:
    corrupt, reason = REASONS[name]
    store, path = saved(tmp_path)
    assert path.name == NAME
    corrupt(path)
    with pytest.raises(CheckpointCorrupt) as caught:
        store.load(NAME)
    assert (caught.value.checkpoint_id, caught.value.reason) == (NAME, reason)


def test_garbage_is_bad_gzip_data(tmp_path: Path) -> None:
    store, path = saved(tmp_path)
    path.write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointCorrupt, match=r": bad gzip data: \S"):
        store.load(NAME)


@pytest.mark.parametrize("created_at", ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00+00:00",
                                        "2026-01-01T00:00:00.123456Z"])
def test_utc_timestamps_with_z_or_an_offset_are_accepted(tmp_path: Path, created_at: str) -> None:
    store, path = saved(tmp_path)
    with_header(created_at=created_at)(path)
    assert store.load(NAME).created_at == created_at


def test_created_at_is_utc_whatever_the_local_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        before = datetime.now(timezone.utc)
        store, _ = saved(tmp_path)
        after = datetime.now(timezone.utc)
    finally:
        monkeypatch.undo()
        time.tzset()
    created = datetime.fromisoformat(store.load(NAME).created_at.replace("Z", "+00:00"))
    assert before <= created <= after


def test_a_folder_or_an_unreadable_file_under_a_checkpoint_name(tmp_path: Path) -> None:
    store, path = saved(tmp_path)
    path.unlink()
    path.mkdir()
    with pytest.raises(CheckpointCorrupt) as caught:
        store.load(NAME)
    assert (caught.value.checkpoint_id, caught.value.reason) == (NAME, "is a directory")
    path.rmdir()
    path.symlink_to(path.name)  # a symlink (a loop, even): refused without being followed
    with pytest.raises(CheckpointCorrupt) as caught:
        store.load(NAME)
    assert (caught.value.checkpoint_id, caught.value.reason) == (NAME, "is a symlink, which is never followed")


def test_a_checkpoint_id_that_is_not_a_string_is_refused_as_an_id(tmp_path: Path) -> None:
    store, _ = saved(tmp_path)
    with pytest.raises(ValueError, match=r"^invalid checkpoint id 5 \(expected checkpoint_CCCCCCCC_SSSSSSSS"):
        store.load(5)  # type: ignore[arg-type]


def test_a_file_that_vanishes_after_listing_is_skipped_not_reported(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = saved(tmp_path)
    gone = CheckpointInfo("checkpoint_00000009_00000009.jsonl.gz", 9, 9, store.directory / "x", 0)
    real = CheckpointStore.list
    monkeypatch.setattr(CheckpointStore, "list", lambda self: [*real(self), gone])
    reports: list[tuple[str, str]] = []
    latest = store.load_latest(on_corrupt=lambda i, r: reports.append((i, r)))
    assert latest is not None and latest.checkpoint_id == NAME and reports == []


def test_a_folder_named_like_a_checkpoint_is_not_listed_and_hides_nothing(tmp_path: Path) -> None:
    store = opened(tmp_path)
    names = [store.save(cycle=c, status="running", messages=MESSAGES).checkpoint_id for c in range(1, 8)]
    for seq in (97, 98, 99):  # wherever the folder listing puts them
        (store.directory / f"checkpoint_00000004_000000{seq}.jsonl.gz").mkdir()
    assert [info.checkpoint_id for info in store.list()] == names


# ---- opening for writing ------------------------------------------------------------------

def test_stale_temp_files_and_links_go_but_folders_and_their_targets_stay(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.save(cycle=1, status="running", messages=MESSAGES)
    target = tmp_path / "keep-me"
    target.mkdir()
    (store.directory / ".tmp-a-dir").mkdir()
    (store.directory / ".tmp-link").symlink_to(target)
    for i in range(5):
        (store.directory / f".tmp-{i}").write_bytes(b"half a save")
    reopened = CheckpointStore(tmp_path / "storage", AGENT)
    assert reopened.open_for_writing() == [".tmp-0", ".tmp-1", ".tmp-2", ".tmp-3", ".tmp-4", ".tmp-link"]
    assert target.is_dir() and (store.directory / ".tmp-a-dir").is_dir()


def test_after_reopening_retention_still_goes_by_cycle_then_seq(tmp_path: Path) -> None:
    store = opened(tmp_path, keep=2)
    high = store.save(cycle=9, status="running", messages=MESSAGES).checkpoint_id  # seq 1
    low = store.save(cycle=1, status="running", messages=MESSAGES).checkpoint_id  # seq 2, but the older cycle
    reopened = opened(tmp_path, keep=2)
    newest = reopened.save(cycle=10, status="running", messages=MESSAGES).checkpoint_id
    assert [info.checkpoint_id for info in reopened.list()] == [high, newest]
    assert low not in os.listdir(store.directory)


def test_a_file_where_the_folder_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "storage").mkdir()
    (tmp_path / "storage" / AGENT).write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="(?i)not a directory"):
        opened(tmp_path)


# ---- arguments ----------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error", "words"), [
    ({"cycle": True}, ValueError, r"^cycle must be an integer >= 0 \(got True\)$"),
    ({"cycle": "1"}, ValueError, "cycle must be an integer"),
    ({"status": "paused"}, ValueError, r"^status must be one of running, interrupted, completed, failed \(got 'paused'\)$"),
    ({"budget_spent_usd": True}, TypeError, r"^budget_spent_usd must be a number \(got True\)$"),
    ({"budget_spent_usd": -0.5}, ValueError, r"^budget_spent_usd must be a finite amount >= 0 \(got -0.5\)$"),
    ({"budget_spent_usd": float("inf")}, ValueError, "finite amount"),
    ({"extra": []}, TypeError, r"^extra must be a dict \(got list\)$"),
    ({"messages": ()}, TypeError, r"^messages must be a list \(got tuple\)$"),
    ({"messages": [MESSAGES[0], {"role": "user"}]}, ValueError, r"^message 1 has no string 'content'$"),
    ({"extra": {"x": float("nan")}}, ValueError, "JSON compliant"),
    ({"messages": [{"role": "user", "content": "\ud800"}], "extra": {"x": float("nan")}}, ValueError, "JSON compliant"),
])
def test_bad_arguments_are_refused_by_name_before_the_disk_is_touched(tmp_path: Path, kwargs: dict, error: type,
                                                                     words: str) -> None:
    store = opened(tmp_path)
    arguments: dict[str, Any] = {"cycle": 1, "status": "running", "messages": MESSAGES, **kwargs}
    with pytest.raises(error, match=words):
        store.save(**arguments)
    assert os.listdir(store.directory) == []


def test_cycle_zero_is_a_cycle(tmp_path: Path) -> None:
    store = opened(tmp_path)
    assert store.save(cycle=0, status="running", messages=[]).checkpoint_id == "checkpoint_00000000_00000001.jsonl.gz"


@pytest.mark.parametrize("keep", [0, -1, True, "3", 2.0])
def test_keep_must_be_a_whole_number_of_checkpoints(tmp_path: Path, keep: Any) -> None:
    with pytest.raises(ValueError, match=r"^keep must be an integer >= 1 \(got "):
        CheckpointStore(tmp_path, AGENT, keep=keep)


@pytest.mark.parametrize("agent", ["Xavier", "x-1", "a.b"])
def test_ordinary_agent_names_are_accepted(tmp_path: Path, agent: str) -> None:
    assert opened(tmp_path, agent=agent).directory == tmp_path / "storage" / agent


def test_an_agent_name_that_is_a_path_is_refused_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^invalid agent name for a checkpoint folder: '\.\./x'$"):
        CheckpointStore(tmp_path, "../x")


# ---- what a save reports and writes ------------------------------------------------------

def test_a_save_reports_when_it_became_durable_and_how_long_it_took(tmp_path: Path) -> None:
    store = opened(tmp_path)
    wall_before, before = time.time(), time.perf_counter()
    result = store.save(cycle=1, status="running", messages=MESSAGES)
    elapsed_ms, wall_after = (time.perf_counter() - before) * 1000.0, time.time()
    assert wall_before <= result.durable_at <= wall_after
    assert 0.0 < result.duration_ms <= elapsed_ms


def test_compress_false_stores_the_content_and_true_compresses_it(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "the same words again " * 200}]
    for compress, smaller in ((False, False), (True, True)):
        store = opened(tmp_path / str(compress), compress=compress)
        result = store.save(cycle=1, status="running", messages=messages)
        content = gzip.decompress((store.directory / result.checkpoint_id).read_bytes())
        assert (result.bytes < len(content)) is smaller


def test_text_is_stored_as_readable_utf8(tmp_path: Path) -> None:
    store = opened(tmp_path)
    result = store.save(cycle=1, status="running", messages=[{"role": "user", "content": "café – 東京"}])
    assert "café – 東京".encode() in gzip.decompress((store.directory / result.checkpoint_id).read_bytes())


def test_lone_surrogates_fall_back_to_compact_ascii_json(tmp_path: Path) -> None:
    store = opened(tmp_path)
    result = store.save(cycle=1, status="running", messages=[{"role": "user", "content": "a\ud800b"}])
    header = gzip.decompress((store.directory / result.checkpoint_id).read_bytes()).split(b"\n")[0]
    assert header.startswith(b'{"format":"agent-supervisor.checkpoint","version":1,')
    assert store.load(result.checkpoint_id).messages[0]["content"] == "a\ud800b"


@pytest.mark.parametrize(("error", "words"), [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (OSError("disk on fire"), "disk on fire"),
])
def test_a_failed_save_says_where_and_why_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      error: OSError, words: str) -> None:
    store = opened(tmp_path)

    def fail(fd: int) -> None:
        raise error

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(CheckpointWriteError) as caught:
        store.save(cycle=1, status="running", messages=MESSAGES)
    assert str(caught.value) == f"cannot write checkpoint in {store.directory}: {words}"


def test_a_save_survives_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = opened(tmp_path)
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:100])))
    messages = [{"role": "user", "content": os.urandom(2000).hex()}]
    result = store.save(cycle=1, status="running", messages=messages)
    monkeypatch.undo()
    assert result.bytes > 1000
    assert store.load(result.checkpoint_id).messages == messages


def test_duration_is_reported_in_milliseconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = opened(tmp_path)
    clock = iter([100.0, 100.25])
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    result = store.save(cycle=1, status="running", messages=MESSAGES)
    monkeypatch.undo()
    assert result.duration_ms == 250.0


def test_an_empty_reason_still_reads_as_one() -> None:
    assert CheckpointCorrupt(NAME, " \n ").reason == "unknown error"


def test_a_write_error_prints_as_its_message() -> None:
    assert str(CheckpointWriteError(errno.ENOSPC, "cannot write: full")) == "cannot write: full"
    assert str(CheckpointWriteError("no errno")) == "no errno"


# ---- pruning --------------------------------------------------------------------------------

def filled(tmp_path: Path, cycles: int) -> tuple[CheckpointStore, list[str]]:
    writer = opened(tmp_path, keep=100)
    names = [writer.save(cycle=c, status="running", messages=MESSAGES).checkpoint_id for c in range(1, cycles + 1)]
    return CheckpointStore(tmp_path / "storage", AGENT, keep=7), names


def test_prune_keeps_the_newest_and_returns_what_it_deleted(tmp_path: Path) -> None:
    store, names = filled(tmp_path, 5)
    assert store.prune(5) == []  # exactly `keep`: nothing to do
    deleted = store.prune(2)
    assert [info.checkpoint_id for info in deleted] == names[:3]
    assert sorted(os.listdir(store.directory)) == names[3:]
    assert store.keep == 7  # the store's own setting is back
    with pytest.raises(RuntimeError, match=r"^CheckpointStore.save\(\) needs open_for_writing\(\) first$"):
        store.save(cycle=9, status="running", messages=[])  # and it is still not open for writing


def test_prune_never_deletes_the_newest_valid_checkpoint(tmp_path: Path) -> None:
    store, names = filled(tmp_path, 4)
    for name in names[2:]:
        (store.directory / name).write_bytes(b"garbage")
    deleted = store.prune(1)
    assert [info.checkpoint_id for info in deleted] == [names[0], names[2]]
    assert sorted(os.listdir(store.directory)) == [names[1], names[3]]


def test_prune_with_nothing_valid_keeps_only_the_newest(tmp_path: Path) -> None:
    store, names = filled(tmp_path, 3)
    for name in names:
        (store.directory / name).write_bytes(b"garbage")
    assert [info.checkpoint_id for info in store.prune(1)] == names[:2]


def test_prune_leaves_what_it_cannot_delete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, names = filled(tmp_path, 3)
    real_unlink = os.unlink

    def unlink(path: Any, **kwargs: Any) -> None:
        if str(path).endswith(names[0]):
            raise PermissionError(errno.EPERM, "Operation not permitted")
        real_unlink(path, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    assert [info.checkpoint_id for info in store.prune(1)] == [names[1]]
    monkeypatch.undo()
    assert sorted(os.listdir(store.directory)) == [names[0], names[2]]


@pytest.mark.parametrize("keep", [0, True, "1"])
def test_prune_refuses_a_bad_keep_and_a_store_open_for_writing(tmp_path: Path, keep: Any) -> None:
    store, _ = filled(tmp_path, 2)
    with pytest.raises(ValueError, match=r"^keep must be an integer >= 1"):
        store.prune(keep)
    with pytest.raises(RuntimeError, match=r"^CheckpointStore.prune\(\) is for a store that is not open for writing$"):
        opened(tmp_path).prune(1)
