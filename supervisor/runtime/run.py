"""The `run` command: prepare storage, take the team's lock, run the arbiter.

Everything that can go wrong before a worker starts is found here and turned
into a one-line `SupervisorError` with the contract's exit code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from supervisor.config import TeamConfig
from supervisor.errors import SupervisorError
from protocol.storage_files import UntrustedStorage
from supervisor.storage import StorageLock, archive_state, prepare_storage, refused, resumable_agents

if TYPE_CHECKING:
    from supervisor.runtime.arbiter import Arbiter
    from supervisor.runtime.control import ControlQueue

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
    from supervisor.runtime.model_service import ModelService, preflight_ollama
    from supervisor.runtime.process import WORKER_ENTRY, worker_context

    prepare_storage(config.storage, [agent.name for agent in config.all_agents()])
    lock = StorageLock(config.storage)
    lock.acquire(config.team)
    try:
        worker_context()  # started already by the CLI; an embedding program starts it here
        from supervisor.runtime.arbiter import Arbiter
        from supervisor.terminal.console import Console
        from supervisor.runtime.events import EventLog

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
        except UntrustedStorage as exc:  # swapped for a symlink since prepare_storage looked
            raise refused(exc) from None
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
