"""The storage folder: its layout, the one-run lock, the archive, and what can resume.

Shared by the run (which owns the folder while it is live) and the operator's
tools (which read it, and take the lock only to delete). Nothing here starts a
process or prints.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

from protocol.checkpoints import CheckpointStore
from protocol.control import SOCKET_NAME
from supervisor.config import TeamConfig
from supervisor.errors import SupervisorError

EVENTS_FILE = "events.jsonl"
METRICS_FILE = "interrupt_metrics.jsonl"
REPORT_FILE = "report.html"
LOCK_FILE = ".supervisor.lock"
ARCHIVE_DIR = "archive"
CONTROL_SOCKET = SOCKET_NAME  # the live run's control endpoint; only while a run holds the lock


def prepare_storage(storage: Path) -> None:
    """Create the storage folder (0700, parents too) or explain why not (exit 3)."""
    try:
        storage.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not os.access(storage, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "not writable")
    except OSError as exc:
        raise SupervisorError(f"storage {storage}: cannot use it: {exc.strerror or exc}", 3) from exc
    if not storage.is_dir():
        raise SupervisorError(f"storage {storage}: exists and is not a folder", 3)


class StorageLock:
    """One run per storage folder: a second one would interleave checkpoints."""

    def __init__(self, storage: Path) -> None:
        self.path = storage / LOCK_FILE
        self.fd: Optional[int] = None

    def acquire(self, team: str) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise SupervisorError(f"storage {self.path.parent}: cannot take the run lock: {exc.strerror or exc}", 3) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise SupervisorError(
                f"storage {self.path.parent}: team {team!r} is already running there (pid {holder}); stop it first", 2
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _state_entries(storage: Path) -> Iterator[Path]:
    for entry in sorted(storage.iterdir()):
        if entry.name not in (ARCHIVE_DIR, LOCK_FILE):
            yield entry


def archive_state(storage: Path) -> Optional[Path]:
    """`--fresh`: move the old state under archive/<UTC stamp>/, never delete it."""
    entries = list(_state_entries(storage))
    if not entries:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = storage / ARCHIVE_DIR / stamp
    target.mkdir(mode=0o700, parents=True)
    os.chmod(storage / ARCHIVE_DIR, 0o700)
    for entry in entries:
        shutil.move(str(entry), str(target / entry.name))
    return target


def resumable_agents(config: TeamConfig) -> dict[str, int]:
    """Agents with checkpoints on disk and the cycle of their latest, by name only."""
    found: dict[str, int] = {}
    for agent in config.all_agents():
        store = CheckpointStore(config.storage, agent.name)
        try:
            infos = store.list()
        except OSError as exc:
            raise SupervisorError(f"storage {store.directory}: cannot use it: {exc.strerror or exc}", 3) from exc
        if infos:
            found[agent.name] = max(info.cycle for info in infos)
    return found



def control_socket(storage: Path) -> Path:
    """Where the live run listens for an operator's commands."""
    return storage / CONTROL_SOCKET


def run_is_live(storage: Path) -> bool:
    """Whether a supervisor holds the storage lock now (a shared probe, nothing written)."""
    try:
        fd = os.open(storage / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def exclusive_run_lock(config: TeamConfig) -> Iterator[None]:
    """Hold the storage's run lock, as `run` does, or refuse (exit 2) because a run is live.

    Holding it means no run can start while checkpoints are being deleted. The
    lock file is the run's own; it is created if missing, never written.
    """
    try:
        fd = os.open(config.storage / LOCK_FILE, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise SupervisorError(f"storage {config.storage}: cannot take the run lock: {exc.strerror or exc}", 3) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise SupervisorError(
                f"storage {config.storage}: team '{config.team}' is running there (pid {holder}); "
                "stop it before pruning checkpoints",
                2,
            ) from None
        yield
    finally:
        os.close(fd)
