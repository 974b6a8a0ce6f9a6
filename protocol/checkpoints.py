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
import dataclasses
import gzip
import hashlib
import json
import math
import os
import re
import secrets
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Union

from protocol.messages import STATUSES

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
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


def _fsync_directory(directory: Path) -> None:
    """Make a rename or create in `directory` itself survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class CheckpointStore:
    """The checkpoints of one agent in `<storage>/<agent>/`.

    Readers (the CLI) use `list`, `load`, `load_latest` and `verify` directly.
    The single writer (the agent's worker) calls `open_for_writing` once; after
    that it keeps an in-memory index of names, so `save` and retention never
    list the folder again.
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

    # ---- names -----------------------------------------------------------

    def _path_for(self, checkpoint_id: str) -> tuple[Path, int, int]:
        """Resolve a user-supplied id; only canonical names, so nothing can escape the folder."""
        parsed = parse_checkpoint_name(checkpoint_id) if isinstance(checkpoint_id, str) else None
        if parsed is None:
            raise ValueError(f"invalid checkpoint id {checkpoint_id!r} (expected checkpoint_CCCCCCCC_SSSSSSSS.jsonl.gz)")
        return self.directory / checkpoint_id, parsed[0], parsed[1]

    def _scan(self) -> builtins.list[os.DirEntry]:
        try:
            with os.scandir(self.directory) as entries:
                return list(entries)
        except FileNotFoundError:
            return []

    # ---- reading ---------------------------------------------------------

    def list(self) -> builtins.list[CheckpointInfo]:
        """Every checkpoint by name, oldest first; [] if the folder does not exist. Read-only."""
        infos: builtins.list[CheckpointInfo] = []
        for entry in self._scan():
            parsed = parse_checkpoint_name(entry.name)
            if parsed is None:
                continue
            try:
                if entry.is_dir():
                    continue
                size = entry.stat().st_size
            except FileNotFoundError:
                size = 0  # deleted (e.g. by retention) between listing and stat
            infos.append(CheckpointInfo(entry.name, parsed[0], parsed[1], Path(entry.path), size))
        infos.sort(key=lambda info: (info.cycle, info.seq))
        return infos

    def load(self, checkpoint_id: str) -> Checkpoint:
        """Read and fully verify one checkpoint.

        Raises ValueError for an id that is not a checkpoint name, and
        CheckpointCorrupt (reason "missing" if the file does not exist) otherwise.
        """
        path, name_cycle, _ = self._path_for(checkpoint_id)
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            raise CheckpointCorrupt(checkpoint_id, "missing") from None
        except IsADirectoryError:
            raise CheckpointCorrupt(checkpoint_id, "is a directory") from None
        except OSError as exc:
            raise CheckpointCorrupt(checkpoint_id, f"cannot read: {exc.strerror or exc}") from None
        return self._decode(checkpoint_id, name_cycle, raw)

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
        def corrupt(reason: str) -> CheckpointCorrupt:
            return CheckpointCorrupt(checkpoint_id, reason)

        if not raw:
            raise corrupt("empty file")
        try:
            data = gzip.decompress(raw)
        except EOFError:
            raise corrupt("truncated gzip stream") from None
        except (gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise corrupt(f"bad gzip data: {exc}") from None
        if not data:
            raise corrupt("no content")
        if not data.endswith(b"\n"):
            raise corrupt("content does not end with a newline (truncated)")

        body_end = data.rfind(b"\n", 0, len(data) - 1) + 1  # start of the trailer line
        body, trailer_line = data[:body_end], data[body_end:-1]
        lines = body.split(b"\n")[:-1] if body else []
        try:
            trailer = json.loads(trailer_line)
        except ValueError:
            raise corrupt("trailer missing or not JSON") from None
        if (
            not isinstance(trailer, dict)
            or not isinstance(trailer.get("sha256"), str)
            or type(trailer.get("lines")) is not int
        ):
            raise corrupt("trailer missing or malformed")
        if trailer["lines"] != len(lines):
            raise corrupt(f"line count mismatch: trailer says {trailer['lines']}, found {len(lines)}")
        if hashlib.sha256(body).hexdigest() != trailer["sha256"]:
            raise corrupt("sha256 mismatch")
        if not lines:
            raise corrupt("header missing")

        try:
            header = json.loads(lines[0])
        except ValueError:
            raise corrupt("header is not JSON") from None
        if not isinstance(header, dict):
            raise corrupt("header is not an object")
        for key, kind in _HEADER_FIELDS.items():
            if key not in header:
                raise corrupt(f"header field {key!r} missing")
            value = header[key]
            if isinstance(value, bool) or not isinstance(value, kind):
                raise corrupt(f"header field {key!r} has the wrong type")
        if header["format"] != CHECKPOINT_FORMAT:
            raise corrupt(f"not a checkpoint (format {header['format']!r})")
        if header["version"] != CHECKPOINT_VERSION:
            raise corrupt(f"unsupported version {header['version']}")
        if header["agent"] != self.agent:
            raise corrupt(f"belongs to agent {header['agent']!r}, not {self.agent!r}")
        if header["checkpoint_id"] != checkpoint_id:
            raise corrupt(f"header names {header['checkpoint_id']!r}, not its file name")
        if header["cycle"] != name_cycle:
            raise corrupt(f"header cycle {header['cycle']} does not match the file name")
        if header["status"] not in STATUSES:
            raise corrupt(f"unknown status {header['status']!r}")
        budget = float(header["budget_spent_usd"])
        if not math.isfinite(budget) or budget < 0:
            raise corrupt("budget_spent_usd is not a finite amount >= 0")
        if not _valid_timestamp(header["created_at"]):
            raise corrupt("created_at is not an ISO 8601 UTC timestamp")
        if header["message_count"] != len(lines) - 1:
            raise corrupt(f"message count mismatch: header says {header['message_count']}, found {len(lines) - 1}")

        messages: builtins.list[dict] = []
        for index, line in enumerate(lines[1:]):
            try:
                message = json.loads(line)
            except ValueError:
                raise corrupt(f"message {index} is not JSON") from None
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
        """Create the folder (0700), delete stale temp files, index the names once.

        Returns the names of the removed `.tmp-*` files: each is a save that a
        crash interrupted before its rename, so it never was a checkpoint.
        """
        missing: builtins.list[Path] = []
        for folder in (self.directory, *self.directory.parents):
            if folder.exists():
                break
            missing.append(folder)
        for folder in reversed(missing):
            try:
                folder.mkdir(mode=_DIR_MODE)
            except FileExistsError:
                pass
        if not self.directory.is_dir():
            raise NotADirectoryError(f"checkpoint folder {self.directory} is not a directory")

        removed: builtins.list[str] = []
        index: builtins.list[tuple[int, int, str]] = []
        for entry in self._scan():
            if entry.name.startswith(TMP_PREFIX):
                if entry.is_dir(follow_symlinks=False):
                    continue  # not ours to delete: we only ever create files
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                removed.append(entry.name)
                continue
            parsed = parse_checkpoint_name(entry.name)
            if parsed is not None and not entry.is_dir():
                index.append((parsed[0], parsed[1], entry.name))
        index.sort()
        self._index = index
        # From names only, corrupt files included: a new save must never reuse a name.
        self._next_seq = max((seq for _, seq, _ in index), default=0) + 1
        return sorted(removed)

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

        Bad arguments raise ValueError/TypeError before anything touches the disk.
        A disk failure raises CheckpointWriteError after removing the temporary
        file; the checkpoints written before stay exactly as they were.
        """
        if self._index is None:
            raise RuntimeError("CheckpointStore.save() needs open_for_writing() first")
        if isinstance(cycle, bool) or not isinstance(cycle, int) or cycle < 0:
            raise ValueError(f"cycle must be an integer >= 0 (got {cycle!r})")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)} (got {status!r})")
        if isinstance(budget_spent_usd, bool) or not isinstance(budget_spent_usd, (int, float)):
            raise TypeError(f"budget_spent_usd must be a number (got {budget_spent_usd!r})")
        budget = float(budget_spent_usd)
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
        # mtime=0 and no file name in the gzip header: same content, same bytes.
        blob = gzip.compress(body + trailer, compresslevel=COMPRESSLEVEL if self.compress else 0, mtime=0)

        final = self.directory / name
        temp = self.directory / f"{TMP_PREFIX}{name}.{os.getpid()}.{secrets.token_hex(4)}"
        renamed = False
        try:
            fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, _FILE_MODE)
            try:
                view = memoryview(blob)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)  # raw fd, no user-space buffer to flush first
            finally:
                os.close(fd)
            os.rename(temp, final)
            renamed = True
            _fsync_directory(self.directory)
        except BaseException as exc:
            _unlink_quietly(temp)
            if renamed:
                # The rename may not be durable; roll it back so "failed" means "nothing new".
                _unlink_quietly(final)
            if isinstance(exc, OSError):
                reason = exc.strerror or str(exc)
                raise CheckpointWriteError(exc.errno, _one_line(f"cannot write checkpoint in {self.directory}: {reason}")) from exc
            raise
        durable_at = time.time()
        duration_ms = (time.perf_counter() - started) * 1000.0

        bisect.insort(self._index, (cycle, seq, name))
        self._apply_retention(keep_name=name)
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
        writer_keep = self.keep
        self._index, self.keep = [(info.cycle, info.seq, info.checkpoint_id) for info in infos], keep
        try:
            self._apply_retention(keep_name=latest.checkpoint_id if latest is not None else "")
            remaining = {name for _, _, name in self._index}
        finally:
            self._index, self.keep = None, writer_keep
        return [info for info in infos if info.checkpoint_id not in remaining]

    def _apply_retention(self, keep_name: str) -> None:
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
                os.unlink(self.directory / item[2])
            except FileNotFoundError:
                pass
            except OSError:
                survivors.append(item)  # the save itself succeeded; retry on the next one
        survivors.sort()
        self._index = survivors + self._index[excess:]
