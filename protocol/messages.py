"""The messages between a supervisor and its workers, as plain data.

Every message is a frozen dataclass whose fields are msgpack-native types
(str, int, float, bool, None, list, dict), so a message is its own wire
schema: `to_wire` turns it into a map, `from_wire` rebuilds it and rejects
anything that does not match exactly. Nothing here knows about processes,
sockets or files.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional, Union

from protocol.errors import ProtocolError

PROTOCOL_VERSION = 1

# Interrupt vocabulary, shared with the reference example's metrics log.
GRACEFUL = "GRACEFUL"
IMMEDIATE = "IMMEDIATE"
MODES = (GRACEFUL, IMMEDIATE)
USER = "USER"
SYSTEM = "SYSTEM"
PROGRAMMATIC = "PROGRAMMATIC"
SOURCES = (USER, SYSTEM, PROGRAMMATIC)

# Agent status words, shared by checkpoints, events and the CLI.
RUNNING = "running"
INTERRUPTED = "interrupted"
COMPLETED = "completed"
FAILED = "failed"
STATUSES = (RUNNING, INTERRUPTED, COMPLETED, FAILED)

# What an agent can wait for: another agent's message, or a person's answer ("" : no longer waiting).
WAITING_FOR_MESSAGE = "message"
WAITING_FOR_PERSON = "person"
WAITS = ("", WAITING_FOR_MESSAGE, WAITING_FOR_PERSON)


@dataclass(frozen=True)
class Message:
    """Base class: subclasses set `type` and declare their fields."""

    type: ClassVar[str] = ""

    def to_wire(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["v"] = PROTOCOL_VERSION
        data["type"] = self.type
        return data


def addressed(message: Message, agent: str) -> Message:
    """The same message naming `agent` in its `agent` field (a group's relay reads it), or with it cleared."""
    if "agent" not in {f.name for f in dataclasses.fields(message)}:
        raise ProtocolError(f"{message.type} names no agent")
    return dataclasses.replace(message, agent=agent)  # type: ignore[call-arg]


def _check_mode_and_source(message: Any) -> None:
    """The interrupt vocabulary, for every message that carries a mode and a source."""
    if message.mode not in MODES:
        raise ProtocolError(f"{message.type} mode must be one of {MODES}, got {message.mode!r}")
    if message.source not in SOURCES:
        raise ProtocolError(f"{message.type} source must be one of {SOURCES}, got {message.source!r}")


# --- supervisor -> worker -------------------------------------------------


@dataclass(frozen=True)
class Start(Message):
    """The child spec a worker runs: plain data, so any engine can carry it."""

    type: ClassVar[str] = "start"
    agent: str
    spec: dict


@dataclass(frozen=True)
class Interrupt(Message):
    """Stop request: GRACEFUL finishes the cycle, IMMEDIATE cancels it."""

    type: ClassVar[str] = "interrupt"
    interrupt_id: int
    mode: str
    source: str
    message: str
    issued_at: float
    agents: list = field(default_factory=list)  # a group passes it to these of its agents only; empty: to all

    def __post_init__(self) -> None:
        _check_mode_and_source(self)


@dataclass(frozen=True)
class Proceed(Message):
    """The worker's cycles up to `cycle` are counted against the team's budget: it may start the next.

    Only a worker told in its Start to wait for it (a team with a budget) does;
    no grant comes once the budget is reached, and the interrupt follows instead.
    """

    type: ClassVar[str] = "proceed"
    cycle: int


@dataclass(frozen=True)
class Deliver(Message):
    """Another agent's message for this worker's agent, as durable in the sender's checkpoint.

    `seq` counts per (sender, receiver) from 1, so the receiver keeps each
    message once and in order, whatever is sent twice. `agent` names the
    receiver when a group passes the message on; empty on a worker's own pipe.
    """

    type: ClassVar[str] = "deliver"
    sender: str
    seq: int
    content: object
    agent: str = ""


@dataclass(frozen=True)
class Settled(Message):
    """`receiver` holds this agent's messages up to `seq` in a durable checkpoint: the outbox may forget them."""

    type: ClassVar[str] = "settled"
    receiver: str
    seq: int
    agent: str = ""


@dataclass(frozen=True)
class Answer(Message):
    """A person's answer to the question the agent is waiting on."""

    type: ClassVar[str] = "answer"
    text: str
    agent: str = ""


@dataclass(frozen=True)
class SlotGrant(Message):
    """The worker's request `request_id` holds a slot of its model server now: its call may go out.

    `agent` names the requester when a group passes the grant down; empty on a worker's own pipe.
    `server` is the server of the request's pool that the root chose (empty: the one it asked for).
    """

    type: ClassVar[str] = "slot_grant"
    request_id: int
    agent: str = ""
    server: str = ""


# --- worker -> supervisor -------------------------------------------------


@dataclass(frozen=True)
class Ack(Message):
    """The worker has seen an interrupt and is acting on it."""

    type: ClassVar[str] = "ack"
    interrupt_id: int
    received_at: float


@dataclass(frozen=True)
class Ready(Message):
    """The worker has loaded its state and is about to run (or is done)."""

    type: ClassVar[str] = "ready"
    agent: str
    pid: int
    cycle: int
    max_cycles: int
    status: str
    resumed: bool
    checkpoint_id: Optional[str] = None
    budget_spent_usd: float = 0.0  # spent by earlier runs, from the checkpoint: budgets count it


@dataclass(frozen=True)
class StopRequest(Message):
    """The agent asks to be stopped: its budget is spent, or it decided so itself.

    The supervisor answers with an Interrupt for this worker alone, so the stop
    is logged, counted and timed like any other, and nothing restarts it.
    """

    type: ClassVar[str] = "stop_request"
    mode: str
    source: str
    message: str

    def __post_init__(self) -> None:
        _check_mode_and_source(self)


@dataclass(frozen=True)
class CycleDone(Message):
    """One LLM call finished and its reply joined the conversation."""

    type: ClassVar[str] = "cycle_done"
    cycle: int
    duration_ms: float
    reply: str
    tokens: Optional[dict] = None
    cost_usd: Optional[float] = None
    model_ms: Optional[float] = None  # the model's own time, when the backend reports it
    queued_ms: Optional[float] = None  # time spent waiting for a model server's slot, when the server is capped


@dataclass(frozen=True)
class CheckpointSaved(Message):
    """A checkpoint is durable on disk (renamed and the folder fsynced)."""

    type: ClassVar[str] = "checkpoint_saved"
    checkpoint_id: str
    cycle: int
    status: str
    bytes: int
    duration_ms: float
    durable_at: float


@dataclass(frozen=True)
class Stopped(Message):
    """The worker's last word before it exits."""

    type: ClassVar[str] = "stopped"
    status: str
    cycle: int
    checkpoint_id: Optional[str]
    budget_spent_usd: float
    interrupt_id: Optional[int] = None
    durable_at: Optional[float] = None
    total_interrupts: int = 0
    graceful_interrupts: int = 0
    immediate_interrupts: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Error(Message):
    """Something went wrong in the worker; `fatal` means it is exiting."""

    type: ClassVar[str] = "error"
    kind: str
    message: str
    fatal: bool = False


@dataclass(frozen=True)
class Heartbeat(Message):
    """Liveness: sent periodically while a worker is alive."""

    type: ClassVar[str] = "heartbeat"
    sent_at: float


@dataclass(frozen=True)
class Event(Message):
    """A named event for the supervisor's stream (e.g. checkpoint_corrupt)."""

    type: ClassVar[str] = "event"
    event: str
    level: str = "info"
    fields: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Post(Message):
    """A message the agent sent, now durable in its checkpoint's outbox: route it to `to`.

    `replay`: sent again from the outbox by a new worker of the sender; the
    router keeps it only if it has not seen it. `sender` is filled in by a
    group that passes the message up; a worker leaves it empty.
    """

    type: ClassVar[str] = "post"
    to: str
    seq: int
    content: object
    replay: bool = False
    sender: str = ""


@dataclass(frozen=True)
class Holding(Message):
    """The highest message seq from each sender that the agent's latest durable checkpoint holds.

    `settle`: the same marks of the checkpoint before it; senders forget only
    up to these, so that resuming from that one, should the latest be lost,
    loses no message. `fresh`: a new worker's first word on its mail (sent
    right after Ready): what it holds is exactly its checkpoint's, and
    anything beyond must come again. `agent` is filled in by a group passing
    it up.
    """

    type: ClassVar[str] = "holding"
    marks: dict
    settle: dict = field(default_factory=dict)
    fresh: bool = False
    agent: str = ""


@dataclass(frozen=True)
class Waiting(Message):
    """The agent waits for `what` ("message" or "person", with the question), or "" when it no longer waits."""

    type: ClassVar[str] = "waiting"
    what: str
    question: str = ""
    outcome: str = ""  # when a wait ends: received, timeout, answered, stopped
    agent: str = ""

    def __post_init__(self) -> None:
        if self.what not in WAITS:
            raise ProtocolError(f"waiting.what must be one of {WAITS}, got {self.what!r}")


@dataclass(frozen=True)
class Answered(Message):
    """The person's answer is durable in the agent's checkpoint: the question is settled."""

    type: ClassVar[str] = "answered"
    question: str
    answer: str
    agent: str = ""


@dataclass(frozen=True)
class SlotRequest(Message):
    """The agent wants a slot of model server `server` (capped across the tree) for one call.

    The root grants slots first come, first served; `request_id` counts per
    worker. `agent` is filled in by a group passing the request up. With a
    `pool` of servers the root picks one of them and names it in the grant.
    """

    type: ClassVar[str] = "slot_request"
    server: str
    request_id: int
    agent: str = ""
    pool: list = field(default_factory=list)  # server keys (str)


@dataclass(frozen=True)
class SlotRelease(Message):
    """The call of request `request_id` has ended (or no longer waits): its slot is free for the next.

    `failed`: the server failed the call (unreachable, 5xx, a timeout): the root rests it for a while.
    """

    type: ClassVar[str] = "slot_release"
    server: str
    request_id: int
    agent: str = ""
    failed: bool = False


# --- parent -> group -------------------------------------------------------


@dataclass(frozen=True)
class StartAgents(Message):
    """Start these agents of a group again, each from its latest checkpoint (an operator's `start`)."""

    type: ClassVar[str] = "start_agents"
    agents: list


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.type: cls
    for cls in (Start, Interrupt, Proceed, Deliver, Settled, Answer, Ack, Ready, StopRequest, CycleDone, CheckpointSaved,
                Stopped, Error, Heartbeat, Event, Post, Holding, Waiting, Answered, StartAgents, SlotGrant, SlotRequest,
                SlotRelease)
}


def _checker(annotation: Any) -> Callable[[Any], bool]:
    """Whether a value fits a field annotation (the small set messages use), as one function made once."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = [_checker(arg) for arg in typing.get_args(annotation)]
        return lambda value: any(fits(value) for fits in options)
    if annotation is type(None):
        return lambda value: value is None
    if annotation is bool:
        return lambda value: isinstance(value, bool)
    if annotation is int:
        return lambda value: isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return lambda value: isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is object:  # any plain data: the frame decoder has checked it already
        return lambda value: True
    if annotation in (str, dict, list):
        return lambda value: isinstance(value, annotation)
    return lambda value: False


@dataclass(frozen=True)
class _Schema:
    """What `from_wire` checks of one message type, worked out once: a receiver parses every frame with it."""

    checks: dict[str, Callable[[Any], bool]]
    floats: frozenset[str]  # fields whose ints become floats
    required: tuple[str, ...]

    @classmethod
    def of(cls, message: type[Message]) -> "_Schema":
        hints = typing.get_type_hints(message)
        fields_ = dataclasses.fields(message)
        return cls(checks={f.name: _checker(hints[f.name]) for f in fields_},
                   floats=frozenset(f.name for f in fields_ if hints[f.name] is float),
                   required=tuple(f.name for f in fields_
                                  if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING))


_SCHEMAS: dict[type[Message], _Schema] = {cls: _Schema.of(cls) for cls in MESSAGE_TYPES.values()}


def from_wire(data: Any, registry: Optional[dict[str, type[Message]]] = None) -> Message:
    """Rebuild a message from a decoded map, rejecting anything off-schema.

    `registry`: the message types this channel accepts (default: the workers' pipes').
    """
    if not isinstance(data, dict):
        raise ProtocolError(f"a message must be a map, got {type(data).__name__}")
    version = data.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {version!r} (this side speaks {PROTOCOL_VERSION})")
    kind = data.get("type")
    cls = (MESSAGE_TYPES if registry is None else registry).get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {kind!r}")
    schema = _SCHEMAS.get(cls)
    if schema is None:
        schema = _SCHEMAS[cls] = _Schema.of(cls)
    checks = schema.checks
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "v" or key == "type":
            continue
        fits = checks.get(key)
        if fits is None:
            raise ProtocolError(f"{kind}: unknown field {key!r}")
        if not fits(value):
            raise ProtocolError(f"{kind}.{key}: wrong type {type(value).__name__}")
        kwargs[key] = float(value) if key in schema.floats else value
    missing = [name for name in schema.required if name not in kwargs]
    if missing:
        raise ProtocolError(f"{kind}: missing field(s) {', '.join(missing)}")
    return cls(**kwargs)
