"""The supervisor's loop: one `select` over every pipe, exit sentinel and signal.

Shaped after gunicorn's arbiter: signal handlers only queue, a self-pipe wakes
the loop, and small methods handle one signal, one message or one exit each.
The two-stage stop is a small state machine: the first SIGINT/SIGTERM sends a
GRACEFUL interrupt to every worker and arms `graceful_timeout`; a second one
(or that timeout) sends IMMEDIATE and arms `immediate_timeout`; when that runs
out, what is left is killed, process group and all.

The same loop runs a group's sub-supervisor (`supervisor.runtime.group`), one level
down: its children are agents only, its interrupts come from its parent's
pipe instead of from signals, and its events travel up that pipe. Its parent
sees the group as one child, started, watched, interrupted and restarted by
the same rules as a worker; the group's events are trusted and written as
they come, which is how its agents' lines reach the one event log.
"""

from __future__ import annotations

import os
import selectors
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional, Sequence, Union

from protocol import (
    COMPLETED,
    FAILED,
    GRACEFUL,
    IMMEDIATE,
    INTERRUPTED,
    PROGRAMMATIC,
    RUNNING,
    SYSTEM,
    USER,
    Ack,
    CheckpointSaved,
    CycleDone,
    Error,
    Event,
    Heartbeat,
    Interrupt,
    Message,
    ProtocolError,
    Ready,
    Start,
    Stopped,
    StopRequest,
    encode,
)
from supervisor.config import AGENT, GROUP, RestartPolicy, TeamConfig
from supervisor.terminal.console import Console
from supervisor.runtime.control import ControlQueue, InterruptRequest
from supervisor.runtime.events import EventWriter
from supervisor.runtime.model_service import ModelService
from supervisor.runtime.process import GROUP_ENTRY, WORKER_ENTRY, FramedPipe, WorkerProcess
from supervisor.runtime.restarts import RestartBook, restarts_with, wants_restart
from supervisor.runtime.reaper import Reaper, become_subreaper
from supervisor.runtime.signals import HANDLED, SignalQueue

# signal: (source, what the console calls it, graceful message, immediate message or None)
SIGNAL_WORDS: dict[int, tuple[str, str, str, Optional[str]]] = {
    signal.SIGINT: (
        USER,
        "Ctrl+C",
        "User requested graceful shutdown (Ctrl+C)",
        "User requested immediate shutdown (double Ctrl+C)",
    ),
    signal.SIGTERM: (
        SYSTEM,
        "SIGTERM",
        "SIGTERM received (e.g. docker stop): graceful shutdown",
        "Second SIGTERM received: immediate shutdown",
    ),
    signal.SIGHUP: (SYSTEM, "SIGHUP", "Terminal closed (SIGHUP): graceful shutdown", None),
}
REAP_GRACE = 5.0  # seconds to wait for the kernel after SIGKILL before giving up on a pid
BEAT_INTERVAL = 1.0  # a group's heartbeat to its parent, as a worker's
SERVICE_MAX_RESTARTS = 5  # the model server, within SERVICE_RESTART_WINDOW seconds
SERVICE_RESTART_WINDOW = 60.0
RESERVED_FIELDS = frozenset({"timestamp", "level", "event", "agent_id"})
WORKER_EVENTS = frozenset({"checkpoint_corrupt", "checkpoint_temp_removed", "llm_retry", "hook_failed", "hook_timeout"})  # logged under their own name


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class AgentRecord:
    """The supervisor's view of one child (an agent's worker, or a group) during a run.

    An agent inside a group has a record too, at the root, kept up to date from
    the group's events; it has no process of its own here.
    """

    name: str
    max_cycles: int
    kind: str = AGENT
    cycle: int = 0
    status: str = "starting"
    checkpoint_id: Optional[str] = None
    budget_spent_usd: float = 0.0
    worker: Optional[WorkerProcess] = None
    pid: Optional[int] = None
    stopped: Optional[Stopped] = None
    failure: Optional[str] = None
    killed_by_us: bool = False
    last_heartbeat: float = 0.0
    exited: bool = False
    restart_at: Optional[float] = None  # a restart is scheduled for then (monotonic)
    joining_restart: bool = False  # stopped on purpose to restart with a sibling (strategy)
    kill_at: Optional[float] = None  # stopped for a restart but not gone by then: killed
    stopping: bool = False  # stopped on purpose, alone (its budget, its timeout, a request): never restarted

    def reset_for_restart(self) -> None:
        """Forget the last worker; keep what the agent has done (cycle, checkpoint)."""
        self.worker = None
        self.stopped = None
        self.failure = None
        self.killed_by_us = False
        self.exited = False
        self.restart_at = None
        self.joining_restart = False
        self.kill_at = None

    @property
    def process_noun(self) -> str:
        """What its process is called in events: worker_exited, group_exited, ..."""
        return "group" if self.kind == GROUP else "worker"

    @property
    def running(self) -> bool:
        """A worker is up and has not said its last word."""
        return self.worker is not None and not self.exited and self.stopped is None

    @property
    def process(self) -> WorkerProcess:
        """The worker of an agent that was started (every handler's case)."""
        if self.worker is None:
            raise RuntimeError(f"agent {self.name} has no worker process")
        return self.worker

    def row(self) -> dict[str, Any]:
        return {
            "agent": self.name,
            "status": self.status,
            "cycle": self.cycle,
            "max_cycles": self.max_cycles,
            "checkpoint_id": self.checkpoint_id,
            "budget_spent_usd": self.budget_spent_usd,
        }


@dataclass
class IssuedInterrupt:
    message: Interrupt
    timestamp: str
    public_id: Union[int, str]  # the id in the event stream: the root's, across the whole tree
    reached: set[str] = field(default_factory=set)
    team_wide: bool = True  # False: sent to some workers only, to restart them with a sibling


class Arbiter:
    def __init__(
        self,
        config: TeamConfig,
        log: EventWriter,
        console: Console,
        resumed: dict[str, int],
        entry: str = WORKER_ENTRY,
        own_process: bool = False,
        parent: Optional[FramedPipe] = None,
        service: Optional[ModelService] = None,
        model_host: Optional[str] = None,
        parent_backlog: Sequence[Message] = (),
        control: Optional[ControlQueue] = None,
        handle_signals: bool = True,
    ) -> None:
        self.config = config
        self.log = log
        self.console = console
        self.resumed = resumed
        self.entry = entry
        self.agents: dict[str, AgentRecord] = {}  # the children, in start order
        for name, kind in config.children():
            if kind == GROUP:
                cycles = sum(a.max_cycles for a in config.group(name).agents)
            else:
                cycles = config.agent(name).max_cycles
            self.agents[name] = AgentRecord(name=name, max_cycles=cycles, kind=kind)
        # Agents inside groups: rows for the statistics, and who each group may speak for.
        self.members = {a.name: AgentRecord(name=a.name, max_cycles=a.max_cycles) for g in config.groups for a in g.agents}
        self.speaks_for = {g.name: {g.name, *(a.name for a in g.agents)} for g in config.groups}
        self.hang_timeouts = {name: config.hang_timeout_of(name) for name in self.agents}
        self.books = {name: RestartBook(config.restart_policy(name)) for name in self.agents}
        self.selector = selectors.DefaultSelector()
        # A process the supervisor owns (the CLI, a group) also adopts and reaps orphans, as PID 1 would.
        self.own_process = own_process
        self.reaper: Optional[Reaper] = None
        # A group takes its orders from its parent's pipe, not from signals.
        self.parent = parent
        self.parent_interrupt: Optional[int] = None  # the parent's last interrupt that reached us
        self.parent_backlog = list(parent_backlog)  # what the parent sent along with Start
        self.next_beat = 0.0
        handled = HANDLED if parent is None and handle_signals else ()
        self.control = control  # requests from an embedding program (supervisor.api)
        self.signals = SignalQueue(handled + (signal.SIGCHLD,) if own_process else handled)
        self.lifecycle = "group" if parent is not None else "supervisor"  # group_started / supervisor_started
        # The embedded model server (root only), and the host its agents use (handed down to groups).
        self.service = service
        self.model_host = service.host if service is not None else model_host
        self.service_book = RestartBook(RestartPolicy("permanent", SERVICE_MAX_RESTARTS, SERVICE_RESTART_WINDOW))
        self.service_restart_at: Optional[float] = None
        self.mode: Optional[str] = None
        self.interrupts: dict[int, IssuedInterrupt] = {}
        self.forced = False
        self.deadline: Optional[float] = None
        self.kill_deadline: Optional[float] = None
        self.reap_deadline: Optional[float] = None
        self._watched_pipes: set[Any] = set()
        self._handlers: dict[str, dict[type, Any]] = {
            AGENT: {
                Heartbeat: self._on_heartbeat,
                Ready: self._on_ready,
                StopRequest: self._on_stop_request,
                CycleDone: self._on_cycle_done,
                CheckpointSaved: self._on_checkpoint_saved,
                Ack: self._on_ack,
                Stopped: self._on_stopped,
                Error: self._on_error,
                Event: self._on_event,
            },
            GROUP: {  # a group reports through events; it has no cycles or checkpoints of its own
                Heartbeat: self._on_heartbeat,
                Ack: self._on_ack,
                Stopped: self._on_stopped,
                Error: self._on_error,
                Event: self._on_group_event,
            },
        }
        self._group_delay = 0.0  # the delay of the restart that siblings join
        self.started_at = time.monotonic()
        # Limits (source PROGRAMMATIC): the team's, then each agent's own timeout (its budget the worker checks).
        self.team_deadline = self.started_at + config.timeout if config.timeout else None
        self.agent_deadlines = {
            a.name: self.started_at + a.timeout for a in config.agents if a.timeout is not None
        }

    # ---- the run ------------------------------------------------------------

    def run(self) -> int:
        if self.own_process:
            become_subreaper()
            self.reaper = Reaper()
        self.signals.install()
        self.selector.register(self.signals.fileno(), selectors.EVENT_READ, ("signal", None))
        if self.parent is not None:
            self.selector.register(self.parent.sock, selectors.EVENT_READ, ("parent", None))
        if self.control is not None:
            self.selector.register(self.control.fileno(), selectors.EVENT_READ, ("control", None))
        if self.service is not None and self.service.worker is not None:
            self._watch_service(self.service.worker)
        try:
            self.log.emit(
                f"{self.lifecycle}_started",
                agent_id=self.config.team,
                team=self.config.team,
                pid=os.getpid(),
                agents=[a.name for a in self.config.all_agents()],
                resumed=sorted(self.resumed),
                **self._groups_field(),
            )
            if self.service is not None and self.service.worker is not None:
                self.log.emit("model_server_started", agent_id=self.config.team, pid=self.service.worker.pid,
                              host=self.service.host, load_ms=self.service.load_ms)
            self._watch_parent()
            for message in self.parent_backlog:  # a stop sent while we booted: our workers start with it
                if isinstance(message, Interrupt):
                    self._on_parent_interrupt(message)
            for name in self.agents:
                self._start(name)
            while self._live():
                self._tick()
            return self._finish()
        finally:
            self._kill_all()  # nothing outlives the loop, even on an internal error
            self._stop_service()  # after the workers, as it started before them
            self.signals.restore()
            self.selector.close()

    def _groups_field(self) -> dict[str, Any]:
        return {"groups": [g.name for g in self.config.groups]} if self.config.groups else {}

    def _start(self, name: str) -> None:
        record = self.agents[name]
        try:
            worker = WorkerProcess.start(name, GROUP_ENTRY if record.kind == GROUP else self.entry)
        except Exception as exc:  # cannot fork: out of memory, pid limit
            record.status = FAILED
            record.failure = f"could not start {record.process_noun}: {exc}"
            record.exited = True
            self.log.emit("worker_error", level="error", agent_id=name, kind="start", message=record.failure, fatal=True)
            self._after_exit(record, FAILED)
            return
        record.worker = worker
        record.pid = worker.pid
        record.last_heartbeat = time.monotonic()
        self.selector.register(worker.sock, selectors.EVENT_READ, ("pipe", record))
        self._watched_pipes.add(worker.sock)
        self.selector.register(worker.sentinel, selectors.EVENT_READ, ("exit", record))
        worker.send(Start(agent=name, spec=self._spec(record)))
        if self.mode is not None:
            for issued in self.interrupts.values():
                if issued.team_wide:
                    worker.send(issued.message)
        self._watch_writes(record)

    def _spec(self, record: AgentRecord) -> dict[str, Any]:
        """A child's Start spec: an agent's, or a group's whole config (and which workers to run)."""
        if record.kind == GROUP:
            return self.config.group_spec(record.name, self.entry, self.model_host).to_wire()
        return self.config.agent_spec(record.name, self.model_host).to_wire()

    def _live(self) -> bool:
        return any(not r.exited or r.restart_at is not None for r in self.agents.values())

    def _tick(self) -> None:
        for key, mask in self.selector.select(self._timeout()):
            kind, record = key.data
            if kind == "signal":
                for signum in self.signals.drain():
                    self._on_signal(signum)
            elif kind == "pipe":
                if mask & selectors.EVENT_WRITE:
                    record.process.flush()
                if mask & selectors.EVENT_READ:
                    self._read(record)
                self._watch_writes(record)
            elif kind == "exit":
                self._reap(record)
            elif kind == "parent":
                self._on_parent(mask)
            elif kind == "control" and self.control is not None:
                for request in self.control.drain():
                    self._on_request(request)
            elif kind == "service":
                self._on_service(record)
            elif kind == "service-exit":
                self._on_service_exit(record)
        self._check_deadlines()
        self._watch_parent()  # events queued for the parent this tick

    def _timeout(self) -> Optional[float]:
        deadlines = [d for d in (self.deadline, self.kill_deadline, self.reap_deadline) if d is not None]
        if self.mode is None and self.team_deadline is not None:
            deadlines.append(self.team_deadline)
        deadlines += self.agent_deadlines.values()
        if self.parent is not None and self.parent.pipe_open:
            deadlines.append(self.next_beat)
        deadlines += [d for r in self.agents.values() for d in (r.restart_at, r.kill_at) if d is not None]
        if self.service_restart_at is not None:
            deadlines.append(self.service_restart_at)
        deadlines += [record.last_heartbeat + self.hang_timeouts[record.name] for record in self._watched_for_hangs()]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _watched_for_hangs(self) -> list[AgentRecord]:
        """Workers expected to beat: running, not yet stopped, not already being killed."""
        return [r for r in self.agents.values() if r.running and not r.killed_by_us and r.failure is None]

    def _check_hangs(self, now: float) -> None:
        """A worker silent for its hang_timeout is killed, process group and all, and fails."""
        for record in self._watched_for_hangs():
            silent = now - record.last_heartbeat
            if silent < self.hang_timeouts[record.name]:
                continue
            record.failure = f"hung: no heartbeat for {silent:.1f}s (hang_timeout {self.hang_timeouts[record.name]:g}s)"
            self.log.emit("worker_hung", level="error", agent_id=record.name, pid=record.pid, silent_s=round(silent, 3))
            record.process.kill_tree()

    # ---- signals and interrupts --------------------------------------------

    def _on_signal(self, signum: int) -> None:
        """First SIGINT/SIGTERM: graceful; second: immediate; third: kill now.

        SIGHUP (the terminal went away) only ever starts a graceful stop: nobody
        asked for work to be thrown away.
        """
        if signum == signal.SIGCHLD:
            if self.reaper is not None:
                self.reaper.sweep()  # an adopted orphan died or needs killing
            return
        words = SIGNAL_WORDS.get(signum)
        if words is None:
            return
        source, what, graceful, immediate = words
        if self.mode is None:
            self.interrupt(GRACEFUL, source, graceful)
            self.console.interrupt_notice(GRACEFUL, source, f"{what} detected")
        elif immediate is None:
            return
        elif self.mode == GRACEFUL:
            self.interrupt(IMMEDIATE, source, immediate)
            self.console.interrupt_notice(IMMEDIATE, source, f"Second {what}")
        else:
            self.console.line(f"🛑 {what} again: killing what is left now.")
            self._kill_all()

    def interrupt(self, mode: str, source: str, message: str, *, relayed: Optional[Interrupt] = None) -> None:
        """Send one interrupt to every worker still running; arm the next deadline.

        `relayed` is the parent's interrupt a group passes down: it keeps the
        parent's id and issue time (so latencies run from the root), and the
        escalation after graceful_timeout is the parent's to make, not ours.
        """
        if self.mode == IMMEDIATE or (self.mode == GRACEFUL and mode == GRACEFUL):
            return
        self.mode = mode
        for record in self.agents.values():
            if record.restart_at is not None:  # the team is stopping: what was to restart stays stopped
                record.restart_at = None
                record.status = INTERRUPTED
                record.failure = None
        running = [r for r in self.agents.values() if r.running]
        self._issue(mode, source, message, running, team_wide=True, relayed=relayed)
        shutdown = self.config.shutdown
        if mode == GRACEFUL:
            self.deadline = None if relayed is not None else time.monotonic() + shutdown.graceful_timeout
        else:
            self.forced = self.forced or bool(running)
            self.deadline = None
            self.kill_deadline = time.monotonic() + shutdown.immediate_timeout

    def stop_agent(self, name: str, mode: str, source: str, message: str, *, relayed: Optional[Interrupt] = None) -> bool:
        """Stop one agent of the tree on purpose, the rest running on; False if it is not running.

        An agent of ours gets the interrupt itself and, once stopped, is not
        restarted; an agent inside a group is reached through its group, which
        does the same one level down.
        """
        record = self.agents.get(name)
        if record is not None and record.kind == AGENT:
            if not record.running or record.stopping:
                if record.restart_at is not None:  # between a crash and its restart: it stays stopped
                    record.restart_at, record.status, record.failure, record.stopping = None, INTERRUPTED, None, True
                return False
            record.stopping = True
            self.agent_deadlines.pop(name, None)
            now = time.monotonic()
            shutdown = self.config.shutdown
            if mode == GRACEFUL:  # not done by then: killed; its last checkpoint stays its truth
                record.kill_at = now + shutdown.graceful_timeout + shutdown.immediate_timeout
            else:
                record.kill_at = now + shutdown.immediate_timeout
            self._issue(mode, source, message, [record], team_wide=False, relayed=relayed, targets=[name])
            return True
        group = next((r for r in self.agents.values() if r.kind == GROUP and name in self.speaks_for[r.name]), None)
        if group is None or not group.running or name == group.name:
            return False
        self._issue(mode, source, message, [group], team_wide=False, targets=[name])
        return True

    def _issue(
        self, mode: str, source: str, message: str, records: list[AgentRecord], *, team_wide: bool,
        relayed: Optional[Interrupt] = None, targets: Optional[list[str]] = None,
    ) -> None:
        """One interrupt to `records`: the fan-out first, then the log line (it can wait a millisecond)."""
        issued_at = relayed.issued_at if relayed is not None else time.time()
        local_id = len(self.interrupts) + 1
        if relayed is not None:
            public_id: Union[int, str] = relayed.interrupt_id
        else:  # a group's own interrupt (a restart, its own failure) must not collide with the root's ids
            public_id = local_id if self.parent is None else f"{self.config.team}.{local_id}"
        msg = Interrupt(interrupt_id=local_id, mode=mode, source=source, message=message, issued_at=issued_at,
                        agents=list(targets or []))
        self.interrupts[local_id] = IssuedInterrupt(
            message=msg, timestamp=_iso(issued_at), public_id=public_id, team_wide=team_wide
        )
        frame = encode(msg)  # one encoding for every worker
        for record in records:
            record.process.send_frame(frame)
            self._watch_writes(record)
        if relayed is not None:
            return  # the parent has logged it already
        aimed: dict[str, Any] = {"agents": list(targets)} if targets else {}
        self.log.emit(
            "interrupt_initiated",
            agent_id=self.config.team,
            source=source,
            mode=mode,
            message=message,
            interrupt_id=public_id,
            issued_at=issued_at,
            workers=len(records),
            **aimed,
        )

    # ---- the parent (a group's sub-supervisor only) ---------------------------------

    def _on_parent(self, mask: int) -> None:
        parent = self.parent
        if parent is None:
            return
        if mask & selectors.EVENT_WRITE:
            parent.flush()
        if mask & selectors.EVENT_READ:
            try:
                messages = parent.receive()
            except ProtocolError:
                messages, parent.pipe_open = [], False
            for message in messages:
                if isinstance(message, Interrupt):
                    self._on_parent_interrupt(message)
            # Anything else from a parent is ignored: it only ever sends interrupts after Start.
        if not parent.pipe_open:
            self._orphaned()
        else:
            self._watch_parent()

    def _on_parent_interrupt(self, msg: Interrupt) -> None:
        """The parent's interrupt: pass it down first, then acknowledge it up."""
        self.parent_interrupt = msg.interrupt_id
        if msg.agents:  # for some of our agents only: the rest run on
            for name in msg.agents:
                self.stop_agent(name, msg.mode, msg.source, msg.message, relayed=msg)
        else:
            self.interrupt(msg.mode, msg.source, msg.message, relayed=msg)
        if self.parent is not None:
            self.parent.send(Ack(interrupt_id=msg.interrupt_id, received_at=time.time()))

    def _orphaned(self) -> None:
        """The parent is gone: nobody is left to report to, so nothing may outlive us."""
        parent = self.parent
        if parent is not None and parent.sock.fileno() != -1:
            try:
                self.selector.unregister(parent.sock)
            except (KeyError, ValueError):
                pass
        self.parent = None
        self.mode = IMMEDIATE  # nothing restarts
        self._kill_all()

    def _watch_parent(self) -> None:
        parent = self.parent
        if parent is None or not parent.pipe_open:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if parent.outbox else 0)
        self.selector.modify(parent.sock, events, ("parent", None))

    def _beat(self, now: float) -> None:
        """A group beats to its parent as a worker does, about once a second and no more."""
        if self.parent is None or now < self.next_beat:
            return
        self.next_beat = now + BEAT_INTERVAL
        self.parent.send(Heartbeat(sent_at=time.time()))

    # ---- the embedded model server ------------------------------------------------

    def _watch_service(self, worker: WorkerProcess) -> None:
        self.selector.register(worker.sock, selectors.EVENT_READ, ("service", worker))
        self.selector.register(worker.sentinel, selectors.EVENT_READ, ("service-exit", worker))

    def _on_service(self, worker: WorkerProcess) -> None:
        try:
            messages = worker.receive()
        except ProtocolError as exc:
            messages = [Error(kind="protocol", message=str(exc), fatal=True)]
            worker.kill_tree()
        for message in messages:
            if isinstance(message, Event) and self.service is not None and self.service.ready(message):
                self.log.emit("model_server_started", agent_id=self.config.team, pid=worker.pid,
                              host=self.service.host, load_ms=self.service.load_ms)
            elif isinstance(message, Error):
                self.log.emit("model_server_error", level="error", agent_id=self.config.team, message=message.message)
        if not worker.pipe_open:
            self.selector.unregister(worker.sock)

    def _on_service_exit(self, worker: WorkerProcess) -> None:
        """The model server died: its agents retry while it comes back on the same port."""
        if worker.pipe_open:
            self._on_service(worker)
            if worker.pipe_open:
                self.selector.unregister(worker.sock)
        self.selector.unregister(worker.sentinel)
        self.log.emit("model_server_exited", level="warning", agent_id=self.config.team, pid=worker.pid,
                      exitcode=worker.exitcode(), reason=_describe_exit(worker.exitcode()))
        worker.close()
        if self.service is not None:
            self.service.worker = None
        if self.mode is not None or not self._live():
            return  # stopping anyway
        delay = self.service_book.admit(time.monotonic())
        if delay is None:
            self.console.line("❌ the embedded model server keeps dying; stopping the team.")
            self.interrupt(GRACEFUL, SYSTEM, "the embedded model server failed beyond its restart limit")
            return
        self.service_restart_at = time.monotonic() + delay

    def _restart_service(self) -> None:
        self.service_restart_at = None
        if self.service is None or self.mode is not None:
            return
        try:
            worker = self.service.start()
        except Exception as exc:  # cannot fork
            self.log.emit("model_server_error", level="error", agent_id=self.config.team, message=str(exc))
            return
        self._watch_service(worker)
        self.log.emit("model_server_restarted", agent_id=self.config.team, pid=worker.pid,
                      attempt=self.service_book.attempts)

    def _stop_service(self) -> None:
        service = self.service
        if service is None or service.worker is None:
            return
        for fd in (service.worker.sock, service.worker.sentinel):
            try:
                self.selector.unregister(fd)
            except (KeyError, ValueError):
                pass
        service.stop()

    # ---- restarts ----------------------------------------------------------------

    def _after_exit(self, record: AgentRecord, status: str) -> None:
        """Apply the agent's restart policy and the team's strategy to one exit."""
        if self.mode is not None or record.stopping:
            return  # the team is stopping, or this agent was stopped on purpose: nothing restarts
        now = time.monotonic()
        if record.joining_restart:
            self._schedule_restart(record, now, self._group_delay)
            return
        book = self.books[record.name]
        if not wants_restart(book.policy.restart, status):
            return
        delay = book.admit(now)
        if delay is None:
            self._give_up(record, book.policy)
            return
        self._group_delay = delay
        self._schedule_restart(record, now, delay)
        order = list(self.agents)  # start order: agents, then groups
        for name in restarts_with(self.config.strategy, order, record.name):
            sibling = self.agents[name]
            if sibling is not record and sibling.running:
                self._stop_to_restart(sibling, record.name)

    def _schedule_restart(self, record: AgentRecord, now: float, delay: float) -> None:
        record.restart_at = now + delay
        record.status = "restarting"

    def _stop_to_restart(self, record: AgentRecord, because: str) -> None:
        """Stop a sibling at once (its last checkpoint is its truth) so it restarts with `because`."""
        record.joining_restart = True
        record.kill_at = time.monotonic() + self.config.shutdown.immediate_timeout
        self._issue(IMMEDIATE, SYSTEM, f"restarting with {because} ({self.config.strategy})", [record], team_wide=False)

    def _give_up(self, record: AgentRecord, policy: RestartPolicy) -> None:
        """Beyond its restart intensity the agent has failed, and the team stops gracefully."""
        record.status = FAILED
        what = "group" if record.kind == GROUP else "agent"
        record.failure = (
            f"failed {policy.max_restarts + 1} times within {policy.restart_window:g}s "
            f"(max_restarts {policy.max_restarts}): {record.failure}"
        )
        self.log.emit("restart_limit_reached", level="error", agent_id=record.name, max_restarts=policy.max_restarts,
                      restart_window=policy.restart_window, reason=record.failure)
        self.console.line(f"[{record.name}] ❌ {record.failure}; stopping the team.")
        self.interrupt(GRACEFUL, SYSTEM, f"{what} {record.name} failed beyond its restart limit")

    def _check_restarts(self, now: float) -> None:
        for record in self.agents.values():
            if record.kill_at is not None and now >= record.kill_at and not record.exited:
                record.kill_at = None
                record.killed_by_us = True
                record.process.kill_tree()
            if record.restart_at is not None and now >= record.restart_at:
                self._restart(record)

    def _restart(self, record: AgentRecord) -> None:
        record.reset_for_restart()
        self._start(record.name)
        if record.worker is not None:
            self.log.emit(
                f"{record.process_noun}_restarted", agent_id=record.name, pid=record.pid,
                attempt=self.books[record.name].attempts, cycle=record.cycle,
            )

    def _check_limits(self, now: float) -> None:
        """The team's wall clock, then each agent's: a graceful stop, source PROGRAMMATIC."""
        if self.team_deadline is not None and now >= self.team_deadline:
            self.team_deadline = None
            if self.mode is None:
                self._programmatic_stop(f"team timeout {_seconds(self.config.timeout)} reached")
        for name, deadline in list(self.agent_deadlines.items()):
            if now >= deadline:
                del self.agent_deadlines[name]
                timeout = self.config.agent(name).timeout
                self._stop_alone(name, f"agent {name} timeout {_seconds(timeout)} reached")

    def _check_team_budget(self) -> None:
        """Dollars spent by every agent of the tree, earlier runs included, against the team's budget."""
        budget = self.config.budget_usd
        if budget is None or self.mode is not None or self.parent is not None:
            return
        spent = sum(r.budget_spent_usd for r in self.agents.values() if r.kind == AGENT)
        spent += sum(m.budget_spent_usd for m in self.members.values())
        if spent >= budget:
            self._programmatic_stop(f"team budget ${budget:g} reached (spent ${spent:.4f})")

    def _programmatic_stop(self, message: str) -> None:
        self.interrupt(GRACEFUL, PROGRAMMATIC, message)
        self.console.interrupt_notice(GRACEFUL, PROGRAMMATIC, message[0].upper() + message[1:])

    def _stop_alone(self, name: str, message: str) -> None:
        if self.mode is None and self.stop_agent(name, GRACEFUL, PROGRAMMATIC, message):
            self.console.line(f"[{name}] ⏹️  {message}: it finishes its cycle and stops; the others run on.")

    def _on_request(self, request: InterruptRequest) -> None:
        """An embedding program's interrupt (supervisor.api): the whole team, or one agent."""
        if request.agent is not None:
            if self.mode is None and self.stop_agent(request.agent, request.mode, PROGRAMMATIC, request.message):
                self.console.line(f"[{request.agent}] ⏹️  {request.message}")
        elif request.mode == GRACEFUL and self.mode is None:
            self._programmatic_stop(request.message)
        elif request.mode == IMMEDIATE and self.mode != IMMEDIATE:
            self.interrupt(IMMEDIATE, PROGRAMMATIC, request.message)
            self.console.interrupt_notice(IMMEDIATE, PROGRAMMATIC, request.message)

    def status(self) -> dict[str, Any]:
        """A snapshot for the embedding program: the stop in progress and one row per agent."""
        return {"team": self.config.team, "stopping": self.mode, "agents": self.rows()}

    def _on_stop_request(self, record: AgentRecord, request: StopRequest, received_at: float) -> None:
        """The agent asks for its own stop (its budget, its own decision): an interrupt for it alone."""
        if self.mode is None:
            self._stop_alone(record.name, request.message)
        # While the team stops, the team's interrupt is on its way to this worker already.

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        self._beat(now)
        self._check_limits(now)
        if self.service_restart_at is not None and now >= self.service_restart_at:
            self._restart_service()
        self._check_hangs(now)
        self._check_restarts(now)
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            timeout = self.config.shutdown.graceful_timeout
            self.console.line(f"⏱️  Graceful timeout ({timeout:g}s) ran out: stopping immediately.")
            self.interrupt(IMMEDIATE, SYSTEM, f"Graceful shutdown timed out after {timeout:g}s")
        if self.kill_deadline is not None and now >= self.kill_deadline:
            self.kill_deadline = None
            self._kill_all()
        if self.reap_deadline is not None and now >= self.reap_deadline:
            self.reap_deadline = None
            for record in self.agents.values():
                if not record.exited:  # the kernel never reported it: say so rather than hang
                    record.failure = "did not exit after SIGKILL"
                    self._reap(record)

    def _kill_all(self) -> None:
        for record in self.agents.values():
            if record.worker is not None and not record.exited:
                record.killed_by_us = True
                record.process.kill_tree()
        # SIGKILL cannot be ignored; give the kernel a bounded moment to report the exits.
        if self._live() and self.reap_deadline is None:
            self.reap_deadline = time.monotonic() + REAP_GRACE

    # ---- worker messages -------------------------------------------------------

    def _watch_writes(self, record: AgentRecord) -> None:
        worker = record.worker
        if worker is None or worker.sock not in self._watched_pipes:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if worker.outbox else 0)
        self.selector.modify(worker.sock, events, ("pipe", record))

    def _read(self, record: AgentRecord) -> None:
        worker = record.process
        try:
            messages = worker.receive()
        except ProtocolError as exc:
            self._protocol_failure(record, str(exc))
            return
        received_at = time.time()
        for message in messages:
            if record.failure and record.failure.startswith("protocol error"):
                break  # nothing more from a worker that broke the protocol is believed
            self._dispatch(record, message, received_at)
        if not worker.pipe_open:
            self._close_pipe(record)

    def _close_pipe(self, record: AgentRecord) -> None:
        """Stop watching a worker's pipe; safe to call more than once."""
        worker = record.process
        worker.pipe_open = False
        if worker.sock in self._watched_pipes:
            self._watched_pipes.discard(worker.sock)
            self.selector.unregister(worker.sock)

    def _protocol_failure(self, record: AgentRecord, problem: str) -> None:
        """A worker that breaks the protocol cannot be trusted: stop it, keep its checkpoints."""
        self.log.emit("protocol_error", level="error", agent_id=record.name, error=problem)
        record.failure = f"protocol error: {problem}"
        self._close_pipe(record)
        record.process.kill_tree()

    def _dispatch(self, record: AgentRecord, message: Message, received_at: float) -> None:
        """One small handler per message type; anything else breaks the protocol."""
        record.last_heartbeat = time.monotonic()
        handler = self._handlers[record.kind].get(type(message))
        if handler is None:  # Start and Interrupt travel the other way only
            self._protocol_failure(record, f"unexpected {message.type} message from {record.kind}")
            return
        handler(record, message, received_at)

    def _on_heartbeat(self, record: AgentRecord, beat: Heartbeat, received_at: float) -> None:
        return None  # liveness is the arrival itself

    def _on_ready(self, record: AgentRecord, ready: Ready, received_at: float) -> None:
        record.cycle = ready.cycle
        record.status = ready.status
        record.checkpoint_id = ready.checkpoint_id
        record.pid = ready.pid
        record.budget_spent_usd = ready.budget_spent_usd  # what its checkpoint says was spent before
        self.log.emit(
            "worker_started",
            agent_id=record.name,
            pid=ready.pid,
            cycle=ready.cycle,
            max_cycles=ready.max_cycles,
            status=ready.status,
            resumed=ready.resumed,
            budget_spent_usd=ready.budget_spent_usd,
            startup_ms=round((time.monotonic() - record.process.started_at) * 1000.0, 3),
        )
        self._check_team_budget()

    def _on_cycle_done(self, record: AgentRecord, done: CycleDone, received_at: float) -> None:
        record.cycle = done.cycle
        record.budget_spent_usd += done.cost_usd or 0.0
        known: dict[str, Any] = {"tokens": done.tokens, "cost_usd": done.cost_usd, "model_ms": done.model_ms}
        self.log.emit(
            "cycle_completed",
            agent_id=record.name,
            cycle=done.cycle,
            max_cycles=record.max_cycles,
            duration_ms=round(done.duration_ms, 3),
            **{key: value for key, value in known.items() if value is not None},
            reply=done.reply,
        )
        self._check_team_budget()

    def _on_checkpoint_saved(self, record: AgentRecord, saved: CheckpointSaved, received_at: float) -> None:
        record.checkpoint_id = saved.checkpoint_id
        self.log.emit(
            "checkpoint_saved",
            agent_id=record.name,
            checkpoint_id=saved.checkpoint_id,
            cycle=saved.cycle,
            status=saved.status,
            bytes=saved.bytes,
            duration_ms=round(saved.duration_ms, 3),
        )

    def _on_error(self, record: AgentRecord, error: Error, received_at: float) -> None:
        if error.fatal:
            record.failure = f"{error.kind}: {error.message}"
        self.log.emit("worker_error", level="error", agent_id=record.name, kind=error.kind, message=error.message, fatal=error.fatal)

    def _on_event(self, record: AgentRecord, event: Event, received_at: float) -> None:
        """Workers may report only their own kinds of event; they cannot forge the supervisor's."""
        fields = {k: v for k, v in event.fields.items() if k not in RESERVED_FIELDS}
        level = _level(event)
        if event.event in WORKER_EVENTS:
            self.log.emit(event.event, level=level, agent_id=record.name, **fields)
        else:
            self.log.emit("worker_event", level=level, agent_id=record.name, name=event.event, **fields)

    def _on_group_event(self, record: AgentRecord, event: Event, received_at: float) -> None:
        """A group's events are the supervisor's own, one level down: written as they come.

        A group speaks only for itself and its agents; a line about anyone else
        means the group is broken, and it is stopped like any protocol breaker.
        """
        agent_id = event.fields.get("agent_id")
        if agent_id not in self.speaks_for.get(record.name, ()):
            self._protocol_failure(record, f"group event {event.event!r} about {agent_id!r}, not one of its own")
            return
        fields = {k: v for k, v in event.fields.items() if k not in ("timestamp", "level", "event")}
        level = _level(event)
        self.log.emit(event.event, level=level, **fields)
        member = self.members.get(str(agent_id))
        if member is not None:
            _track(member, event.event, fields)
            self._check_team_budget()

    def _on_ack(self, record: AgentRecord, ack: Ack, received_at: float) -> None:
        issued = self.interrupts.get(ack.interrupt_id)
        if issued is None or record.name in issued.reached:
            return
        issued.reached.add(record.name)
        if record.kind == GROUP:
            return  # the group logs each of its agents' acks itself
        msg = issued.message
        self.log.emit(
            "interrupt_initiated",
            agent_id=record.name,
            source=msg.source,
            mode=msg.mode,
            message=msg.message,
            interrupt_id=issued.public_id,
            ack_ms=round((received_at - msg.issued_at) * 1000.0, 3),  # issue to the ack's arrival here
        )

    def _on_stopped(self, record: AgentRecord, stopped: Stopped, received_at: float) -> None:
        record.stopped = stopped
        record.status = stopped.status
        record.cycle = stopped.cycle
        record.checkpoint_id = stopped.checkpoint_id
        record.budget_spent_usd = stopped.budget_spent_usd
        if stopped.status == FAILED:
            record.failure = record.failure or stopped.reason
        issued = self.interrupts.get(stopped.interrupt_id) if stopped.interrupt_id is not None else None
        if issued is not None and record.kind == AGENT:  # a group's agents report their own stops
            msg = issued.message
            latency = ((stopped.durable_at or time.time()) - msg.issued_at) * 1000.0
            self.log.emit(
                "interrupt_completed",
                agent_id=record.name,
                checkpoint_id=stopped.checkpoint_id,
                cycle=stopped.cycle,
                latency_ms=round(max(latency, 0.0), 3),
                mode=msg.mode,
                source=msg.source,
                interrupt_id=issued.public_id,
                total_interrupts=stopped.total_interrupts,
                graceful_interrupts=stopped.graceful_interrupts,
                immediate_interrupts=stopped.immediate_interrupts,
            )

    # ---- exits -------------------------------------------------------------------

    def _reap(self, record: AgentRecord) -> None:
        worker = record.process
        if worker.pipe_open:  # the last words may still sit in the pipe
            self._read(record)
        self.selector.unregister(worker.sentinel)
        self._close_pipe(record)
        exitcode = worker.exitcode()
        record.exited = True
        if record.stopped is not None and record.failure is None:
            status = record.stopped.status
            reason = record.stopped.reason or status
        elif record.killed_by_us and record.failure is None:
            status = INTERRUPTED
            reason = "killed after the immediate timeout"
        elif record.joining_restart and record.failure is None:
            status = INTERRUPTED
            reason = "stopped to restart with a sibling"
        else:
            status = FAILED
            reason = record.failure or _describe_exit(exitcode)
        record.status = status
        if status == FAILED:
            record.failure = reason
        budget = {"budget_spent_usd": record.stopped.budget_spent_usd} if record.stopped is not None else {}
        self.log.emit(
            f"{record.process_noun}_exited",
            level="error" if status == FAILED else "info",
            agent_id=record.name,
            pid=worker.pid,
            exitcode=exitcode,
            status=status,
            reason=reason,
            **budget,
        )
        if record.kind == GROUP:
            for name in self.speaks_for[record.name]:
                member = self.members.get(name)
                if member is not None and member.status not in (COMPLETED, FAILED, INTERRUPTED):
                    member.status = status  # the group died before its agent said its last word
        pid = worker.pid
        worker.close()
        self._bury(pid)
        self._after_exit(record, status)

    def _bury(self, pid: int) -> None:
        """A worker's tools die with it: its process group, then any orphan it left."""
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.reaper is not None:
            self.reaper.sweep()

    # ---- the end -------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """One row per agent of the tree, in config order (a group's agents from its events)."""
        by_name = {**{r.name: r for r in self.agents.values() if r.kind == AGENT}, **self.members}
        return [by_name[a.name].row() for a in self.config.all_agents()]

    def _finish(self) -> int:
        records = list(self.agents.values())
        if any(r.status == FAILED for r in records):
            status, code = FAILED, 3
        elif self.log.failure is not None:
            status, code = INTERRUPTED if self.interrupts else COMPLETED, 3
        elif self.forced:
            status, code = INTERRUPTED, 1
        elif all(r.status == COMPLETED for r in records):
            status, code = COMPLETED, 0
        else:
            status, code = INTERRUPTED, 0
        counts = {
            "total": len(self.interrupts),
            "graceful": sum(1 for i in self.interrupts.values() if i.message.mode == GRACEFUL),
            "immediate": sum(1 for i in self.interrupts.values() if i.message.mode == IMMEDIATE),
        }
        self.log.emit(
            f"{self.lifecycle}_stopped",
            level="error" if status == FAILED else "info",
            agent_id=self.config.team,
            status=status,
            exit_code=code,
            duration_s=round(time.monotonic() - self.started_at, 3),
            failed=[r.name for r in records if r.status == FAILED],
            **{f"{k}_interrupts": v for k, v in counts.items()},
        )
        if self.parent is not None:
            self._report_to_parent(status, records, counts)
            return code
        first = self.interrupts.get(1)
        last = self.interrupts[max(self.interrupts)] if self.interrupts else None
        shown = None
        if last is not None:
            shown = {**_public(last.message), "timestamp": (first or last).timestamp}
        self.console.outcome(status, shown)
        if self.log.failure is not None:
            self.console.line(f"❌ storage {self.config.storage}: {self.log.failure} (the agents' checkpoints are intact)")
        self.console.statistics(status, self.rows(), counts, str(self.config.storage), str(self.config.source))
        return code

    def _report_to_parent(self, status: str, records: list[AgentRecord], counts: dict[str, int]) -> None:
        """A group's last word, as a worker's: its outcome, for its parent's restart rules."""
        parent = self.parent
        if parent is None:
            return
        failures = [f"{r.name}: {r.failure}" for r in records if r.status == FAILED and r.failure]
        parent.send(
            Stopped(
                status=status,
                cycle=sum(r.cycle for r in records),
                checkpoint_id=None,
                budget_spent_usd=sum(r.budget_spent_usd for r in records),
                interrupt_id=self.parent_interrupt,
                total_interrupts=counts["total"],
                graceful_interrupts=counts["graceful"],
                immediate_interrupts=counts["immediate"],
                reason="; ".join(failures),
            )
        )
        parent.drain(timeout=1.0)


def _level(event: Event) -> str:
    """A reported level we write as is; anything else is info."""
    return event.level if event.level in ("debug", "info", "warning", "error") else "info"


def _track(member: AgentRecord, event: str, fields: dict[str, Any]) -> None:
    """Keep the root's row of a group's agent current from the group's events."""

    def number(key: str, default: float) -> float:
        value = fields.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default

    if event in ("worker_started", "cycle_completed", "checkpoint_saved", "interrupt_completed"):
        member.cycle = int(number("cycle", member.cycle))
    if event == "worker_started":
        member.status = str(fields.get("status") or RUNNING)
        member.budget_spent_usd = number("budget_spent_usd", member.budget_spent_usd)
    elif event == "cycle_completed":
        member.budget_spent_usd += number("cost_usd", 0.0)
    elif event == "worker_exited":
        member.status = str(fields.get("status") or member.status)
        member.budget_spent_usd = number("budget_spent_usd", member.budget_spent_usd)
    elif event == "worker_restarted":
        member.status = "restarting"
    if event in ("checkpoint_saved", "interrupt_completed") and isinstance(fields.get("checkpoint_id"), str):
        member.checkpoint_id = fields["checkpoint_id"]


def _seconds(value: Optional[float]) -> str:
    """A duration as a person wrote it: 90s, 2m, 1.5h."""
    seconds = float(value or 0.0)
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _public(msg: Interrupt) -> dict[str, Any]:
    return {"mode": msg.mode, "source": msg.source, "message": msg.message}


def _describe_exit(exitcode: Optional[int]) -> str:
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with code {exitcode} without reporting"

