"""The `run` command: prepare storage, take the team's lock, run the arbiter.

Everything that can go wrong before a worker starts is found here and turned
into a one-line `SupervisorError` with the contract's exit code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from supervisor.config import TeamConfig
from supervisor.errors import SupervisorError
from protocol.storage_files import UntrustedStorage
from supervisor.storage import StorageLock, archive_state, control_socket, prepare_storage, refused, resumable_agents

if TYPE_CHECKING:
    from supervisor.runtime.arbiter import Arbiter, Outcome
    from supervisor.runtime.backend import Backend
    from supervisor.runtime.control import ControlQueue
    from supervisor.runtime.events import EventLog
    from supervisor.runtime.model_service import ModelService


def run_team(
    config: TeamConfig,
    *,
    fresh: bool = False,
    entry: Optional[str] = None,
    own_process: bool = False,
    control: Optional["ControlQueue"] = None,
    handle_signals: bool = True,
    sinks: Sequence[Callable[[dict[str, Any]], None]] = (),
    on_arbiter: Optional[Callable[["Arbiter"], None]] = None,
) -> "Outcome":
    """Run the team to completion or interruption; returns how it ended.

    `sinks` see each event as it is written (the console, the live view, a
    program's callback); nothing here prints. `control`, `handle_signals` and
    `on_arbiter` are for programs that embed a run (supervisor.api): requests
    from other threads, no signal handlers outside the main thread, and the
    arbiter for status snapshots.
    """
    from supervisor.runtime.descriptors import announced, make_room
    from supervisor.runtime.model_service import ModelService, preflight_ollama
    from supervisor.runtime.openai_preflight import preflight_openai
    from supervisor.runtime.slots import SlotBank
    from protocol.specs import server_key
    from supervisor.runtime.process import WORKER_ENTRY, preload_for, worker_context

    backend = _backend_for(config)  # backend: ray without Ray installed is exit 2, before anything
    open_files = make_room(len(config.all_agents()) + len(config.groups))  # before any worker: exit 2 if short
    prepare_storage(config.storage, [agent.name for agent in config.all_agents()])
    lock = StorageLock(config.storage)
    lock.acquire(config.team)
    try:
        worker_context()  # started already by the CLI; an embedding program starts it here
        preload_for(config)  # the model clients this team's workers use, loaded once in the forkserver
        from supervisor.runtime.arbiter import Arbiter
        from supervisor.runtime.control_server import ControlServer
        from supervisor.runtime.events import EventLog, Rotation
        from supervisor.runtime.observe import Observers

        observers = Observers(config)
        observers.start()  # a metrics port in use is exit 2, before anything is written or started
        try:
            moved = archive_state(config.storage) if fresh else None
            try:
                log = EventLog(config.storage, sinks=[*sinks, *observers.sinks],
                               rotation=Rotation(config.events.max_bytes, config.events.keep), owner=config.team)
            except UntrustedStorage as exc:  # swapped for a symlink since prepare_storage looked
                raise refused(exc) from None
            except OSError as exc:
                raise SupervisorError(f"storage {config.storage}: cannot open the event log: {exc.strerror or exc}", 3) from exc
        except BaseException:
            observers.close()
            raise
        try:
            if moved is not None:
                log.emit("state_archived", agent_id=config.team, to=str(moved))
            resumed = resumable_agents(config)
            # before any worker: an unreachable server or a missing model is exit 3 (a pool: all of its servers)
            unusable = [*preflight_ollama(config), *preflight_openai(config)]
            for url, why in unusable:
                log.emit("server_unavailable", level="warning", agent_id=config.team, server=url, error=why)
            service = ModelService(config) if ModelService.wanted(config) else None
            server = ControlServer(control_socket(config.storage), log, config.team)  # we hold the lock: ours
            log.sinks.append(server.publish)  # watchers see each event as it is written
            opened = backend.open(log)
            finished = False  # the run came to its end (not an error on its way out)
            try:
                arbiter = Arbiter(config, log, resumed, entry=entry or WORKER_ENTRY, own_process=own_process,
                                  service=service, control=control, handle_signals=handle_signals,
                                  control_server=server, trace_parent=observers.traceparent, backend=backend)
                arbiter.announce(storage=str(config.storage), llm=describe_llm(config), backend=backend.name,
                                 **opened, **announced(open_files))
                if isinstance(arbiter.slots, SlotBank):  # a pool's servers that failed the pre-flight rest from the start
                    arbiter.slots.rest([server_key(url) for url, _ in unusable])
                observers.announce(log)
                try:
                    if service is not None:
                        _start_service(service, log, config.team)
                    if on_arbiter is not None:
                        on_arbiter(arbiter)
                    outcome = arbiter.run()
                    finished = True
                    return outcome
                finally:
                    if service is not None:
                        service.stop()
            finally:
                backend.close(leaving=own_process and finished)
        finally:
            observers.close()
            log.close()
    finally:
        lock.release()


def _backend_for(config: TeamConfig) -> "Backend":
    """Where this team's children run; one line (exit 2) when that cannot be here."""
    from supervisor.runtime.backend import LocalBackend

    if config.backend != "ray":
        return LocalBackend()
    from supervisor.runtime.ray_backend import RayBackend

    if config.ray is not None and config.ray.address is not None and any(a.llm.provider == "embedded" for a in config.all_agents()):
        raise SupervisorError("provider embedded serves on 127.0.0.1 of this machine, which the nodes of a Ray "
                              "cluster (ray.address) do not reach: use provider ollama or openai with a host they "
                              "reach", 2)
    return RayBackend(config)


def _start_service(service: "ModelService", log: "EventLog", team: str) -> None:
    """Load the embedded model before any worker needs it; a failure ends the run it announced."""
    log.emit("model_server_starting", agent_id=team, model=service.model)
    try:
        service.start_and_wait()
    except SupervisorError as exc:
        log.emit("supervisor_stopped", level="error", agent_id=team, status="failed", exit_code=exc.exit_code,
                 reason=str(exc))
        raise
    worker = service.worker
    log.emit("model_server_started", agent_id=team, pid=worker.pid if worker else None, host=service.host,
             load_ms=service.load_ms)


def describe_llm(config: TeamConfig) -> str:
    llm = config.llm
    if llm.provider == "scripted":
        return f"scripted (deterministic, {llm.latency:g}s per reply)"
    if llm.provider == "embedded":
        over = ", OpenAI's API" if llm.wire_api == "openai" else ""
        return f"embedded ({llm.model_name}, a bundled real model served on 127.0.0.1{over})"
    pool = f"a pool of {len(llm.hosts)}: {', '.join(llm.hosts)}" if llm.hosts else None
    if llm.provider == "openai":
        model, where = llm.model or "each agent's model", pool or llm.base_url or "each agent's base_url"
        return f"openai ({model} at {where})"
    return f"ollama ({llm.model_name} at {pool or llm.host})"
