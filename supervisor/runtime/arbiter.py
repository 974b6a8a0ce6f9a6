"""The supervisor's loop: it builds the parts, starts the children, and runs until none is left.

Shaped after gunicorn's arbiter: signal handlers only queue, a self-pipe wakes
the loop, and each decision has one home: the reactor (descriptors and named
timers), the children's state (`children`), the stop path (`shutdown`), what
each message means (`handlers`), restarts (`restarts`), limits (`limits`), a
group's pipe to its parent (`uplink`) and the model server (`model_service`).
The arbiter itself starts, reads and reaps processes, and says how the run ended.

The same loop runs a group's sub-supervisor one level down: its children are
agents only, its orders come down its parent's pipe instead of from signals,
and its events travel up that pipe. It prints nothing: decisions are events,
and the terminal renders them.
"""

from __future__ import annotations

import dataclasses
import gc
import os
from collections import deque
import selectors
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from protocol import (
    COMPLETED,
    FAILED,
    GRACEFUL,
    IMMEDIATE,
    INTERRUPTED,
    PROGRAMMATIC,
    SYSTEM,
    Interrupt,
    Message,
    Proceed,
    ProtocolError,
    Start,
    StartAgents,
    encode,
)
from protocol.messages import addressed
from supervisor.config import AGENT, GROUP, TeamConfig
from supervisor.runtime.children import BACKLOG_READ, Child, LiveScan, Phase, StopIntent, classify_exit
from supervisor.errors import UserError
from supervisor.runtime.control import AgentsRequest, AnswerRequest, ControlQueue, InterruptRequest, ReloadRequest
from supervisor.runtime.control_desk import ControlDesk
from supervisor.runtime.control_server import ControlServer
from supervisor.runtime.events import EventWriter
from supervisor.runtime.handlers import MessageHandlers
from supervisor.runtime.limits import Limits
from supervisor.runtime.mail import MailRoute, Postmaster, Relay
from supervisor.runtime.model_service import ModelService, ServiceWatch
from supervisor.runtime.backend import Backend, ChildProcess, LocalBackend
from supervisor.runtime.process import GROUP_ENTRY, WORKER_ENTRY, FramedPipe, resource_problem
from supervisor.runtime.reactor import Reactor
from supervisor.runtime.reaper import Reaper, become_subreaper
from supervisor.runtime.restarts import RestartBook, RestartPlanner
from supervisor.runtime.shutdown import Shutdown, StopOrder
from supervisor.runtime.signals import HANDLED, SignalQueue
from supervisor.runtime.slots import SlotBank, SlotRelay, SlotRoute
from supervisor.runtime.start_order import StartOrder
from supervisor.runtime.uplink import Uplink
from supervisor.vocabulary import NOT_STARTED

READ_SHARE_BYTES = 256 * 1024  # one child's share of one loop pass; more waits for the next
LAST_WORDS_BYTES = 16 * 1024 * 1024  # what an exited child may still have left in its pipe
MAX_MESSAGES_PER_SECOND = 20_000  # a busy healthy worker sends a few hundred; beyond this it is broken
MAX_FORKSERVER_DEATHS = 3  # within FORKSERVER_WINDOW seconds; one more and the team stops (OOM killer, a kill loop)
FORKSERVER_WINDOW = 60.0
START_BATCH = 64  # children started between two looks at signals and pipes: a stop during a big start waits for one batch


@dataclass(frozen=True)
class Outcome:
    """How a run ended, for whoever shows it: the CLI, the API, a group's parent."""

    status: str  # completed, interrupted, failed
    exit_code: int
    rows: list[dict[str, Any]]  # one per agent of the tree, in config order
    interrupts: dict[str, int]  # total, graceful, immediate
    interrupt: Optional[dict[str, Any]]  # the one to name: mode, source, message, timestamp
    storage_failure: Optional[str]  # the event log could not be written


class Arbiter:
    def __init__(
        self,
        config: TeamConfig,
        log: EventWriter,
        resumed: dict[str, int],
        entry: str = WORKER_ENTRY,
        own_process: bool = False,
        parent: Optional[FramedPipe] = None,
        service: Optional[ModelService] = None,
        model_host: Optional[str] = None,
        parent_backlog: Sequence[Message] = (),
        control: Optional[ControlQueue] = None,
        handle_signals: bool = True,
        control_server: Optional[ControlServer] = None,
        trace_parent: Callable[[], Optional[str]] = lambda: None,
        backend: Optional[Backend] = None,
    ) -> None:
        self.config = config
        self.backend: Backend = backend if backend is not None else LocalBackend()  # where the children run
        self.log = log
        self.resumed = resumed
        self.entry = entry
        self.own_process = own_process  # the CLI or a group: it also adopts and reaps orphans, as PID 1 would
        self.lifecycle = "group" if parent is not None else "supervisor"  # group_started / supervisor_started
        self.children: dict[str, Child] = {}  # in start order: agents, then groups
        self.live = LiveScan(self.children)  # "is anything left to run?", cheap on every pass
        for name, kind in config.children():
            cycles = sum(a.max_cycles for a in config.group(name).agents) if kind == GROUP else config.agent(name).max_cycles
            self.children[name] = Child(name=name, max_cycles=cycles, kind=kind)
        # Agents inside groups: rows for the statistics, and who each group may speak for.
        self.members = {a.name: Child(name=a.name, max_cycles=a.max_cycles) for g in config.groups for a in g.agents}
        self.speaks_for = {g.name: {g.name, *(a.name for a in g.agents)} for g in config.groups}
        self.hang_timeouts = {name: config.hang_timeout_of(name) for name in self.children}
        self.reactor = Reactor()
        self.reaper: Optional[Reaper] = None
        handled = HANDLED if parent is None and handle_signals else ()
        self.signals = SignalQueue(handled + (signal.SIGCHLD,) if own_process else handled)
        self.control = control  # requests from an embedding program (supervisor.api)
        self.shutdown = Shutdown(config, self.children, self.speaks_for, self.reactor, log, self._send,
                                 self._reap_stragglers, is_group=parent is not None)
        self.limits = Limits(config, self.children, self.members, self.reactor, self.shutdown.request,
                             is_group=parent is not None)
        self.restarts = RestartPlanner(config, self.children, self.reactor, log, self.shutdown.request,
                                       self._restart, lambda: self.shutdown.mode is not None)
        # Agents working together: the root routes every message of the tree; a group passes its agents' up.
        self.mail: MailRoute = (Relay(parent.send) if parent is not None else
                                Postmaster(log, self._deliver, lambda: set(self.config.team_agents())))
        # Model servers' concurrency caps: the root counts every call of the tree; a group passes its agents' up.
        self.slots: SlotRoute = (SlotRelay(parent.send) if parent is not None else
                                 SlotBank(log, self._deliver, lambda: self.config.server_caps(self.model_host)))
        self.start_order = StartOrder(config, log, self._release, is_root=parent is None)
        self.handlers = MessageHandlers(log, self.shutdown, self.members, self.speaks_for,
                                        self.limits.check_team_budget, self._counted, self.limits.agent_asked,
                                        self._protocol_failure, self.mail, self._member_event, self.slots)
        # With a team budget, each agent's next cycle waits until its last one is counted (no overshoot past
        # the cycles in flight). A group's own agents are counted at the root, through the group's events.
        self.grants = config.budget_usd is not None and parent is None
        self.uplink = (Uplink(parent, self.reactor, self.shutdown.request, self._orphaned, self._start_agents,
                              self._pass_down) if parent is not None else None)
        self.control_server = control_server  # an operator's commands from another terminal
        self.desk = ControlDesk(self, control_server) if control_server is not None else None
        self.pid = os.getpid()
        self.parent_backlog = list(parent_backlog)  # what the parent sent along with Start
        self.service = service
        self._model_host = model_host  # a group's: the root's server, handed down
        self.service_watch = (ServiceWatch(service, self.reactor, log, config.team, self.shutdown.request,
                                           self._stopping) if service is not None else None)
        self.started_at = time.monotonic()
        self.forkserver_deaths: deque[float] = deque()
        self.out_of_resources = False  # a start failed for want of descriptors, memory or processes
        self.trace_parent = trace_parent  # the run's span, when traces are on: handed to every worker in its Start

    # ---- the run: a table of contents ----------------------------------------------------

    def announce(self, **extra: Any) -> None:
        """The run's first line (`supervisor_started`, or `group_started` one level down)."""
        groups: dict[str, Any] = {"groups": [g.name for g in self.config.groups]} if self.config.groups else {}
        self.log.emit(
            f"{self.lifecycle}_started",
            agent_id=self.config.team,
            team=self.config.team,
            pid=os.getpid(),
            agents=[a.name for a in self.config.all_agents()],
            resumed=sorted(self.resumed),
            resumed_cycles=dict(self.resumed),
            **groups,
            **extra,
        )

    def run(self) -> Outcome:
        if self.own_process:
            become_subreaper()
            self.reaper = Reaper(helpers=self.backend.helper_pids)
            # What is loaded by now lives as long as the process: the cyclic GC need never walk it again.
            # A full collection of it took ~35 ms of a 32-agent stop when it fell there (in the last frame).
            gc.freeze()
        self.signals.install()
        try:
            self.reactor.watch(self.signals.fileno(), lambda mask: self._on_signals())
            self.reactor.between_callbacks(self._signals_first)
            if self.control is not None:
                self.reactor.watch(self.control.fileno(), lambda mask: self._on_requests())
            if self.control_server is not None and self.desk is not None:
                self.control_server.open(self.reactor, self.desk.serve)
            if self.service_watch is not None:
                self.service_watch.open()
            if self.uplink is not None:
                self.uplink.open()
                for message in self.parent_backlog:  # a stop sent while we booted: our workers start with it
                    if isinstance(message, Interrupt):
                        self.uplink.on_interrupt(message)
            self.started_at = time.monotonic()
            self.limits.arm(self.started_at)
            if self.uplink is None:  # the root says who waits, across the tree
                for name, after in self.start_order.after.items():
                    self.log.emit("agent_held", agent_id=name, after=after)
                    if name in self.members:
                        self.members[name].status = "held"
            first: list[Child] = []
            for child in self.children.values():
                if self.start_order.holds(child.name):
                    child.phase, child.status = Phase.HELD, "held"  # until its `after` agents have completed
                else:
                    first.append(child)
            self._start_many(first)
            while self.live.any():
                self.reactor.tick()
            if self.reaper is not None:
                self.reaper.sweep_if_due()  # the last exits' orphans: nothing outlives the run
            return self._finish()
        finally:
            self.shutdown.kill_all()  # nothing outlives the loop, even on an internal error
            if self.control_server is not None:
                self.control_server.close()  # last answers out, the socket removed
            if self.service_watch is not None:
                self.service_watch.close()  # after the workers, as it started before them
            self.signals.restore(run_over=self.own_process)  # a process of its own: a late Ctrl+C is not a failure
            self.reactor.close()

    def _stopping(self) -> bool:
        """The team is stopping (or has nothing left to run): nothing restarts."""
        return self.shutdown.mode is not None or not self.live.any()

    # ---- starting a child ---------------------------------------------------------------------

    def _start_many(self, children: list[Child]) -> None:
        """Start `children` batch by batch, and look at what came in between two batches.

        A big team takes seconds to start (about 5 s for 1000 agents on 2 cores). Started in one go,
        a Ctrl+C pressed meanwhile waited for the last worker, then stopped them all; and no worker's
        Ready was read until then. Now a stop takes effect within a batch, and the children not started
        by then never start (status "not started"); the first workers' Ready are read while the later
        ones are forked.
        """
        for at in range(0, len(children), START_BATCH):
            if at:
                self.reactor.tick(wait=False)
                if self.shutdown.mode is not None or self.out_of_resources:
                    for child in children[at:]:
                        if child.phase is Phase.PENDING:
                            child.phase, child.status = Phase.EXITED, NOT_STARTED
                    return
            self._start_batch([child for child in children[at:at + START_BATCH] if child.phase is Phase.PENDING])

    def _start_batch(self, children: list[Child]) -> None:
        """Start `children`, the forkserver forking the next ones while each is set up here."""
        if not children:
            return
        self._forkserver_died()
        jobs = [(child.name, self._entry_of(child)) for child in children]
        def start_frame(index: int) -> bytes:
            return encode(Start(agent=children[index].name, spec=self._spec(children[index])))

        pack = self.config.agents_per_process
        for child, spawned in zip(children, self.backend.start_many(jobs, start_frame, pack)):
            if isinstance(spawned, ConnectionRefusedError):  # the forkserver died under this start: the one-by-one path
                self._start(child)
            else:
                self._start(child, spawned, start_sent=True)

    def _entry_of(self, child: Child) -> str:
        return GROUP_ENTRY if child.kind == GROUP else self.entry

    def _start(self, child: Child, spawned: "ChildProcess | OSError | None" = None, start_sent: bool = False) -> None:
        """Start `child` (or set up the process `spawned` for it already, or report why that failed).

        `start_sent`: its Start frame went into the pipe before the fork (`_start_many`).
        """
        self.reactor.cancel(f"kill:{child.name}")
        if self.out_of_resources and child.phase is Phase.PENDING:  # it would fail as the last one did
            child.phase, child.status = Phase.EXITED, NOT_STARTED
            if spawned is not None and not isinstance(spawned, OSError):  # started ahead of the failure: unused
                spawned.kill_tree()
                spawned.close()
            return
        try:
            if isinstance(spawned, OSError):
                raise spawned
            worker = spawned if spawned is not None else self._spawn(child.name, self._entry_of(child))
        except Exception as exc:
            problem = resource_problem(exc)
            child.phase, child.status = Phase.EXITED, FAILED
            child.failure = f"could not start {child.process_noun}: {problem or exc}"
            self.log.emit("worker_error", level="error", agent_id=child.name, kind="resource" if problem else "start",
                          message=child.failure, fatal=True)
            if problem is None:
                self.restarts.after_exit(child, FAILED)
            elif not self.out_of_resources:  # not the agent's fault, and a retry would fail alike: stop, once
                self.out_of_resources = True
                self.shutdown.request(StopOrder(GRACEFUL, SYSTEM, f"{child.name}: {child.failure}", "resources"))
            return
        child.started(worker, time.monotonic())
        self.reactor.watch(worker.sock, lambda mask: self._on_pipe(child, worker, mask))
        self.reactor.watch(worker.sentinel, lambda mask: self._reap(child))
        if not start_sent:
            worker.send(Start(agent=child.name, spec=self._spec(child)))
        if self.shutdown.mode is not None:
            for interrupt in self.shutdown.team_frames():
                worker.send(interrupt)
        self._watch_writes(child)
        self._expect_beat(child)

    def _spawn(self, name: str, entry: str) -> ChildProcess:
        """A new process; once more through a new forkserver if the last one died under this start."""
        self._forkserver_died()
        try:
            return self.backend.start(name, entry)
        except Exception as exc:
            if resource_problem(exc) is not None or not self._forkserver_died() or self.shutdown.mode is not None:
                raise
        return self.backend.start(name, entry)

    def _forkserver_died(self) -> bool:
        """Whether the forkserver had died: it is replaced at once, or the team stops if it keeps dying."""
        pid, cause = self.backend.starter_died()
        if cause is None:
            return False
        now = time.monotonic()
        deaths = self.forkserver_deaths
        deaths.append(now)
        while now - deaths[0] > FORKSERVER_WINDOW:
            deaths.popleft()
        giving_up = len(deaths) > MAX_FORKSERVER_DEATHS
        self.log.emit("forkserver_died", level="error" if giving_up else "warning", agent_id=self.config.team,
                      pid=pid, reason=cause, deaths=len(deaths))
        if giving_up:
            message = (f"the forkserver that starts the workers died {len(deaths)} times within "
                       f"{FORKSERVER_WINDOW:g}s (last: {cause})")
            self.out_of_resources = True
            self.shutdown.request(StopOrder(GRACEFUL, SYSTEM, message, "forkserver"))
        elif self.shutdown.mode is None:
            self.backend.start_again()
        return True

    def start_again(self, child: Child) -> bool:
        """An operator's start: an exited child (or one a reload added) runs from its latest checkpoint.

        False when it runs already, or a restart is already scheduled.
        """
        if child.phase not in (Phase.EXITED, Phase.PENDING, Phase.HELD):
            return False
        self.start_order.started_by_hand(child.name)
        child.intent, child.status, child.stopped, child.failure = StopIntent.NONE, "starting", None, None
        self._start(child)
        return True

    def _start_agents(self, names: list[str]) -> None:
        """A group's side of an operator's start: its parent names the agents."""
        for name in names:
            child = self.children.get(name)
            if child is not None and child.kind == AGENT:
                self.start_again(child)

    def adopt_config(self, new: TeamConfig) -> None:
        """A reloaded config: every part reads the new one; agents it adds get a record (started by the caller)."""
        self.config = new
        for part in (self.shutdown, self.limits, self.restarts):
            part.config = new
        kept = dict(self.children)
        self.children.clear()  # in place: the parts share this table
        for name, kind in new.children():
            child = kept.pop(name, None) or Child(name=name, max_cycles=0, kind=kind)
            if kind == AGENT:
                child.max_cycles = new.agent(name).max_cycles
            self.children[name] = child
        self.children.update(kept)  # removed agents stay until they have exited: their rows leave with the config
        for name, _ in new.children():
            self.hang_timeouts[name] = new.hang_timeout_of(name)
            book = self.restarts.books.get(name)
            if book is None or book.policy != new.restart_policy(name):
                self.restarts.books[name] = RestartBook(new.restart_policy(name))

    def _restart(self, child: Child) -> None:
        self._start(child)
        if child.running:
            self.log.emit(
                f"{child.process_noun}_restarted", agent_id=child.name, pid=child.pid or None,  # None: not known yet (Ray)
                attempt=self.restarts.books[child.name].attempts, cycle=child.cycle,
            )

    @property
    def model_host(self) -> Optional[str]:
        """Where the embedded model is served: our own server (known once it has started), or the root's."""
        return self.service.host if self.service is not None else self._model_host

    def _spec(self, child: Child) -> dict[str, Any]:
        """A child's Start spec: an agent's, or a group's whole config (and which workers to run)."""
        if child.kind == GROUP:
            released = self.start_order.released
            group = self.config.group_spec(child.name, self.entry, self.model_host, released)
            return dataclasses.replace(group, traceparent=self.trace_parent()).to_wire()
        spec = self.config.agent_spec(child.name, self.model_host, await_grants=self.grants, traceparent=self.trace_parent())
        return spec.to_wire()

    def _counted(self, child: Child, cycle: int) -> None:
        """A child's spending up to `cycle` is known: judge the team's budget, then let it go on (or not)."""
        self.limits.check_team_budget()
        if self.grants and self.shutdown.mode is None and child.running and child.intent is StopIntent.NONE:
            self._send(child, encode(Proceed(cycle=cycle)))

    # ---- agents working together ------------------------------------------------------------------

    def _deliver(self, name: str, message: Message) -> bool:
        """Mail or an answer for agent `name`: to its worker, or through its group; False if it has none now."""
        child = self.children.get(name)
        if child is not None and child.kind == AGENT:
            if not child.running or child.worker is None or not child.worker.pipe_open:
                return False
            self._send(child, encode(message))
            return True
        group = self.group_of(name)
        if group is None or not group.running or group.worker is None or not group.worker.pipe_open:
            return False
        self._send(group, encode(addressed(message, name)))
        return True

    def _pass_down(self, message: Message) -> None:
        """A group's side: the root's mail for one of our agents, to its worker as its own."""
        name = str(getattr(message, "agent", ""))
        child = self.children.get(name)
        if child is not None and child.kind == AGENT and child.running and child.worker is not None and child.worker.pipe_open:
            self._send(child, encode(addressed(message, "")))

    def group_of(self, name: str) -> Optional[Child]:
        """The group whose process runs agent `name`; None for the team's own agents."""
        for group_name, names in self.speaks_for.items():
            if name in names and name != group_name:
                return self.children.get(group_name)
        return None

    def _release(self, name: str) -> None:
        """Every agent that `name` starts after has completed: start it (or have its group start it)."""
        child = self.children.get(name)
        if child is not None and child.kind == AGENT:
            if child.phase is Phase.HELD:
                child.status = "starting"
                self._start(child)
            return
        group = self.group_of(name)
        if group is not None and group.running:
            self._send(group, encode(StartAgents(agents=[name])))
        # A group not running now is told in its spec when it starts again.

    def _member_event(self, name: str, event: str, fields: dict[str, Any]) -> None:
        """A group's agent exited: its mail waits for its next worker; its completion may release others."""
        if event == "worker_exited":
            self.mail.gone(name)
            self.slots.gone(name)
            if fields.get("status") == COMPLETED:
                self.start_order.agent_completed(name, stopping=self.shutdown.mode is not None)

    # ---- a child's pipe -------------------------------------------------------------------------

    def _send(self, child: Child, frame: bytes) -> None:
        child.process.send_frame(frame)
        self._watch_writes(child)

    def _on_pipe(self, child: Child, worker: ChildProcess, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            worker.flush()
        if mask & selectors.EVENT_READ:
            self._read(child)
        self._watch_writes(child)

    def _watch_writes(self, child: Child) -> None:
        worker = child.worker
        if worker is None or not worker.pipe_open or not self.reactor.watching(worker.sock):
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if worker.outbox else 0)
        self.reactor.modify(worker.sock, lambda mask: self._on_pipe(child, worker, mask), events)

    def _read(self, child: Child, *, last: bool = False) -> None:
        """One pass over a child's pipe: a bounded share, unless these are its last words."""
        worker = child.process
        try:
            messages = worker.receive(max_bytes=LAST_WORDS_BYTES if last else READ_SHARE_BYTES)
        except ProtocolError as exc:
            self._protocol_failure(child, str(exc))
            return
        received_at = time.time()
        if messages:
            self._expect_beat(child)
            now = time.monotonic()
            if child.rate.count(len(messages), now) > MAX_MESSAGES_PER_SECOND:
                self._protocol_failure(child, f"flooding: more than {MAX_MESSAGES_PER_SECOND} messages a second")
                return
            if child.rate.keeps_ahead(len(messages), now):
                self._protocol_failure(child, f"flooding: {BACKLOG_READ} messages or more waiting at every read "
                                              f"for {now - child.rate.backlog_since:.1f} s")
                return
        for message in messages:
            if child.broke_protocol:
                break  # nothing more from a child that broke the protocol is believed
            self.handlers.dispatch(child, message, received_at)
        if not worker.pipe_open:
            self._close_pipe(child)

    def _close_pipe(self, child: Child) -> None:
        """Stop watching a child's pipe; safe to call more than once."""
        worker = child.process
        worker.pipe_open = False
        self.reactor.unwatch(worker.sock)

    def _protocol_failure(self, child: Child, problem: str) -> None:
        """A child that breaks the protocol cannot be trusted: stop it, keep its checkpoints."""
        self.log.emit("protocol_error", level="error", agent_id=child.name, error=problem)
        child.failure = f"protocol error: {problem}"
        self._close_pipe(child)
        self.reactor.cancel(f"hang:{child.name}")
        child.process.kill_tree()

    # ---- liveness ---------------------------------------------------------------------------------

    def _expect_beat(self, child: Child) -> None:
        """Any message is a sign of life; silence for the child's hang_timeout is a hang.

        The hang timer is set once and not moved by each message (a timer pushed per read was
        1000 pushes a second from a 1000-agent team's heartbeats alone): when it fires, a child
        heard from since is given a timer at its new deadline instead.
        """
        child.last_heartbeat = time.monotonic()
        timer = f"hang:{child.name}"
        if self.reactor.when(timer) is None and child.running and not child.killed and child.failure is None:
            self.reactor.at(timer, child.last_heartbeat + self.hang_timeouts[child.name], lambda: self._hung(child))

    def _hung(self, child: Child) -> None:
        """A worker silent for its hang_timeout is killed, process group and all, and fails."""
        if not child.running or child.killed or child.failure is not None:
            return
        due = child.last_heartbeat + self.hang_timeouts[child.name]
        if due > time.monotonic():  # heard from since the timer was set: not silent long enough yet
            self.reactor.at(f"hang:{child.name}", due, lambda: self._hung(child))
            return
        silent = time.monotonic() - child.last_heartbeat
        child.failure = f"hung: no heartbeat for {silent:.1f}s (hang_timeout {self.hang_timeouts[child.name]:g}s)"
        self.log.emit("worker_hung", level="error", agent_id=child.name, pid=child.pid, silent_s=round(silent, 3))
        child.process.kill_tree()

    # ---- exits ----------------------------------------------------------------------------------------

    def _reap(self, child: Child) -> None:
        worker = child.process
        self._forkserver_died()
        if worker.pipe_open:  # the last words may still sit in the pipe
            self._read(child, last=True)
        self.reactor.unwatch(worker.sentinel)
        self._close_pipe(child)
        for timer in ("hang", "kill"):
            self.reactor.cancel(f"{timer}:{child.name}")
        exitcode = worker.exitcode()
        lost = self.backend.lost(worker, said_last_word=child.stopped is not None)
        if lost:
            self._forkserver_died()  # it may have been dying as its status pipes closed: reap it, start the next
        if lost and child.stopped is None and child.failure is None:
            child.failure = self.backend.lost_reason(worker)
        status, reason = classify_exit(child.stopped, child.failure, child.killed, child.intent, exitcode)
        child.phase, child.status = Phase.EXITED, status
        if status == FAILED:
            child.failure = reason
        budget = {"budget_spent_usd": child.stopped.budget_spent_usd} if child.stopped is not None else {}
        self.log.emit(
            f"{child.process_noun}_exited",
            level="error" if status == FAILED else "info",
            agent_id=child.name,
            pid=worker.pid or None,  # None: its actor never started it (Ray)
            exitcode=exitcode,
            status=status,
            reason=reason,
            **budget,
        )
        if child.kind == GROUP:
            for name in self.speaks_for[child.name]:
                member = self.members.get(name)
                if member is not None and member.status not in (COMPLETED, FAILED, INTERRUPTED):
                    member.status = status  # the group died before its agent said its last word
        worker.close()
        self._bury(worker)
        for name in ([child.name] if child.kind == AGENT else self.speaks_for[child.name]):
            self.slots.gone(name)  # the slots its calls held are free for the next in line
            self.mail.gone(name)
        self.restarts.after_exit(child, status, charged=not lost)  # the forkserver's death is not the agent's
        if child.kind == AGENT and status == COMPLETED:
            self.start_order.agent_completed(child.name, stopping=self.shutdown.mode is not None)

    def _bury(self, worker: ChildProcess) -> None:
        """A worker's tools die with it: its process group, then any orphan it left.

        In an immediate stop the orphans wait for the one scan as the run ends
        (within the stop's deadline): a scan reads all of /proc, and the person
        waiting for the terminal should not pay for more than one.
        """
        self.backend.bury(worker)
        if self.reaper is not None:  # one scan of the machine for the exits of a moment, not one per exit
            self.reaper.sweep_soon()
            if self.shutdown.mode == IMMEDIATE:
                return
            when = self.reaper.next_scan_at()
            if when is not None and self.reactor.when("sweep") is None:
                self.reactor.at("sweep", when, self._sweep)

    def _sweep(self) -> None:
        if self.reaper is not None:
            self.reaper.sweep_if_due()

    def _reap_stragglers(self) -> None:
        """The kernel never reported these exits after SIGKILL: say so rather than hang."""
        for child in self.children.values():
            if child.phase in (Phase.RUNNING, Phase.STOPPED):
                child.failure = "did not exit after SIGKILL"
                self._reap(child)

    # ---- orders from outside ----------------------------------------------------------------------------

    def _signals_first(self) -> None:
        """A signal taken in the middle of a pass is acted on there, not after every other pipe's share.

        A pass reads up to READ_SHARE_BYTES from each ready pipe. With 16 workers flooding theirs, a
        Ctrl+C was acted on 0.5-1.3 s after it came, at the pass's end; now 0.04-0.06 s.
        """
        if self.signals.pending:
            self._on_signals()

    def _on_signals(self) -> None:
        for signum in self.signals.drain():
            if signum == signal.SIGCHLD:
                self._forkserver_died()  # noticed at once, not at the next start
                if self.reaper is not None:
                    self.reaper.reap_dead()  # an adopted orphan died: reap it (no scan needed)
            else:
                self.shutdown.on_signal(signum)

    def _on_requests(self) -> None:
        """An embedding program's interrupts (supervisor.api): the whole team, or one agent."""
        if self.control is None:
            return
        for request in self.control.drain():
            if isinstance(request, InterruptRequest):
                self.shutdown.request(_order_of(request))
            else:
                self._on_program_request(request)

    def _on_program_request(self, request: AgentsRequest | ReloadRequest | AnswerRequest) -> None:
        """The program's start, restart, reload or answer: the operator's semantics, source PROGRAMMATIC."""
        desk = self.desk
        if isinstance(request, AnswerRequest):
            if desk is None:
                request.done.set_exception(RuntimeError("this run takes no answers: it has no control desk"))
            else:
                desk.answer_for_program(request.agent, request.text, request.done)
            return
        try:
            if desk is None or self.shutdown.mode is not None:
                raise RuntimeError("the team is stopping: nothing is started")
            if isinstance(request, ReloadRequest):
                request.done.set_result(desk.apply_config(request.config, "(program)", PROGRAMMATIC, "program"))
            elif request.command == "restart":
                desk.restart_agents(list(request.agents), "Program requested restart", PROGRAMMATIC, "program")
                request.done.set_result(None)
            else:
                for name in request.agents:
                    desk.start_agent(name)
                request.done.set_result(None)
        except (UserError, RuntimeError) as exc:
            request.done.set_exception(exc)

    def _orphaned(self) -> None:
        """The parent is gone: nobody is left to report to, so nothing may outlive us."""
        self.shutdown.mode = IMMEDIATE  # nothing restarts
        self.shutdown.kill_all()

    # ---- the end -------------------------------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """One row per agent of the tree, in config order (a group's agents from its events)."""
        by_name = {**{c.name: c for c in self.children.values() if c.kind == AGENT}, **self.members}
        return [by_name[a.name].row() for a in self.config.all_agents()]

    def status(self) -> dict[str, Any]:
        """A snapshot for the embedding program: the stop in progress and one row per agent."""
        return {"team": self.config.team, "stopping": self.shutdown.mode, "agents": self.rows()}

    def _finish(self) -> Outcome:
        if self.uplink is None:
            self._report_never_started()
        children = list(self.children.values())
        if any(c.status == FAILED for c in children) or (self.out_of_resources and self.shutdown.interrupts):
            status, code = FAILED, 3
        elif self.log.failure is not None:
            status, code = INTERRUPTED if self.shutdown.interrupts else COMPLETED, 3
        elif self.shutdown.forced:
            status, code = INTERRUPTED, 1
        elif all(c.status == COMPLETED for c in children):
            status, code = COMPLETED, 0
        else:
            status, code = INTERRUPTED, 0
        counts = self.shutdown.counts()
        self.log.emit(
            f"{self.lifecycle}_stopped",
            level="error" if status == FAILED else "info",
            agent_id=self.config.team,
            status=status,
            exit_code=code,
            duration_s=round(time.monotonic() - self.started_at, 3),
            failed=[c.name for c in children if c.status == FAILED],
            **{f"{k}_interrupts": v for k, v in counts.items()},
        )
        if self.uplink is not None:
            self.uplink.report(status, children, counts)
        return Outcome(status, code, self.rows(), counts, self.shutdown.shown(), self.log.failure)


    def _report_never_started(self) -> None:
        """Agents whose `after` agents never completed this run: said once, by the root."""
        for name, missing in self.start_order.never_started().items():
            record = self.children.get(name) or self.members.get(name)
            if record is not None and record.phase in (Phase.HELD, Phase.PENDING):
                record.status = NOT_STARTED
            self.log.emit("agent_not_started", level="warning", agent_id=name, after=missing)


def _order_of(request: InterruptRequest) -> StopOrder:
    agents = (request.agent,) if request.agent is not None else ()
    return StopOrder(request.mode, PROGRAMMATIC, request.message, "program", agents=agents)

