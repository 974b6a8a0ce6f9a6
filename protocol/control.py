"""The control socket's wire: an operator's requests to a live run, and its answers.

The same length-prefixed msgpack frames and strict checks as the workers'
pipes (`protocol.framing`), with their own set of message types, so that the
operator's tool and the run share the schema without importing each other.
One request per connection; the run answers with one `Reply`, except for
`Watch`, which is followed by a `Notice` per event until the run ends.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

from protocol.errors import ProtocolError
from protocol.framing import FrameDecoder
from protocol.messages import GRACEFUL, MODES, Message, from_wire

SOCKET_NAME = "control.sock"  # in the run's storage folder
MAX_REQUEST_BYTES = 64 * 1024  # a request names a few agents; anything bigger is not one
MAX_REPLY_BYTES = 4 * 1024 * 1024  # a status of many agents, or one event line
MAX_AGENTS = 1000  # names in one request
SHORT_ADDRESS = 100  # bytes; AF_UNIX takes at most 107

# Exit codes a reply carries, as the commands return them.
DONE = 0
LATE = 1  # an agent did not stop or start within its deadline
REFUSED = 2  # a usage error, an agent the run does not have, a request it cannot take now


def _check_names(message: Any) -> None:
    agents = message.agents
    if not agents or len(agents) > MAX_AGENTS or not all(isinstance(a, str) and 0 < len(a) <= 256 for a in agents):
        raise ProtocolError(f"{message.type}: agents must be 1 to {MAX_AGENTS} names")


# --- operator -> run --------------------------------------------------------------


@dataclass(frozen=True)
class Status(Message):
    """The run's own view: each agent's cycle, what it is doing, its last event."""

    type: ClassVar[str] = "status"


@dataclass(frozen=True)
class Stop(Message):
    """Stop these agents (the others run on); `wait`: answer once each has exited."""

    type: ClassVar[str] = "stop"
    agents: list
    mode: str = GRACEFUL
    wait: bool = True
    command: str = ""  # what the operator typed, for the stop's message

    def __post_init__(self) -> None:
        _check_names(self)
        if self.mode not in MODES:
            raise ProtocolError(f"stop mode must be one of {MODES}, got {self.mode!r}")


@dataclass(frozen=True)
class Start(Message):
    """Start these agents again from their latest checkpoints; `wait`: answer once each is ready."""

    type: ClassVar[str] = "start"
    agents: list
    wait: bool = True
    command: str = ""

    def __post_init__(self) -> None:
        _check_names(self)


@dataclass(frozen=True)
class Restart(Message):
    """A graceful stop, then a start from the checkpoint it left."""

    type: ClassVar[str] = "restart"
    agents: list
    wait: bool = True
    command: str = ""

    def __post_init__(self) -> None:
        _check_names(self)


@dataclass(frozen=True)
class Reload(Message):
    """Read this config file again and apply what changed."""

    type: ClassVar[str] = "reload"
    config: str
    command: str = ""


@dataclass(frozen=True)
class AnswerQuestion(Message):
    """The person's answer to the question the one agent named waits on; answered once it is durable."""

    type: ClassVar[str] = "answer"
    agents: list  # exactly one
    text: str
    command: str = ""

    def __post_init__(self) -> None:
        _check_names(self)
        if len(self.agents) != 1:
            raise ProtocolError("answer: exactly one agent")


@dataclass(frozen=True)
class Watch(Message):
    """Subscribe to the run's events: a Notice per event until the run ends."""

    type: ClassVar[str] = "watch"


# --- run -> operator --------------------------------------------------------------


@dataclass(frozen=True)
class Reply(Message):
    """The answer: the exit code the command returns, one line to show, and data for --json."""

    type: ClassVar[str] = "reply"
    code: int
    message: str
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Notice(Message):
    """One event of the run, as it was written, for a watcher."""

    type: ClassVar[str] = "notice"
    event: dict


REQUEST_TYPES: dict[str, type[Message]] = {
    cls.type: cls for cls in (Status, Stop, Start, Restart, Reload, AnswerQuestion, Watch)
}
ANSWER_TYPES: dict[str, type[Message]] = {cls.type: cls for cls in (Reply, Notice)}


def request_from_wire(data: Any) -> Message:
    return from_wire(data, REQUEST_TYPES)


def answer_from_wire(data: Any) -> Message:
    return from_wire(data, ANSWER_TYPES)


def request_decoder() -> FrameDecoder:
    """What the run reads a client with: small frames, request types only."""
    return FrameDecoder(MAX_REQUEST_BYTES, request_from_wire)


def answer_decoder() -> FrameDecoder:
    """What the operator's tool reads the run with."""
    return FrameDecoder(MAX_REPLY_BYTES, answer_from_wire)


@contextlib.contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """An AF_UNIX address for `path`, even a path too long for one: its folder through /proc/self/fd."""
    if len(os.fsencode(path)) < SHORT_ADDRESS:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)
