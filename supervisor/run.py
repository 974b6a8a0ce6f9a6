"""The `run` command: prepare storage, take the team's lock, run the arbiter.

Everything that can go wrong before a worker starts is found here and turned
into a one-line `SupervisorError` with the contract's exit code.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from supervisor.config import TeamConfig
from supervisor.errors import SupervisorError

if TYPE_CHECKING:
    from supervisor.arbiter import Arbiter
    from supervisor.control import ControlQueue

LOCK_FILE = ".supervisor.lock"
ARCHIVE_DIR = "archive"


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
    from workers.checkpoints import CheckpointStore

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


def run_team(
    config: TeamConfig,
    *,
    fresh: bool = False,
    console: Optional[Any] = None,
    entry: Optional[str] = None,
    own_process: bool = False,
    control: Optional["ControlQueue"] = None,
    handle_signals: bool = True,
    sinks: Optional[list[Callable[[dict[str, Any]], None]]] = None,
    on_arbiter: Optional[Callable[["Arbiter"], None]] = None,
) -> int:
    """Run the team to completion or interruption; returns the exit code.

    `control`, `handle_signals`, `sinks` and `on_arbiter` are for programs
    that embed a run (supervisor.api): requests from other threads, no signal
    handlers outside the main thread, each event as it is written, and the
    arbiter for status snapshots.
    """
    from supervisor.model_service import ModelService, preflight_ollama
    from supervisor.process import WORKER_ENTRY, worker_context

    prepare_storage(config.storage)
    lock = StorageLock(config.storage)
    lock.acquire(config.team)
    try:
        worker_context()  # started already by the CLI; an embedding program starts it here
        from supervisor.arbiter import Arbiter
        from supervisor.console import Console
        from supervisor.events import EventLog

        console = console or Console()
        if fresh:
            moved = archive_state(config.storage)
            if moved is not None:
                console.line(f"🗄️  Previous state archived to {moved}")
        resumed = resumable_agents(config)
        preflight_ollama(config)  # before any worker: an unreachable server or a missing model is exit 3
        service = ModelService(config) if ModelService.wanted(config) else None
        console.banner(config.team, str(config.storage), _describe_llm(config), len(config.all_agents()), resumed)
        try:
            log = EventLog(config.storage, sinks=[console, *(sinks or [])])
        except OSError as exc:
            raise SupervisorError(f"storage {config.storage}: cannot open the event log: {exc.strerror or exc}", 3) from exc
        try:
            if service is not None:
                console.line(f"🧠 Starting the embedded model server ({service.model})...")
                service.start_and_wait()
            arbiter = Arbiter(config, log, console, resumed, entry=entry or WORKER_ENTRY, own_process=own_process,
                              service=service, control=control, handle_signals=handle_signals)
            if on_arbiter is not None:
                on_arbiter(arbiter)
            return arbiter.run()
        finally:
            if service is not None:
                service.stop()
            log.close()
    finally:
        lock.release()


def _describe_llm(config: TeamConfig) -> str:
    llm = config.llm
    if llm.provider == "scripted":
        return f"scripted (deterministic, {llm.latency:g}s per reply)"
    if llm.provider == "embedded":
        return f"embedded ({llm.model_name}, a bundled real model served on 127.0.0.1)"
    return f"ollama ({llm.model_name} at {llm.host})"
