"""Durable, self-verifying checkpoints of one agent's conversation.

A worker saves a checkpoint after each cycle; the supervisor's CLI and a resumed
worker read them back. Everything a resume depends on is in here, so the store
is strict in both directions:

* Saving is atomic and durable: a `.tmp-*` file in the agent's folder is written
  and fsynced, renamed to its final name, and then the folder is fsynced, so a
  crash leaves either the old set of checkpoints or the old set plus the new one,
  never a half-written file under a checkpoint name.
* Loading verifies everything (gzip framing and CRC, JSON, header fields, a
  sha256 over the content) and raises `CheckpointCorrupt` on any doubt, so a
  damaged file is skipped rather than resumed from.
* A file in storage may have been planted, so reading is bounded before it is
  trusted: a regular file (fstat on an O_NOFOLLOW descriptor) of at most
  MAX_FILE_BYTES, inflated by at most MAX_CONTENT_BYTES, the sha256 checked
  before any JSON but the short trailer is parsed, JSON nested at most
  MAX_NESTING deep, and every field checked against what `save` can write.
  `save` refuses content beyond those limits, so nothing it wrote is refused.
* Folders and files are reached through folder descriptors, never through a
  symlink, and a storage or agent folder that another user owns or can write
  is refused (see protocol.storage_files).

File layout (gzip of JSON Lines, UTF-8)::

    {"format": "agent-supervisor.checkpoint", "version": 1, "agent": ..., ...}   header
    {"role": "...", "content": "..."}                                           one line per message
    {"sha256": "<hex of all preceding line bytes>", "lines": <their count>}     trailer

Names are `checkpoint_{cycle:08d}_{seq:08d}.jsonl.gz`; the latest checkpoint is
the one with the highest (cycle, seq). Only the data is JSON: nothing is
unpickled or executed on load.
"""

from __future__ import annotations

import bisect
import builtins
import contextlib
import dataclasses
import errno
import gzip
import hashlib
import json
import math
import os
import re
import secrets
import stat
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Optional, Union

from protocol.messages import STATUSES
from protocol.storage_files import describe_kind, open_folder, open_subfolder

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "MAX_CONTENT_BYTES",
    "MAX_FILE_BYTES",
    "MAX_NESTING",
    "Checkpoint",
    "CheckpointCorrupt",
    "CheckpointInfo",
    "CheckpointStore",
    "CheckpointWriteError",
    "SaveResult",
    "checkpoint_name",
    "parse_checkpoint_name",
]

CHECKPOINT_FORMAT = "agent-supervisor.checkpoint"
CHECKPOINT_VERSION = 1

# Level 1: on a 200-message (~75 KB) conversation it compresses in ~0.6 ms against
# ~1.8 ms for level 6 and ~4.8 ms for level 9, for a file only ~15% larger than
# level 6. Saves sit on the Ctrl+C path, so speed wins over a few KB of disk.
COMPRESSLEVEL = 1

TMP_PREFIX = ".tmp-"

# The most content (JSON Lines before compression) a checkpoint may hold: `save`
# refuses more, so a reader refuses more too, and a gzip bomb costs at most this
# much memory to reject. 64 MiB is hundreds of times a long conversation.
MAX_CONTENT_BYTES = 64 * 1024 * 1024
# The largest file that content can make: `compress: false` stores it in gzip
# "stored" blocks of up to 64 KiB, 5 bytes of framing each, plus header and trailer.
MAX_FILE_BYTES = MAX_CONTENT_BYTES + MAX_CONTENT_BYTES // 1024 + 4096
# How deeply one line's JSON may nest (the header with its `extra`, or a
# message); `save` refuses deeper, so no reader recurses into a planted
# 100,000 levels (RecursionError) or copies a deep value recursively.
MAX_NESTING = 100
# The trailer as written is ~90 bytes; a bound this short cannot nest deeply,
# so it is safe to parse before the checksum is known to hold.
_MAX_TRAILER_BYTES = 256
_INFLATE_STEP = 1 << 20
_MAX_TIMESTAMP_CHARS = 64
_SHA256_RE = re.compile(r"[0-9a-f]{64}")

# ASCII digits only ([0-9], not \d, which also matches other scripts' digits);
# at least 8 of them so a cycle or seq past 99,999,999 still has a name.
_NAME_RE = re.compile(r"checkpoint_([0-9]{8,})_([0-9]{8,})\.jsonl\.gz")

_DIR_MODE = 0o700
_FILE_MODE = 0o600

_HEADER_FIELDS: dict[str, Union[type, tuple[type, ...]]] = {
    "format": str,
    "version": int,
    "agent": str,
    "checkpoint_id": str,
    "cycle": int,
    "status": str,
    "budget_spent_usd": (int, float),
    "created_at": str,
    "message_count": int,
    "extra": dict,
}


def checkpoint_name(cycle: int, seq: int) -> str:
    """The one canonical file name for (cycle, seq)."""
    return f"checkpoint_{cycle:08d}_{seq:08d}.jsonl.gz"


def parse_checkpoint_name(name: str) -> Optional[tuple[int, int]]:
    """(cycle, seq) if `name` is exactly a canonical checkpoint name, else None.

    Non-canonical spellings (e.g. an extra leading zero) are refused so that one
    (cycle, seq) can never be spelled by two different files.
    """
    match = _NAME_RE.fullmatch(name)
    if match is None:
        return None
    cycle, seq = int(match.group(1)), int(match.group(2))
    if checkpoint_name(cycle, seq) != name:
        return None
    return cycle, seq


def _one_line(text: str) -> str:
    """Reasons end up in one-line events and CLI errors."""
    return " ".join(str(text).split()) or "unknown error"


class CheckpointCorrupt(Exception):
    """A checkpoint that cannot be trusted: unreadable, damaged, foreign, or missing.

    A missing file is reported as this exception with reason "missing" (not as
    FileNotFoundError), so callers handle "this id cannot be used" in one place.
    """

    def __init__(self, checkpoint_id: str, reason: str) -> None:
        super().__init__(checkpoint_id, reason)
        self.checkpoint_id = checkpoint_id
        self.reason = _one_line(reason)

    def __str__(self) -> str:
        return f"checkpoint {self.checkpoint_id}: {self.reason}"


class CheckpointWriteError(OSError):
    """A save failed on disk (ENOSPC, EACCES, EIO...); earlier checkpoints are untouched.

    Built as OSError(errno, message) so `.errno` still tells ENOSPC from EACCES
    and the exception pickles; str() is just the one-line message.
    """

    def __str__(self) -> str:
        return self.strerror if isinstance(self.strerror, str) else super().__str__()


@dataclass(frozen=True)
class Checkpoint:
    """One verified checkpoint, as loaded from disk."""

    agent: str
    checkpoint_id: str
    cycle: int
    status: str
    messages: list[dict]
    budget_spent_usd: float
    created_at: str
    extra: dict

    def to_dict(self) -> dict:
        """Every field at the top level (a deep copy), for `checkpoints --show`."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint known by name only: listing never opens the files."""

    checkpoint_id: str
    cycle: int
    seq: int
    path: Path
    size_bytes: int


@dataclass(frozen=True)
class SaveResult:
    """What a save produced; `durable_at` is time.time() right after the folder fsync."""

    checkpoint_id: str
    cycle: int
    bytes: int
    duration_ms: float
    durable_at: float


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _valid_timestamp(value: str) -> bool:
    text = value[:-1] + "+00:00" if value.endswith("Z") else value  # 3.10's fromisoformat has no 'Z'
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return False
    return parsed.tzinfo is not None


def _check_message(index: int, message: Any) -> Optional[str]:
    """Why `message` is not a conversation message, or None if it is one."""
    if not isinstance(message, dict):
        return f"message {index} is not an object"
    if not isinstance(message.get("role"), str):
        return f"message {index} has no string 'role'"
    if not isinstance(message.get("content"), str):
        return f"message {index} has no string 'content'"
    return None


def _encode_lines(objects: list[Any]) -> bytes:
    """Compact UTF-8 JSON Lines; falls back to \\u escapes if text holds lone surrogates."""
    try:
        text = "\n".join([json.dumps(o, separators=(",", ":"), ensure_ascii=False, allow_nan=False) for o in objects])
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates cannot be UTF-8; as JSON escapes they round-trip exactly.
        text = "\n".join([json.dumps(o, separators=(",", ":"), ensure_ascii=True, allow_nan=False) for o in objects])
        return (text + "\n").encode("ascii")


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether JSON `value` has containers more than `limit` levels deep (the value itself is level 1).

    Iterative, so it is safe on any depth json.loads could hand it.
    """
    stack: builtins.list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _shown(number: int) -> str:
    """An integer read from a file, for a one-line reason: JSON allows thousands of digits."""
    return str(number) if abs(number) < 10**12 else "(a huge number)"


def _unlink_quietly(folder: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=folder)
    except OSError:
        pass


def _scan(folder: int) -> builtins.list[os.DirEntry]:
    """The entries of an open folder; their stat() is relative to `folder`, so keep it open meanwhile."""
    with os.scandir(folder) as entries:
        return list(entries)


def _open_checkpoint(folder: int, name: str) -> BinaryIO:
    """One checkpoint file for reading: never through a symlink, only a regular file of a possible size.

    O_NONBLOCK so that a FIFO under a checkpoint's name cannot hang the open.
    Anything else is CheckpointCorrupt, with reason "missing" if it is not there.
    """
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    except FileNotFoundError:
        raise CheckpointCorrupt(name, "missing") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CheckpointCorrupt(name, "is a symlink, which is never followed") from None
        raise CheckpointCorrupt(name, f"cannot read: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    problem = None
    if stat.S_ISDIR(info.st_mode):
        problem = "is a directory"
    elif not stat.S_ISREG(info.st_mode):
        problem = f"is not a regular file but {describe_kind(info.st_mode)}"
    elif info.st_size > MAX_FILE_BYTES:
        problem = f"is {info.st_size} bytes, more than a checkpoint can be ({MAX_FILE_BYTES})"
    if problem is not None:
        os.close(fd)
        raise CheckpointCorrupt(name, problem)
    return open(fd, "rb")


def _read_checkpoint(folder: int, name: str) -> bytes:
    with _open_checkpoint(folder, name) as handle:
        size = os.fstat(handle.fileno()).st_size  # at most MAX_FILE_BYTES, checked on opening
        try:
            raw = handle.read(size + 1)  # one byte more tells a file that grew after the fstat
        except OSError as exc:  # EIO: unreadable is as good as corrupt, and the next one may do
            raise CheckpointCorrupt(name, f"cannot read: {exc.strerror or exc}") from None
    if len(raw) != size:  # a checkpoint is complete before it has its name: this one is being written to
        raise CheckpointCorrupt(name, "changed while it was read")
    return raw


class CheckpointStore:
    """The checkpoints of one agent in `<storage>/<agent>/`.

    Readers (the CLI) use `list`, `load`, `load_latest` and `verify` directly.
    The single writer (the agent's worker) calls `open_for_writing` once; after
    that it keeps an in-memory index of names, so `save` and retention never
    list the folder again. Each call opens the storage and agent folders afresh
    (checked, never through a symlink), so a checkpoint lands where readers
    look or the save fails, and names every file relative to that descriptor.
    """

    def __init__(self, storage: Union[Path, str], agent: str, *, keep: int = 20, compress: bool = True) -> None:
        if not isinstance(agent, str) or not agent or agent in (".", "..") or any(c in agent for c in "/\\\0"):
            raise ValueError(f"invalid agent name for a checkpoint folder: {agent!r}")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer >= 1 (got {keep!r})")
        self.storage = Path(storage)
        self.agent = agent
        self.keep = keep
        self.compress = compress
        self.directory: Path = self.storage / agent
        self._index: Optional[builtins.list[tuple[int, int, str]]] = None  # sorted (cycle, seq, name); None until opened
        self._next_seq = 1

    # ---- names and folders -----------------------------------------------

    def _path_for(self, checkpoint_id: str) -> tuple[Path, int, int]:
        """Resolve a user-supplied id; only canonical names, so nothing can escape the folder."""
        parsed = parse_checkpoint_name(checkpoint_id) if isinstance(checkpoint_id, str) else None
        if parsed is None:
            raise ValueError(f"invalid checkpoint id {checkpoint_id!r} (expected checkpoint_CCCCCCCC_SSSSSSSS.jsonl.gz)")
        return self.directory / checkpoint_id, parsed[0], parsed[1]

    def _open_folder(self, *, create: bool) -> Optional[int]:
        """The agent folder, reached from the storage folder without following a symlink, both checked.

        None if either is missing (and not `create`). Raises UntrustedStorage
        for a folder another user owns or can write, or a symlinked agent folder.
        """
        storage = open_folder(self.storage, create=create)
        if storage is None:
            return None
        try:
            return open_subfolder(storage, self.agent, self.directory, create=create)
        finally:
            os.close(storage)

    @contextlib.contextmanager
    def _folder(self) -> Iterator[Optional[int]]:
        """The agent folder for one call, closed after it (None if there is none yet)."""
        fd = self._open_folder(create=False)
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    # ---- reading ---------------------------------------------------------

    def list(self) -> builtins.list[CheckpointInfo]:
        """Every checkpoint by name, oldest first; [] if the folder does not exist. Read-only.

        A symlink or special file under a checkpoint's name is listed (its own
        size), so that `verify` reports it; loading it never follows it.
        """
        infos: builtins.list[CheckpointInfo] = []
        with self._folder() as folder:
            if folder is None:
                return []
            for entry in _scan(folder):
                parsed = parse_checkpoint_name(entry.name)
                if parsed is None:
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    size = 0  # deleted (e.g. by retention) between listing and stat
                else:
                    if stat.S_ISDIR(info.st_mode):
                        continue
                    size = info.st_size
                infos.append(CheckpointInfo(entry.name, parsed[0], parsed[1], self.directory / entry.name, size))
        infos.sort(key=lambda info: (info.cycle, info.seq))
        return infos

    def load(self, checkpoint_id: str) -> Checkpoint:
        """Read and fully verify one checkpoint.

        Raises ValueError for an id that is not a checkpoint name, and
        CheckpointCorrupt (reason "missing" if the file does not exist) otherwise.
        """
        _, name_cycle, _ = self._path_for(checkpoint_id)
        with self._folder() as folder:
            if folder is None:
                raise CheckpointCorrupt(checkpoint_id, "missing")
            raw = _read_checkpoint(folder, checkpoint_id)
        return self._decode(checkpoint_id, name_cycle, raw)

    def open_raw(self, checkpoint_id: str) -> BinaryIO:
        """The file as stored, for a tool that looks at its gzip framing; opened as `load` opens it.

        Raises FileNotFoundError if it is gone, CheckpointCorrupt if it is a
        symlink, not a regular file, or larger than a checkpoint can be.
        """
        path, _, _ = self._path_for(checkpoint_id)
        with self._folder() as folder:
            try:
                if folder is None:
                    raise CheckpointCorrupt(checkpoint_id, "missing")
                return _open_checkpoint(folder, checkpoint_id)
            except CheckpointCorrupt as exc:
                if exc.reason == "missing":
                    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path)) from None
                raise

    def verify(self, checkpoint_id: str) -> None:
        """Raise CheckpointCorrupt (or ValueError for a bad id) unless the checkpoint is intact."""
        self.load(checkpoint_id)

    def load_latest(self, on_corrupt: Optional[Callable[[str, str], None]] = None) -> Optional[Checkpoint]:
        """The newest valid checkpoint, or None; each corrupt newer one goes to `on_corrupt(id, reason)`.

        Nothing is deleted or renamed: a corrupt file stays for a human to inspect.
        A file that vanished after listing is skipped silently, since it is gone,
        not corrupt.
        """
        for info in reversed(self.list()):
            try:
                return self.load(info.checkpoint_id)
            except CheckpointCorrupt as exc:
                if exc.reason == "missing":
                    continue
                if on_corrupt is not None:
                    on_corrupt(exc.checkpoint_id, exc.reason)
        return None

    def _decode(self, checkpoint_id: str, name_cycle: int, raw: bytes) -> Checkpoint:
        """Bounded inflate, then the checksum, then the JSON, then every field: the first doubt is corrupt."""

        def corrupt(reason: str) -> CheckpointCorrupt:
            return CheckpointCorrupt(checkpoint_id, reason)

        def parse(line: bytes, what: str) -> Any:
            try:
                value = json.loads(line)
            except RecursionError:
                raise corrupt(f"{what} nests deeper than {MAX_NESTING} levels") from None
            except ValueError:  # UnicodeDecodeError included
                raise corrupt(f"{what} is not JSON") from None
            # Depth needs at least that many brackets; counting them is far cheaper than walking.
            if line.count(b"[") + line.count(b"{") > MAX_NESTING and _nests_deeper(value, MAX_NESTING):
                raise corrupt(f"{what} nests deeper than {MAX_NESTING} levels")
            return value

        if not raw:
            raise corrupt("empty file")
        inflate = zlib.decompressobj(wbits=31)  # gzip framing, CRC-32 and size checked at its end
        parts: builtins.list[bytes] = []
        total, pending = 0, raw
        try:
            while not inflate.eof:  # in steps, so that a bomb is refused holding at most the limit
                piece = inflate.decompress(pending, _INFLATE_STEP)
                if not piece and len(inflate.unconsumed_tail) == len(pending):
                    break  # no progress: the input ended before the stream did
                pending = inflate.unconsumed_tail
                total += len(piece)
                if total > MAX_CONTENT_BYTES:
                    raise corrupt(f"inflates to more than a checkpoint can hold ({MAX_CONTENT_BYTES} bytes)")
                parts.append(piece)
        except zlib.error as exc:
            raise corrupt(f"bad gzip data: {exc}") from None
        data = b"".join(parts)
        del parts
        if not inflate.eof:
            raise corrupt("truncated gzip stream")
        if inflate.unused_data:
            raise corrupt("data after the gzip stream")
        if not data:
            raise corrupt("no content")
        if not data.endswith(b"\n"):
            raise corrupt("content does not end with a newline (truncated)")

        body_end = data.rfind(b"\n", 0, len(data) - 1) + 1  # start of the trailer line
        trailer_line = data[body_end:-1]
        if len(trailer_line) > _MAX_TRAILER_BYTES:
            raise corrupt("trailer missing or malformed")
        try:
            trailer = json.loads(trailer_line)
        except ValueError:
            raise corrupt("trailer missing or not JSON") from None
        if (
            not isinstance(trailer, dict)
            or not isinstance(trailer.get("sha256"), str)
            or not _SHA256_RE.fullmatch(trailer["sha256"])
            or type(trailer.get("lines")) is not int
        ):
            raise corrupt("trailer missing or malformed")
        line_count = data.count(b"\n", 0, body_end)
        if trailer["lines"] != line_count:
            raise corrupt(f"line count mismatch: trailer says {trailer['lines']}, found {line_count}")
        if hashlib.sha256(memoryview(data)[:body_end]).hexdigest() != trailer["sha256"]:
            raise corrupt("sha256 mismatch")
        if not line_count:
            raise corrupt("header missing")

        # The checksum holds: from here on the content is what some writer wrote,
        # though not necessarily ours, so each field is still checked.
        header_end = data.index(b"\n")
        header = parse(data[:header_end], "header")
        if not isinstance(header, dict):
            raise corrupt("header is not an object")
        for key, kind in _HEADER_FIELDS.items():
            if key not in header:
                raise corrupt(f"header field {key!r} missing")
            value = header[key]
            if isinstance(value, bool) or not isinstance(value, kind):
                raise corrupt(f"header field {key!r} has the wrong type")
        if header["format"] != CHECKPOINT_FORMAT:
            raise corrupt(f"not a checkpoint (format {header['format'][:40]!r})")
        if header["version"] != CHECKPOINT_VERSION:
            raise corrupt(f"unsupported version {_shown(header['version'])}")
        if header["agent"] != self.agent:
            raise corrupt(f"belongs to agent {header['agent'][:80]!r}, not {self.agent!r}")
        if header["checkpoint_id"] != checkpoint_id:
            raise corrupt(f"header names {header['checkpoint_id'][:80]!r}, not its file name")
        if header["cycle"] != name_cycle:
            raise corrupt("header cycle does not match the file name")
        if header["status"] not in STATUSES:
            raise corrupt(f"unknown status {header['status'][:40]!r}")
        try:
            budget = float(header["budget_spent_usd"])
        except OverflowError:  # an integer too large for a float
            budget = math.inf
        if not math.isfinite(budget) or budget < 0:
            raise corrupt("budget_spent_usd is not a finite amount >= 0")
        if len(header["created_at"]) > _MAX_TIMESTAMP_CHARS or not _valid_timestamp(header["created_at"]):
            raise corrupt("created_at is not an ISO 8601 UTC timestamp")
        if header["message_count"] != line_count - 1:
            raise corrupt(f"message count mismatch: header says {_shown(header['message_count'])}, found {line_count - 1}")

        messages: builtins.list[dict] = []
        start = header_end + 1
        for index in range(line_count - 1):
            end = data.index(b"\n", start)
            message = parse(data[start:end], f"message {index}")
            start = end + 1
            problem = _check_message(index, message)
            if problem is not None:
                raise corrupt(problem)
            messages.append(message)

        return Checkpoint(
            agent=header["agent"],
            checkpoint_id=checkpoint_id,
            cycle=header["cycle"],
            status=header["status"],
            messages=messages,
            budget_spent_usd=budget,
            created_at=header["created_at"],
            extra=header["extra"],
        )

    # ---- writing ---------------------------------------------------------

    def open_for_writing(self) -> builtins.list[str]:
        """Create the folders (0700), delete stale temp files, index the names once.

        Returns the names of the removed `.tmp-*` files: each is a save that a
        crash interrupted before its rename, so it never was a checkpoint.
        Raises UntrustedStorage (an OSError) for a folder another user owns or
        can write, or a symlinked agent folder.
        """
        folder = self._open_folder(create=True)
        assert folder is not None  # created, or an error was raised
        try:
            removed, index = self._clean_and_index(folder)
        finally:
            os.close(folder)
        self._index = index
        # From names only, corrupt files included: a new save must never reuse a name.
        self._next_seq = max((seq for _, seq, _ in index), default=0) + 1
        return sorted(removed)

    @staticmethod
    def _clean_and_index(folder: int) -> tuple[builtins.list[str], builtins.list[tuple[int, int, str]]]:
        removed: builtins.list[str] = []
        index: builtins.list[tuple[int, int, str]] = []
        for entry in _scan(folder):
            if entry.name.startswith(TMP_PREFIX):
                if entry.is_dir(follow_symlinks=False):
                    continue  # not ours to delete: we only ever create files
                try:
                    os.unlink(entry.name, dir_fd=folder)
                except FileNotFoundError:
                    continue
                removed.append(entry.name)
                continue
            parsed = parse_checkpoint_name(entry.name)
            if parsed is not None and not entry.is_dir(follow_symlinks=False):
                index.append((parsed[0], parsed[1], entry.name))
        index.sort()
        return removed, index

    def save(
        self,
        *,
        cycle: int,
        status: str,
        messages: builtins.list[dict],
        budget_spent_usd: float = 0.0,
        extra: Optional[dict] = None,
    ) -> SaveResult:
        """Write a new checkpoint atomically and durably, then apply retention.

        Bad arguments raise ValueError/TypeError before anything touches the disk;
        so does content a reader would refuse (nested deeper than MAX_NESTING,
        larger than MAX_CONTENT_BYTES). A disk failure raises CheckpointWriteError
        after removing the temporary file; the checkpoints written before stay
        exactly as they were.
        """
        if self._index is None:
            raise RuntimeError("CheckpointStore.save() needs open_for_writing() first")
        if isinstance(cycle, bool) or not isinstance(cycle, int) or cycle < 0:
            raise ValueError(f"cycle must be an integer >= 0 (got {cycle!r})")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)} (got {status!r})")
        if isinstance(budget_spent_usd, bool) or not isinstance(budget_spent_usd, (int, float)):
            raise TypeError(f"budget_spent_usd must be a number (got {budget_spent_usd!r})")
        try:
            budget = float(budget_spent_usd)
        except OverflowError:
            budget = math.inf
        if not math.isfinite(budget) or budget < 0:
            raise ValueError(f"budget_spent_usd must be a finite amount >= 0 (got {budget_spent_usd!r})")
        if extra is None:
            extra = {}
        if not isinstance(extra, dict):
            raise TypeError(f"extra must be a dict (got {type(extra).__name__})")
        if not isinstance(messages, list):
            raise TypeError(f"messages must be a list (got {type(messages).__name__})")
        for index, message in enumerate(messages):
            problem = _check_message(index, message)
            if problem is not None:
                raise ValueError(problem)
            if _nests_deeper(message, MAX_NESTING):
                raise ValueError(f"message {index} nests deeper than {MAX_NESTING} levels")
        if _nests_deeper(extra, MAX_NESTING - 1):  # it sits one level down, inside the header
            raise ValueError(f"extra nests deeper than {MAX_NESTING - 1} levels")

        started = time.perf_counter()
        seq = self._next_seq
        self._next_seq += 1  # consumed even if the write fails: a name is never reused
        name = checkpoint_name(cycle, seq)
        header = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "agent": self.agent,
            "checkpoint_id": name,
            "cycle": cycle,
            "status": status,
            "budget_spent_usd": budget,
            "created_at": _utc_now(),
            "message_count": len(messages),
            "extra": extra,
        }
        body = _encode_lines([header, *messages])  # not JSON-serialisable -> TypeError, nothing written
        trailer = _encode_lines([{"sha256": hashlib.sha256(body).hexdigest(), "lines": body.count(b"\n")}])
        if len(body) + len(trailer) > MAX_CONTENT_BYTES:
            raise ValueError(
                f"checkpoint content of {len(body) + len(trailer)} bytes is more than a checkpoint may hold ({MAX_CONTENT_BYTES})"
            )
        # mtime=0 and no file name in the gzip header: same content, same bytes.
        blob = gzip.compress(body + trailer, compresslevel=COMPRESSLEVEL if self.compress else 0, mtime=0)

        temp = f"{TMP_PREFIX}{name}.{os.getpid()}.{secrets.token_hex(4)}"
        folder: Optional[int] = None
        renamed = False
        try:
            folder = self._open_folder(create=False)
            if folder is None:
                raise FileNotFoundError(errno.ENOENT, "the agent folder is gone")
            fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, _FILE_MODE, dir_fd=folder)
            try:
                view = memoryview(blob)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)  # raw fd, no user-space buffer to flush first
            finally:
                os.close(fd)
            os.rename(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
            renamed = True
            os.fsync(folder)  # the rename itself survives a power cut
        except BaseException as exc:
            if folder is not None:
                _unlink_quietly(folder, temp)
                if renamed:
                    # The rename may not be durable; roll it back so "failed" means "nothing new".
                    _unlink_quietly(folder, name)
                os.close(folder)
            if isinstance(exc, OSError):
                reason = exc.strerror or str(exc)
                raise CheckpointWriteError(exc.errno, _one_line(f"cannot write checkpoint in {self.directory}: {reason}")) from exc
            raise
        durable_at = time.time()
        duration_ms = (time.perf_counter() - started) * 1000.0

        bisect.insort(self._index, (cycle, seq, name))
        try:
            self._apply_retention(folder, keep_name=name)
        finally:
            os.close(folder)
        return SaveResult(checkpoint_id=name, cycle=cycle, bytes=len(blob), duration_ms=duration_ms, durable_at=durable_at)

    def prune(self, keep: int) -> builtins.list[CheckpointInfo]:
        """Apply retention now with `keep` (an operator's `checkpoints --prune`); returns what was deleted.

        The same rule as after a save: all but the newest `keep` by (cycle,
        seq) go, except the newest valid checkpoint, which is never deleted
        even when `keep` newer ones are corrupt. Only for a store nobody is
        writing to (the caller holds the run lock); a file that cannot be
        deleted stays and is not in the result.
        """
        if self._index is not None:
            raise RuntimeError("CheckpointStore.prune() is for a store that is not open for writing")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer >= 1 (got {keep!r})")
        infos = self.list()
        if len(infos) <= keep:
            return []
        latest = self.load_latest()
        folder = self._open_folder(create=False)
        if folder is None:  # removed since it was listed: nothing left to prune
            return []
        writer_keep = self.keep
        self._index, self.keep = [(info.cycle, info.seq, info.checkpoint_id) for info in infos], keep
        try:
            self._apply_retention(folder, keep_name=latest.checkpoint_id if latest is not None else "")
            remaining = {name for _, _, name in self._index}
        finally:
            self._index, self.keep = None, writer_keep
            os.close(folder)
        return [info for info in infos if info.checkpoint_id not in remaining]

    def _apply_retention(self, folder: int, keep_name: str) -> None:
        """Delete the oldest indexed checkpoints beyond `keep`, from the index, without listing.

        The checkpoint just saved is never deleted, even when it sorts below
        `keep` newer ones (a resume that fell back past corrupt files); then one
        extra file is kept until newer saves push the old ones out.
        """
        assert self._index is not None
        excess = len(self._index) - self.keep
        if excess <= 0:
            return
        survivors = [item for item in self._index[:excess] if item[2] == keep_name]
        for item in self._index[:excess]:
            if item[2] == keep_name:
                continue
            try:
                os.unlink(item[2], dir_fd=folder)
            except FileNotFoundError:
                pass
            except OSError:
                survivors.append(item)  # the save itself succeeded; retry on the next one
        survivors.sort()
        self._index = survivors + self._index[excess:]
