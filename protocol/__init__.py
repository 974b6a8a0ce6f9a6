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
    Ack,
    CheckpointSaved,
    CycleDone,
    Error,
    Event,
    Heartbeat,
    Interrupt,
    Message,
    Proceed,
    Ready,
    Start,
    StartAgents,
    Stopped,
    StopRequest,
    from_wire,
)

__all__ = [
    "COMPLETED", "FAILED", "GRACEFUL", "IMMEDIATE", "INTERRUPTED", "MODES", "PROGRAMMATIC",
    "PROTOCOL_VERSION", "RUNNING", "SOURCES", "STATUSES", "SYSTEM", "USER",
    "Ack", "CheckpointSaved", "CycleDone", "Error", "Event", "FrameDecoder", "Heartbeat",
    "Interrupt", "MAX_FRAME_BYTES", "Message", "Proceed", "ProtocolError", "Ready", "Start", "StartAgents", "Stopped", "StopRequest",
    "decode_payload", "encode", "from_wire",
]
