"""The contract between a parent and its children: messages, framing, versioning.

`lineage` holds the rest of that contract (a child leaves the terminal's
signals to its parent and dies with it). Imports neither `supervisor` nor
`workers`; both sides import it.
"""

from protocol.errors import ProtocolError
from protocol.framing import MAX_FRAME_BYTES, FrameDecoder, decode_payload, encode
from protocol.messages import (
    COMPLETED,
    FAILED,
    GRACEFUL,
    IMMEDIATE,
    INTERRUPTED,
    MODES,
    PROGRAMMATIC,
    PROTOCOL_VERSION,
    RUNNING,
    SOURCES,
    STATUSES,
    SYSTEM,
    USER,
    WAITING_FOR_MESSAGE,
    WAITING_FOR_PERSON,
    Ack,
    Answer,
    Answered,
    CheckpointSaved,
    CycleDone,
    Error,
    Deliver,
    Event,
    Heartbeat,
    Holding,
    Interrupt,
    Message,
    Post,
    Proceed,
    Ready,
    Settled,
    SlotGrant,
    SlotRelease,
    SlotRequest,
    Start,
    StartAgents,
    Stopped,
    StopRequest,
    Waiting,
    from_wire,
)

__all__ = [
    "COMPLETED", "FAILED", "GRACEFUL", "IMMEDIATE", "INTERRUPTED", "MODES", "PROGRAMMATIC",
    "PROTOCOL_VERSION", "RUNNING", "SOURCES", "STATUSES", "SYSTEM", "USER", "WAITING_FOR_MESSAGE", "WAITING_FOR_PERSON",
    "Ack", "Answer", "Answered", "CheckpointSaved", "CycleDone", "Deliver", "Error", "Event", "FrameDecoder", "Heartbeat",
    "Holding", "Interrupt", "MAX_FRAME_BYTES", "Message", "Post", "Proceed", "ProtocolError", "Ready", "Settled", "SlotGrant",
    "SlotRelease", "SlotRequest", "Start",
    "StartAgents", "Stopped", "StopRequest", "Waiting",
    "decode_payload", "encode", "from_wire",
]
