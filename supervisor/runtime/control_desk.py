"""What each operator request does to the live run: status, stop, start, restart, reload, answer.

Every stop goes through the one stop path (`Shutdown.request`) as a Ctrl+C
aimed at some agents: source USER, trigger "operator", the command in its
message; an agent stopped so is never restarted by its policy. `start` brings
an exited agent back from its latest checkpoint; an agent of a group is reached
through its group. A request that waits (the default) is answered once each
agent has exited or is ready again, or when its deadline passes (code LATE).
An answer is taken only by an agent waiting for one, and confirmed once the
agent's checkpoint holds it.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from protocol import GRACEFUL, IMMEDIATE, USER, WAITING_FOR_PERSON, Answer, Message, StartAgents, encode
from protocol.control import DONE, LATE, REFUSED, AnswerQuestion, Reload, Reply, Restart, Start, Status, Stop, Watch
from supervisor.config import AGENT, TeamConfig, load_config
from supervisor.errors import SupervisorError, UserError
from supervisor.runtime.children import Child, Phase
from supervisor.runtime.control_server import Client, ControlServer
from supervisor.runtime.shutdown import StopOrder

if TYPE_CHECKING:
    from supervisor.runtime.arbiter import Arbiter

START_GRACE = 10.0  # seconds beyond an agent's hang_timeout for its worker to say it is ready
ANSWER_DEADLINE = 30.0  # seconds for an agent to save the answer it was given
ANSWERING = "answering"  # an answer is on its way to the agent: a second one is refused
EXIT_GRACE = 5.0  # seconds beyond the stop's own deadlines for the kernel to report the exit


@dataclass
class Wait:
    """Someone waiting for agents to exit (`stop`), be ready again (`start`, `restart`) or save an answer.

    An operator's `client`, or a program's `done` future (which gets None, or
    the UserError saying why not).
    """

    client: Optional[Client]
    command: str
    names: list[str]
    deadline: float
    readies: dict[str, int] = field(default_factory=dict)  # for starts: each agent's ready count before
    done: "Optional[Future[Any]]" = None


class ControlDesk:
    def __init__(self, arbiter: "Arbiter", server: ControlServer) -> None:
        self.arbiter = arbiter
        self.server = server
        self.waits: list[Wait] = []
        self.pending_starts: set[str] = set()  # restarted agents: started once their stop has ended
        arbiter.reactor.after_each_tick(self._check)

    # ---- one request ---------------------------------------------------------------------

    def serve(self, client: Client, request: Message) -> None:
        agents = list(getattr(request, "agents", []))
        self.arbiter.log.emit("control_request", agent_id=self.arbiter.config.team, command=request.type,
                              agents=agents, peer_pid=client.pid)
        handlers: dict[type, Callable[[Client, Any], None]] = {
            Status: self.status, Stop: self.stop, Start: self.start, Restart: self.restart, Reload: self.reload,
            AnswerQuestion: self.answer, Watch: self.watch,
        }
        known_now = {agent.name for agent in self.arbiter.config.all_agents()}
        unknown = [name for name in agents if name not in known_now or self._record(name) is None]
        if unknown:
            known = ", ".join(a.name for a in self.arbiter.config.all_agents())
            self._answer(client, REFUSED, f"no agent {unknown[0]!r} in team {self.arbiter.config.team!r} "
                                          f"(agents: {known})")
            return
        handlers[type(request)](client, request)

    def status(self, client: Client, request: Status) -> None:
        self._answer(client, DONE, "", self.snapshot())

    def watch(self, client: Client, request: Watch) -> None:
        self.server.reply(client, Reply(code=DONE, message="watching", data={"team": self.arbiter.config.team}),
                          keep_open=True)
        for event in self.server.replay():
            self.server.publish_to(client, event)

    def stop(self, client: Client, request: Stop) -> None:
        names = _unique(request.agents)
        if self.arbiter.shutdown.mode is not None:
            self._answer(client, DONE, "the team is already stopping: those agents stop with it", self._rows(names))
            return
        words = "immediate" if request.mode == IMMEDIATE else "graceful"
        self._stop(names, request.mode, f"Operator requested {words} stop ({request.command or 'stop'})")
        if not request.wait:
            self._answer(client, DONE, "stop requested", self._rows(names))
            return
        self._wait(Wait(client, "stop", names, time.monotonic() + self.arbiter.shutdown.grace(request.mode) + EXIT_GRACE))

    def _refused(self, client: Client, names: list[str], what: str) -> bool:
        """Answer a start or restart that cannot be carried out (the team stops, an agent is unreachable)."""
        problem = (f"the team is stopping: nothing is {what}" if self.arbiter.shutdown.mode is not None
                   else self._unreachable(names))
        if problem:
            self._answer(client, REFUSED, problem)
        return bool(problem)

    def start(self, client: Client, request: Start) -> None:
        names = _unique(request.agents)
        if self._refused(client, names, "started"):
            return
        before = {name: self._readies(name) for name in names}
        starting = [name for name in names if self.start_agent(name)]
        if not request.wait or not starting:
            self._answer(client, DONE, "start requested" if starting else "already running", self._rows(names))
            return
        self._wait(Wait(client, "start", starting, self._start_deadline(starting), {n: before[n] for n in starting}))

    def restart(self, client: Client, request: Restart) -> None:
        names = _unique(request.agents)
        if self._refused(client, names, "restarted"):
            return
        before = {name: self._readies(name) for name in names}
        self.restart_agents(names, f"Operator requested restart ({request.command or 'restart'})")
        if not request.wait:
            self._answer(client, DONE, "restart requested", self._rows(names))
            return
        shutdown = self.arbiter.config.shutdown
        deadline = self._start_deadline(names) + shutdown.graceful_timeout + shutdown.immediate_timeout
        self._wait(Wait(client, "start", names, deadline, before))

    def reload(self, client: Client, request: Reload) -> None:
        if self.arbiter.shutdown.mode is not None:
            self._answer(client, REFUSED, "the team is stopping: nothing is reloaded")
            return
        try:
            new = load_config(request.config)
            added, removed, changed = self.apply_config(new, f"({request.command or 'reload'})", USER, "operator")
        except UserError as exc:
            self._answer(client, REFUSED, str(exc))
            return
        message = "nothing changed" if not (added or removed or changed) else "; ".join(
            f"{what}: {', '.join(names)}" for what, names in (("added", added), ("removed", removed),
                                                              ("changed", changed)) if names)
        self._answer(client, DONE, message, {"added": added, "removed": removed, "changed": changed})

    def answer(self, client: Client, request: AnswerQuestion) -> None:
        name = request.agents[0]
        problem = self.give_answer(name, request.text)
        if problem:
            self._answer(client, REFUSED, problem)
            return
        self._wait(Wait(client, "answer", [name], time.monotonic() + ANSWER_DEADLINE, {name: self._answers(name)}))

    def answer_for_program(self, name: str, text: str, done: "Future[Any]") -> None:
        problem = self.give_answer(name, text)
        if problem:
            done.set_exception(UserError(problem))
            return
        self._wait(Wait(None, "answer", [name], time.monotonic() + ANSWER_DEADLINE, {name: self._answers(name)}, done))

    def give_answer(self, name: str, text: str) -> Optional[str]:
        """Hand a person's answer to the agent waiting for one; or why it cannot be given, in one line."""
        record = self._record(name)
        if record is None:
            return f"no agent {name!r} in team {self.arbiter.config.team!r}"
        if record.waiting == ANSWERING:
            return f"agent {name} is already being given an answer"
        if record.waiting != WAITING_FOR_PERSON:
            doing = _activity(record)
            return f"agent {name} is not waiting for an answer (it is {doing})"
        if not self.arbiter._deliver(name, Answer(text=text)):
            return f"agent {name} has no running worker to answer"
        record.waiting = ANSWERING
        return None

    def apply_config(self, new: TeamConfig, why: str, source: str, trigger: str) -> tuple[list[str], list[str], list[str]]:
        """Apply a reloaded config: new agents start, removed ones stop gracefully, changed ones restart.

        Agents whose settings are the same are not touched. Raises UserError, changing nothing, for what
        cannot change in a live run (`team`, `storage`, the event files' rotation, metrics, traces, groups).
        """
        arbiter = self.arbiter
        old = arbiter.config
        for key in ("team", "storage", "events", "metrics", "traces"):
            if getattr(new, key) != getattr(old, key):
                raise UserError(f"{new.source}: `{key}` cannot change in a live run "
                                f"({getattr(old, key)} -> {getattr(new, key)}); stop the run first")
        if [g.name for g in new.groups] != [g.name for g in old.groups] or any(
            new.group_config(g.name).to_spec() != old.group_config(g.name).to_spec() for g in old.groups
        ):
            raise UserError(f"{new.source}: groups cannot change in a live run yet; stop the run first")
        before, after = _own_agents(old), _own_agents(new)
        added = [name for name in after if name not in before]
        removed = [name for name in before if name not in after]
        changed = [name for name in after if name in before and after[name] != before[name]]
        arbiter.adopt_config(new)
        for name in removed:
            self._stop([name], GRACEFUL, f"Reload removed agent {name} {why}", source, trigger)
        if changed:
            self.restart_agents(changed, f"Reload changed agent settings {why}", source, trigger)
        for name in added:
            needs = list(new.agent(name).after)
            if arbiter.start_order.added(name, needs):
                child = arbiter.children[name]
                child.phase, child.status = Phase.HELD, "held"
                arbiter.log.emit("agent_held", agent_id=name, after=needs)
            else:
                self.start_agent(name)
        arbiter.log.emit("config_reloaded", agent_id=old.team, added=added, removed=removed, changed=changed,
                         config=str(new.source))
        return added, removed, changed

    # ---- acting on agents -------------------------------------------------------------------

    def _stop(self, names: list[str], mode: str, message: str, source: str = USER, trigger: str = "operator") -> None:
        self.arbiter.shutdown.request(StopOrder(mode, source, message, trigger, agents=tuple(names)))

    def restart_agents(self, names: list[str], message: str, source: str = USER, trigger: str = "operator") -> None:
        """A graceful stop of those running; each starts again once it has exited."""
        running = [name for name in names if not self._exited(name)]
        if running:
            self._stop(running, GRACEFUL, message, source, trigger)
        self.pending_starts.update(running)
        for name in names:
            if name not in running:
                self.start_agent(name)

    def start_agent(self, name: str) -> bool:
        """Start an exited agent from its checkpoint; False when it is not exited (running, or to restart)."""
        arbiter = self.arbiter
        child = arbiter.children.get(name)
        if child is not None and child.kind == AGENT:
            return arbiter.start_again(child)
        group = self._group_of(name)
        member = arbiter.members.get(name)
        if group is None or member is None or not group.running or member.phase is not Phase.EXITED:
            return False
        arbiter._send(group, encode(StartAgents(agents=[name])))
        member.phase = Phase.PENDING  # until the group says it started
        return True

    def _unreachable(self, names: list[str]) -> Optional[str]:
        """Why an agent of a group cannot be started now: its group is not running."""
        for name in names:
            group = self._group_of(name)
            if group is not None and not group.running:
                return f"agent {name}: its group {group.name} is not running"
        return None

    # ---- waiting ------------------------------------------------------------------------------

    def _wait(self, wait: Wait) -> None:
        self.waits.append(wait)
        self._check()

    def _check(self) -> None:
        """After each pass of the loop: start what has finished stopping, answer who has what they waited for."""
        stopping = self.arbiter.shutdown.mode is not None
        for name in list(self.pending_starts):
            if stopping:
                self.pending_starts.discard(name)
            elif self._exited(name):
                self.pending_starts.discard(name)
                self.start_agent(name)
        now = time.monotonic()
        for wait in list(self.waits):
            if wait.client is not None and wait.client.closed:
                self.waits.remove(wait)
                continue
            if wait.command == "answer":
                self._check_answer(wait, now)
                continue
            if wait.command == "stop":
                done = all(self._exited(name) for name in wait.names)
            else:
                done = all(self._readies(name) > wait.readies.get(name, 0) for name in wait.names)
            if done:
                self.waits.remove(wait)
                late = wait.command == "stop" and any(self._killed(name) for name in wait.names)
                self._reply(wait, LATE if late else DONE,
                            "killed after its deadline" if late else f"{'stopped' if wait.command == 'stop' else 'started'}")
            elif stopping and wait.command != "stop":
                self.waits.remove(wait)
                self._reply(wait, LATE, "the team began stopping before the start completed")
            elif now > wait.deadline:
                self.waits.remove(wait)
                what = "stop" if wait.command == "stop" else "start"
                self._reply(wait, LATE, f"did not {what} within its deadline")

    def _check_answer(self, wait: Wait, now: float) -> None:
        """Answered once the agent's checkpoint holds the answer; not if its wait ended another way."""
        name = wait.names[0]
        record = self._record(name)
        if record is not None and record.answers > wait.readies[name]:
            self.waits.remove(wait)
            self._reply(wait, DONE, "answered")
        elif record is None or record.waiting != ANSWERING or now > wait.deadline:
            self.waits.remove(wait)
            if record is not None and record.waiting == ANSWERING:
                record.waiting = WAITING_FOR_PERSON  # it never said it saved the answer: it may be given again
            self._reply(wait, LATE, f"agent {name} stopped waiting before its answer was saved")

    def _reply(self, wait: Wait, code: int, message: str) -> None:
        if wait.client is not None:
            self._answer(wait.client, code, message, self._rows(wait.names))
        elif wait.done is not None and not wait.done.done():
            if code == DONE:
                wait.done.set_result(None)
            else:
                wait.done.set_exception(SupervisorError(message, code))

    def _start_deadline(self, names: list[str]) -> float:
        config = self.arbiter.config
        hang = max((config.hang_timeout_of(n) if self.arbiter.children.get(n) else config.hang_timeout) for n in names)
        return time.monotonic() + hang + START_GRACE

    # ---- what the run knows of an agent ---------------------------------------------------------

    def _record(self, name: str) -> Optional[Child]:
        child = self.arbiter.children.get(name)
        if child is not None and child.kind == AGENT:
            return child
        return self.arbiter.members.get(name)

    def _group_of(self, name: str) -> Optional[Child]:
        return self.arbiter.group_of(name)

    def _exited(self, name: str) -> bool:
        record = self._record(name)
        if record is None or record.phase is Phase.EXITED:
            return True
        group = self._group_of(name)
        return group is not None and group.phase is Phase.EXITED  # a group's agents end with it

    def _killed(self, name: str) -> bool:
        record = self._record(name)
        return record is not None and record.killed

    def _answers(self, name: str) -> int:
        record = self._record(name)
        return record.answers if record is not None else 0

    def _readies(self, name: str) -> int:
        record = self._record(name)
        return record.readies if record is not None else 0

    def _rows(self, names: list[str]) -> dict[str, Any]:
        rows = {row["agent"]: row for row in self.snapshot()["agents"]}
        return {"agents": [rows[name] for name in names if name in rows]}

    def snapshot(self) -> dict[str, Any]:
        """The run's own view: each agent's cycle, what it is doing now, and its last event."""
        arbiter = self.arbiter
        rows = []
        for row in arbiter.rows():
            record = self._record(row["agent"])
            last = self.server.last_by_agent.get(row["agent"])
            rows.append({**row, "now": _activity(record) if record is not None else row["status"],
                         "last_event": {"event": last.get("event"), "timestamp": last.get("timestamp")} if last else None})
        return {"team": arbiter.config.team, "pid": arbiter.pid, "stopping": arbiter.shutdown.mode, "agents": rows}

    def _answer(self, client: Client, code: int, message: str, data: Optional[dict[str, Any]] = None) -> None:
        self.server.reply(client, Reply(code=code, message=message, data=data or {}))


def _activity(child: Child) -> str:
    """What an agent is doing now, in words."""
    if child.phase is Phase.RUNNING:
        if child.waiting == WAITING_FOR_PERSON or child.waiting == ANSWERING:
            return f"waiting for an answer: {child.question}"
        if child.waiting:
            return "waiting for a message"
        return f"cycle {child.cycle + 1} in flight" if child.cycle < child.max_cycles else "finishing"
    if child.phase is Phase.STOPPED:
        return "stopping"
    if child.phase is Phase.RESTARTING:
        return "waiting to restart"
    if child.phase is Phase.PENDING:
        return "starting"
    if child.phase is Phase.HELD:
        return "held until its `after` agents complete"
    return child.status


def _own_agents(config: TeamConfig) -> dict[str, Any]:
    """The team's own agents and everything a worker or the loop reads of each: a change restarts it."""
    return {
        agent.name: (config.agent_spec(agent.name), config.restart_policy(agent.name), config.hang_timeout_of(agent.name),
                     agent.timeout)
        for agent in config.agents
    }


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))

