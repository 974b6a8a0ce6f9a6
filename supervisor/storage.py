"""The storage folder: its layout, the one-run lock, the archive, and what can resume.

Shared by the run (which owns the folder while it is live) and the operator's
tools (which read it, and take the lock only to delete). Nothing here starts a
process or prints.

Storage is not trusted: a storage or agent folder that another user owns or
can write is refused (exit 2, one line saying how to fix it), and every file
in it is opened relative to a folder descriptor without following a symlink
(protocol.storage_files), so a planted symlink cannot redirect a write, a
truncation or a read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Optional

from protocol.checkpoints import CheckpointStore
from protocol.storage_files import UntrustedStorage, open_file, open_folder, open_subfolder, refuse_symlink
from protocol.control import SOCKET_NAME
from supervisor.config import TeamConfig
from supervisor.errors import SupervisorError

EVENTS_FILE = "events.jsonl"
METRICS_FILE = "interrupt_metrics.jsonl"
REPORT_FILE = "report.html"
LOCK_FILE = ".supervisor.lock"
ARCHIVE_DIR = "archive"
CONTROL_SOCKET = SOCKET_NAME  # the live run's control endpoint; only while a run holds the lock

# The files a run writes directly in the storage folder, checked before it starts.
RUN_FILES = (LOCK_FILE, EVENTS_FILE, METRICS_FILE)


def refused(exc: UntrustedStorage) -> SupervisorError:
    """A folder or file another user could have planted or can change: the user's to fix (exit 2)."""
    return SupervisorError(str(exc), 2)


@contextlib.contextmanager
def _storage_errors(storage: Path, doing: str) -> Iterator[None]:
    """Untrusted storage is exit 2; any other failure of the disk is exit 3 ("cannot <doing>")."""
    try:
        yield
    except UntrustedStorage as exc:
        raise refused(exc) from None
    except OSError as exc:
        raise SupervisorError(f"storage {storage}: cannot {doing}: {exc.strerror or exc}", 3) from exc


def _check_contents(folder: int, storage: Path, agents: Iterable[str]) -> None:
    """Refuse symlinks under the run's own names, and agent or archive folders that are not safe."""
    for name in RUN_FILES:
        refuse_symlink(folder, name, storage / name)
    for name, what in [(ARCHIVE_DIR, "archive folder"), *((agent, "agent folder") for agent in agents)]:
        try:
            fd = open_subfolder(folder, name, storage / name, what)
        except NotADirectoryError:
            continue  # a file in the way is the opener's to report; only trust is checked here
        if fd is not None:
            os.close(fd)


def prepare_storage(storage: Path, agents: Iterable[str] = ()) -> None:
    """Create the storage folder (0700, parents too), or refuse it (exit 2) or explain why not (exit 3).

    Refused: a folder another user owns or can write; a symlink where the run
    writes its lock or events; an agent folder that is a symlink, another
    user's, or writable by others. All before any worker starts.
    """
    with _storage_errors(storage, "use it"):
        folder = open_folder(storage, create=True)
        assert folder is not None
        try:
            if not os.access(storage, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "not writable")
            _check_contents(folder, storage, agents)
        finally:
            os.close(folder)


def check_storage(storage: Path, agents: Iterable[str] = ()) -> None:
    """For the operator's tools: refuse (exit 2) storage another user could have changed.

    A missing or unreadable folder is not refused here: each tool says what it
    finds (no events yet, cannot read it).
    """
    try:
        folder = open_folder(storage)
        if folder is None:
            return
        try:
            _check_contents(folder, storage, agents)
        finally:
            os.close(folder)
    except UntrustedStorage as exc:
        raise refused(exc) from None
    except OSError:
        return


def open_storage_file(path: Path) -> BinaryIO:
    """A file directly in the storage folder `path.parent`, for reading.

    Never through a symlink (UntrustedStorage), never a FIFO or device that
    would block or misbehave (OSError); FileNotFoundError if it is not there.
    """
    folder = open_folder(path.parent)
    if folder is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    try:
        fd = open_file(folder, path.name, path, os.O_RDONLY)
    finally:
        os.close(folder)
    return open(fd, "rb")


def rotated_numbers(folder: int, name: str) -> list[int]:
    """The N of every `NAME.N` (a rotated event file) in an open folder, in no particular order."""
    pattern = re.compile(re.escape(name) + r"\.([1-9][0-9]{0,5})\Z")
    return [int(found.group(1)) for entry in os.listdir(folder) if (found := pattern.match(entry))]


def _open_lock(storage: Path, flags: int) -> int:
    """The lock file, by descriptor: never a symlink, only a regular file with no other name.

    A hard link elsewhere would make the run's truncation reach that file, so
    one is refused like a symlink.
    """
    folder = open_folder(storage)
    if folder is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(storage))
    try:
        fd = open_file(folder, LOCK_FILE, storage / LOCK_FILE, flags)
    finally:
        os.close(folder)
    if os.fstat(fd).st_nlink > 1:
        os.close(fd)
        path = storage / LOCK_FILE
        raise UntrustedStorage(
            errno.EPERM,
            f"{path} has other names (hard links), so writing it would change them too; fix: rm {shlex.quote(str(path))}",
        )
    return fd


class StorageLock:
    """One run per storage folder: a second one would interleave checkpoints."""

    def __init__(self, storage: Path) -> None:
        self.storage = storage
        self.path = storage / LOCK_FILE
        self.fd: Optional[int] = None

    def acquire(self, team: str) -> None:
        with _storage_errors(self.storage, "take the run lock"):
            fd = _open_lock(self.storage, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise SupervisorError(
                f"storage {self.storage}: team {team!r} is already running there (pid {holder}); stop it first", 2
            ) from None
        try:  # the holder's pid, for the message above; on a full disk the lock holds without it
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def archive_state(storage: Path) -> Optional[Path]:
    """`--fresh`: move the old state under archive/<UTC stamp>/, never delete it.

    Each entry is renamed, by name relative to the folders' descriptors, so a
    symlink is moved as the link it is and an archive folder swapped for a
    symlink is refused rather than followed.
    """
    with _storage_errors(storage, "archive the old state"):
        folder = open_folder(storage)
        if folder is None:
            return None
        try:
            entries = sorted(entry.name for entry in os.scandir(folder) if entry.name not in (ARCHIVE_DIR, LOCK_FILE))
            if not entries:
                return None
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
            archive = open_subfolder(folder, ARCHIVE_DIR, storage / ARCHIVE_DIR, "archive folder", create=True)
            assert archive is not None
            try:
                target = open_subfolder(archive, stamp, storage / ARCHIVE_DIR / stamp, "archive folder", create=True)
                assert target is not None
                try:
                    for name in entries:
                        os.rename(name, name, src_dir_fd=folder, dst_dir_fd=target)
                    os.fsync(target)
                    os.fsync(folder)
                finally:
                    os.close(target)
            finally:
                os.close(archive)
        finally:
            os.close(folder)
    return storage / ARCHIVE_DIR / stamp


def resumable_agents(config: TeamConfig) -> dict[str, int]:
    """Agents with checkpoints on disk and the cycle of their latest, by name only."""
    found: dict[str, int] = {}
    for agent in config.all_agents():
        store = CheckpointStore(config.storage, agent.name)
        with _storage_errors(store.directory, "use it"):
            infos = store.list()
        if infos:
            found[agent.name] = max(info.cycle for info in infos)
    return found


def control_socket(storage: Path) -> Path:
    """Where the live run listens for an operator's commands."""
    return storage / CONTROL_SOCKET


def run_is_live(storage: Path) -> bool:
    """Whether a supervisor holds the storage lock now (a shared probe, nothing written)."""
    try:
        fd = _open_lock(storage, os.O_RDONLY)
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
    with _storage_errors(config.storage, "take the run lock"):
        fd = _open_lock(config.storage, os.O_RDONLY | os.O_CREAT)
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
