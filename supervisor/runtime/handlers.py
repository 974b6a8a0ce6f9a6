"""What the supervisor does with each message a child sends: one small handler per type.

An agent's worker reports its life (ready, cycles, checkpoints, acks, its last
word, errors, a few kinds of event); a group reports through events, which are
the supervisor's own one level down. Anything else breaks the protocol, and a
child that breaks it is stopped: nothing more it says is believed.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from protocol import (
    FAILED,
    RUNNING,
    WAITING_FOR_MESSAGE,
    WAITING_FOR_PERSON,
    Ack,
    Answered,
    CheckpointSaved,
    CycleDone,
    Error,
    Event,
    Heartbeat,
    Holding,
    Message,
    Post,
    Ready,
    SlotRelease,
    SlotRequest,
    Stopped,
    StopRequest,
    Waiting,
)
from supervisor.config import AGENT, GROUP
from supervisor.runtime.children import Child, Phase
from supervisor.runtime.events import EventWriter
from supervisor.runtime.mail import MailRoute
from supervisor.runtime.shutdown import Shutdown
from supervisor.runtime.slots import SlotRoute

RESERVED_FIELDS = frozenset({"timestamp", "level", "event", "agent_id"})
# Logged under their own name; any other event a worker reports is logged as worker_event.
WORKER_EVENTS = frozenset({"checkpoint_corrupt", "checkpoint_temp_removed", "llm_retry", "hook_failed", "hook_timeout"})

Handler = Callable[[Child, Any, float], None]


class MessageHandlers:
    def __init__(
        self,
        log: EventWriter,
        shutdown: Shutdown,
        members: dict[str, Child],
        speaks_for: dict[str, set[str]],
        on_spending: Callable[[], None],
        on_counted: Callable[[Child, int], None],
        on_stop_request: Callable[[Child, str], None],
        protocol_failure: Callable[[Child, str], None],
        mail: MailRoute,
        on_member_event: Callable[[str, str, dict[str, Any]], None],
        slots: SlotRoute,
    ) -> None:
        self.log = log
        self.shutdown = shutdown
        self.members = members
        self.speaks_for = speaks_for
        self.on_spending = on_spending  # dollars were spent: the team's budget is checked
        self.on_counted = on_counted  # a child's cycles up to this one are counted: it may go on
        self.on_stop_request = on_stop_request
        self.protocol_failure = protocol_failure
        self.mail = mail
        self.on_member_event = on_member_event  # a group's agent started, exited, ...: mail and start order follow
        self.slots = slots  # model servers' concurrency caps: granted at the root, passed up by a group
        self.table: dict[str, dict[type, Handler]] = {
            AGENT: {
                Heartbeat: self.heartbeat,
                Ready: self.ready,
                StopRequest: self.stop_request,
                CycleDone: self.cycle_done,
                CheckpointSaved: self.checkpoint_saved,
                Ack: self.ack,
                Stopped: self.stopped,
                Error: self.error,
                Event: self.event,
                Post: self.post,
                Holding: self.holding,
                Waiting: self.waiting,
                Answered: self.answered,
                SlotRequest: self.slot_request,
                SlotRelease: self.slot_release,
            },
            GROUP: {  # a group reports through events; it has no cycles or checkpoints of its own
                Post: self.group_post,
                Holding: self.group_holding,
                SlotRequest: self.group_slot_request,
                SlotRelease: self.group_slot_release,
                Heartbeat: self.heartbeat,
                Ack: self.ack,
                Stopped: self.stopped,
                Error: self.error,
                Event: self.group_event,
            },
        }

    def dispatch(self, child: Child, message: Message, received_at: float) -> None:
        handler = self.table[child.kind].get(type(message))
        if handler is None:  # Start and Interrupt travel the other way only
            self.protocol_failure(child, f"unexpected {message.type} message from {child.kind}")
            return
        handler(child, message, received_at)

    # ---- an agent's worker ------------------------------------------------------------

    def heartbeat(self, child: Child, beat: Heartbeat, received_at: float) -> None:
        return None  # liveness is the arrival itself

    def ready(self, child: Child, ready: Ready, received_at: float) -> None:
        child.cycle = ready.cycle
        child.status = ready.status
        child.checkpoint_id = ready.checkpoint_id
        child.pid = ready.pid
        child.budget_spent_usd = ready.budget_spent_usd  # what its checkpoint says was spent before
        child.readies += 1
        self.log.emit(
            "worker_started",
            agent_id=child.name,
            pid=ready.pid,
            cycle=ready.cycle,
            max_cycles=ready.max_cycles,
            status=ready.status,
            resumed=ready.resumed,
            budget_spent_usd=ready.budget_spent_usd,
            startup_ms=round((time.monotonic() - child.process.started_at) * 1000.0, 3),
            **_where(child),
        )
        self.on_counted(child, ready.cycle)

    def cycle_done(self, child: Child, done: CycleDone, received_at: float) -> None:
        child.cycle = done.cycle
        child.budget_spent_usd += done.cost_usd or 0.0
        known: dict[str, Any] = {"tokens": done.tokens, "cost_usd": done.cost_usd, "model_ms": done.model_ms,
                                 "queued_ms": round(done.queued_ms, 3) if done.queued_ms is not None else None}
        self.log.emit(
            "cycle_completed",
            agent_id=child.name,
            cycle=done.cycle,
            max_cycles=child.max_cycles,
            duration_ms=round(done.duration_ms, 3),
            **{key: value for key, value in known.items() if value is not None},
            reply=done.reply,
        )
        self.on_counted(child, done.cycle)

    def checkpoint_saved(self, child: Child, saved: CheckpointSaved, received_at: float) -> None:
        child.checkpoint_id = saved.checkpoint_id
        self.log.emit(
            "checkpoint_saved",
            agent_id=child.name,
            checkpoint_id=saved.checkpoint_id,
            cycle=saved.cycle,
            status=saved.status,
            bytes=saved.bytes,
            duration_ms=round(saved.duration_ms, 3),
            durable_at=round(saved.durable_at, 6),  # the worker's clock: when the save was complete on disk
        )

    def stop_request(self, child: Child, request: StopRequest, received_at: float) -> None:
        """The agent asks for its own stop (its budget, its own decision): an interrupt for it alone."""
        self.on_stop_request(child, request.message)

    def error(self, child: Child, error: Error, received_at: float) -> None:
        if error.fatal:
            child.failure = f"{error.kind}: {error.message}"
        self.log.emit("worker_error", level="error", agent_id=child.name, kind=error.kind, message=error.message,
                      fatal=error.fatal)

    def event(self, child: Child, event: Event, received_at: float) -> None:
        """Workers may report only their own kinds of event; they cannot forge the supervisor's."""
        fields = {k: v for k, v in event.fields.items() if k not in RESERVED_FIELDS}
        level = _level(event)
        if event.event in WORKER_EVENTS:
            self.log.emit(event.event, level=level, agent_id=child.name, **fields)
        else:
            self.log.emit("worker_event", level=level, agent_id=child.name, name=event.event, **fields)

    # ---- working together ------------------------------------------------------------------

    def post(self, child: Child, post: Post, received_at: float) -> None:
        """A message durable in the agent's checkpoint: on its way (a worker cannot claim another sender)."""
        self.mail.post(child.name, post)

    def holding(self, child: Child, holding: Holding, received_at: float) -> None:
        self.mail.holding(child.name, holding)

    def waiting(self, child: Child, waiting: Waiting, received_at: float) -> None:
        """The agent waits for a message or a person, or no longer does."""
        was = child.waiting
        child.waiting, child.question = waiting.what, waiting.question if waiting.what == WAITING_FOR_PERSON else ""
        if waiting.what == WAITING_FOR_PERSON:
            self.log.emit("question_asked", agent_id=child.name, question=waiting.question)
        elif waiting.what == WAITING_FOR_MESSAGE:
            self.log.emit("agent_waiting", agent_id=child.name, **{"for": WAITING_FOR_MESSAGE})
        elif was:
            self.log.emit("wait_ended", agent_id=child.name, **{"for": was}, outcome=waiting.outcome or "ended")

    def answered(self, child: Child, answered: Answered, received_at: float) -> None:
        """A person's answer is durable in the agent's checkpoint."""
        child.waiting = child.question = ""
        child.answers += 1
        self.log.emit("question_answered", agent_id=child.name, question=answered.question, answer=answered.answer)

    def group_post(self, child: Child, post: Post, received_at: float) -> None:
        if self._speaks_for_agent(child, post.sender, "post"):
            self.mail.post(post.sender, post)

    def group_holding(self, child: Child, holding: Holding, received_at: float) -> None:
        if self._speaks_for_agent(child, holding.agent, "holding"):
            self.mail.holding(holding.agent, holding)

    def slot_request(self, child: Child, request: SlotRequest, received_at: float) -> None:
        """A call to a capped model server waits for a slot (a worker cannot ask in another agent's name)."""
        self.slots.request(child.name, request)

    def slot_release(self, child: Child, release: SlotRelease, received_at: float) -> None:
        self.slots.release(child.name, release)

    def group_slot_request(self, child: Child, request: SlotRequest, received_at: float) -> None:
        if self._speaks_for_agent(child, request.agent, "slot request"):
            self.slots.request(request.agent, request)

    def group_slot_release(self, child: Child, release: SlotRelease, received_at: float) -> None:
        if self._speaks_for_agent(child, release.agent, "slot release"):
            self.slots.release(release.agent, release)

    def _speaks_for_agent(self, group: Child, agent: str, what: str) -> bool:
        if agent in self.speaks_for.get(group.name, ()) and agent != group.name:
            return True
        self.protocol_failure(group, f"group {what} for {agent!r}, not one of its agents")
        return False

    def ack(self, child: Child, ack: Ack, received_at: float) -> None:
        issued = self.shutdown.interrupts.get(ack.interrupt_id)
        if issued is None or child.name in issued.reached:
            return
        issued.reached.add(child.name)
        if child.kind == GROUP:
            return  # the group logs each of its agents' acks itself
        msg = issued.message
        self.log.emit(
            "interrupt_initiated",
            agent_id=child.name,
            source=msg.source,
            mode=msg.mode,
            message=msg.message,
            interrupt_id=issued.public_id,
            ack_ms=round((received_at - msg.issued_at) * 1000.0, 3),  # issue to the ack's arrival here
        )

    def stopped(self, child: Child, stopped: Stopped, received_at: float) -> None:
        child.said_last_word(stopped)
        child.status = stopped.status
        child.cycle = stopped.cycle
        child.checkpoint_id = stopped.checkpoint_id
        child.budget_spent_usd = stopped.budget_spent_usd
        if stopped.status == FAILED:
            child.failure = child.failure or stopped.reason
        issued = self.shutdown.interrupts.get(stopped.interrupt_id) if stopped.interrupt_id is not None else None
        if issued is None or child.kind != AGENT:  # a group's agents report their own stops
            return
        msg = issued.message
        latency = ((stopped.durable_at or time.time()) - msg.issued_at) * 1000.0
        self.log.emit(
            "interrupt_completed",
            agent_id=child.name,
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

    # ---- a group --------------------------------------------------------------------------

    def group_event(self, child: Child, event: Event, received_at: float) -> None:
        """A group's events are the supervisor's own, one level down: written as they come.

        A group speaks only for itself and its agents; a line about anyone else
        means the group is broken, and it is stopped like any protocol breaker.
        """
        agent_id = event.fields.get("agent_id")
        if agent_id not in self.speaks_for.get(child.name, ()):
            self.protocol_failure(child, f"group event {event.event!r} about {agent_id!r}, not one of its own")
            return
        fields = {k: v for k, v in event.fields.items() if k not in ("timestamp", "level", "event")}
        self.log.emit(event.event, level=_level(event), **fields)
        member = self.members.get(str(agent_id))
        if member is not None:
            track_member(member, event.event, fields)
            self.on_spending()
            self.on_member_event(member.name, event.event, fields)


def _level(event: Event) -> str:
    """A reported level we write as is; anything else is info."""
    return event.level if event.level in ("debug", "info", "warning", "error") else "info"


def track_member(member: Child, event: str, fields: dict[str, Any]) -> None:
    """Keep the root's row of a group's agent current from the group's events."""

    def number(key: str, default: float) -> float:
        value = fields.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default

    if event in ("worker_started", "cycle_completed", "checkpoint_saved", "interrupt_completed"):
        member.cycle = int(number("cycle", member.cycle))
    if event == "worker_started":
        member.status = str(fields.get("status") or RUNNING)
        member.phase = Phase.RUNNING
        member.readies += 1
        member.budget_spent_usd = number("budget_spent_usd", member.budget_spent_usd)
    elif event == "cycle_completed":
        member.budget_spent_usd += number("cost_usd", 0.0)
    elif event == "worker_exited":
        member.status = str(fields.get("status") or member.status)
        member.phase = Phase.EXITED
        member.budget_spent_usd = number("budget_spent_usd", member.budget_spent_usd)
    elif event == "worker_restarted":
        member.status = "restarting"
        member.phase = Phase.RUNNING
    elif event == "question_asked":
        member.waiting, member.question = WAITING_FOR_PERSON, str(fields.get("question") or "")
    elif event == "agent_waiting":
        member.waiting, member.question = WAITING_FOR_MESSAGE, ""
    elif event in ("wait_ended", "question_answered"):
        member.waiting = member.question = ""
        member.answers += event == "question_answered"
    if event in ("worker_started", "worker_exited"):
        member.waiting = member.question = ""
    if event in ("checkpoint_saved", "interrupt_completed") and isinstance(fields.get("checkpoint_id"), str):
        member.checkpoint_id = fields["checkpoint_id"]


def _where(child: Child) -> dict[str, Any]:
    """The Ray node a child runs on (`node`), for a child that has one; nothing on one machine."""
    node = getattr(child.process, "node", "")
    return {"node": node} if node else {}
