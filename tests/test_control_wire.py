"""The control socket's wire: requests are checked as strictly as the workers' messages."""

from __future__ import annotations

import msgpack
import pytest

from protocol import ProtocolError, encode
from protocol.control import (
    MAX_REQUEST_BYTES,
    Notice,
    Reload,
    Reply,
    Restart,
    Start,
    Status,
    Stop,
    Watch,
    answer_decoder,
    request_decoder,
)
from protocol.framing import HEADER
from protocol.messages import Ack

REQUESTS = [
    Status(),
    Stop(agents=["a"], mode="IMMEDIATE", wait=False, command="stop a --now"),
    Start(agents=["a", "b"]),
    Restart(agents=["ü"]),
    Reload(config="/tmp/team.yaml"),
    Watch(),
]


def frame_of(data: object) -> bytes:
    payload = msgpack.packb(data, use_bin_type=True)
    return HEADER.pack(len(payload)) + payload


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.type)
def test_every_request_survives_the_wire(request_: object) -> None:
    assert request_decoder().feed(encode(request_)) == [request_]  # type: ignore[arg-type]


def test_answers_survive_the_wire() -> None:
    answers = [Reply(code=0, message="stopped", data={"agents": [{"agent": "a"}]}), Notice(event={"event": "x"})]
    assert answer_decoder().feed(b"".join(encode(a) for a in answers)) == answers


@pytest.mark.parametrize(
    "wire",
    [
        {"v": 1, "type": "stop", "agents": []},  # nobody to stop
        {"v": 1, "type": "stop", "agents": [1]},
        {"v": 1, "type": "stop", "agents": ["a"], "mode": "SOON"},
        {"v": 1, "type": "start", "agents": ["a"], "extra": True},
        {"v": 1, "type": "reload"},
        {"v": 1, "type": "shutdown_everything"},
        {"v": 2, "type": "status"},
        Ack(interrupt_id=1, received_at=1.0).to_wire(),  # a worker's message is not a request
        [1, 2, 3],
    ],
)
def test_off_schema_requests_are_refused(wire: object) -> None:
    with pytest.raises(ProtocolError):
        request_decoder().feed(frame_of(wire))


def test_a_request_larger_than_the_limit_is_refused_before_it_is_buffered() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        request_decoder().feed(HEADER.pack(MAX_REQUEST_BYTES + 1))
