"""Length-prefixed msgpack frames, decoded without trusting the sender.

A frame is a 4-byte big-endian payload length followed by that many bytes of
msgpack encoding one map (see `protocol.messages`). The decoder is sans-I/O:
feed it whatever bytes arrived, take the complete messages out. It refuses a
length above its limit before buffering the payload, so a hostile or broken
peer cannot make the receiver allocate or wait for more than one frame.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

import msgpack

from protocol.errors import ProtocolError
from protocol.messages import Message, from_wire

HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 32  # plenty for specs and event fields; far below Python's recursion limit
_SCALARS = (str, int, float, bool, type(None))


def _no_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(f"msgpack extension type {code} is not allowed")


class FrameTooLarge(ProtocolError):
    """A message whose frame would exceed the limit; `size` says by how much."""

    def __init__(self, kind: str, size: int, limit: int) -> None:
        super().__init__(f"{kind} frame of {size} bytes exceeds the {limit}-byte limit")
        self.size, self.limit = size, limit


def encode(message: Message, max_frame_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """One frame for `message`; refuses to build a frame the peer would reject."""
    try:
        payload = msgpack.packb(message.to_wire(), use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"cannot encode {message.type}: {exc}") from exc
    if len(payload) > max_frame_bytes:
        raise FrameTooLarge(message.type, len(payload), max_frame_bytes)
    return HEADER.pack(len(payload)) + payload


Build = Callable[[Any], Message]


def decode_payload(payload: bytes, build: Build = from_wire) -> Message:
    """One message from one frame's payload (no header); `build` checks it against a channel's message types."""
    try:
        data = msgpack.unpackb(payload, raw=False, strict_map_key=True, ext_hook=_no_ext, use_list=True)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises many types for bad input
        raise ProtocolError(f"malformed msgpack payload: {type(exc).__name__}: {exc}") from exc
    _check_plain(data, 0)
    return build(data)


def _check_plain(value: Any, depth: int) -> None:
    """Only plain data gets through: no bytes, no timestamps, no deep nesting.

    msgpack decodes timestamps itself (the ext hook never sees them) and
    nesting up to its own limit would break `repr` and `==` on the receiver.
    """
    if isinstance(value, _SCALARS):
        return
    if depth >= MAX_DEPTH:
        raise ProtocolError(f"message nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, list):
        for item in value:
            _check_plain(item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ProtocolError(f"map key of type {type(key).__name__}; only str keys are allowed")
            _check_plain(item, depth + 1)
    else:
        raise ProtocolError(f"value of type {type(value).__name__} is not plain data")


class FrameDecoder:
    """Incremental decoder: `feed` bytes, get the complete messages back."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES, build: Build = from_wire) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.build = build
        self._buffer = bytearray()
        self._broken = False

    def feed(self, data: bytes) -> list[Message]:
        if self._broken:
            raise ProtocolError("decoder already failed; the stream cannot be trusted")
        self._buffer += data
        messages: list[Message] = []
        try:
            while len(self._buffer) >= HEADER.size:
                (length,) = HEADER.unpack_from(self._buffer)
                if length > self.max_frame_bytes:
                    raise ProtocolError(f"frame of {length} bytes exceeds the {self.max_frame_bytes}-byte limit")
                if len(self._buffer) < HEADER.size + length:
                    break
                payload = bytes(self._buffer[HEADER.size : HEADER.size + length])
                del self._buffer[: HEADER.size + length]
                messages.append(decode_payload(payload, self.build))
        except ProtocolError:
            self._broken = True
            raise
        return messages

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buffer)

    def close(self) -> None:
        """Call at end of stream: a partial frame left over is a truncation."""
        if self._buffer and not self._broken:
            self._broken = True
            raise ProtocolError(f"stream ended inside a frame ({len(self._buffer)} bytes pending)")
