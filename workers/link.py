"""The worker's end of its pipe to the supervisor, on asyncio.

Incoming frames are decoded as they arrive and handed to a callback at once,
so an interrupt is acknowledged even while the agent awaits an LLM reply.
End of stream (the supervisor is gone) and a broken stream both end up in
`on_lost`; the worker never blocks on a write.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Callable, Optional

from protocol import FrameDecoder, Message, ProtocolError, encode


class SupervisorLink(asyncio.Protocol):
    def __init__(self, on_message: Callable[[Message], None], on_lost: Callable[[str], None]) -> None:
        self._on_message = on_message
        self._on_lost = on_lost
        self._decoder = FrameDecoder()
        self._transport: Optional[asyncio.Transport] = None
        self._closed = asyncio.get_running_loop().create_future()
        self.lost_reason: Optional[str] = None

    @classmethod
    async def open(
        cls, sock: socket.socket, on_message: Callable[[Message], None], on_lost: Callable[[str], None]
    ) -> "SupervisorLink":
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        _, link = await loop.create_unix_connection(lambda: cls(on_message, on_lost), sock=sock)
        return link

    # asyncio.Protocol callbacks -------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._decoder.feed(data)
        except ProtocolError as exc:
            self._lose(f"protocol error from supervisor: {exc}")
            return
        for message in messages:
            self._on_message(message)

    def eof_received(self) -> bool:
        try:
            self._decoder.close()
            reason = "supervisor closed the pipe"
        except ProtocolError as exc:
            reason = f"protocol error from supervisor: {exc}"
        self._lose(reason)
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._lose(f"pipe lost: {exc}" if exc else "pipe closed")
        if not self._closed.done():
            self._closed.set_result(None)

    # ----------------------------------------------------------------------

    def _lose(self, reason: str) -> None:
        if self.lost_reason is None:
            self.lost_reason = reason
            self._on_lost(reason)

    @property
    def alive(self) -> bool:
        return self.lost_reason is None and self._transport is not None and not self._transport.is_closing()

    def send(self, message: Message) -> None:
        """Queue one frame; silently dropped once the supervisor is gone."""
        if self.alive:
            assert self._transport is not None
            self._transport.write(encode(message))

    @property
    def flushed(self) -> bool:
        """Everything sent so far is in the kernel's hands (or the pipe is gone): exiting loses nothing."""
        transport = self._transport
        return transport is None or transport.is_closing() or transport.get_write_buffer_size() == 0

    async def close(self, timeout: float = 1.0) -> None:
        """Flush what is queued, then close; bounded so exit never hangs."""
        if self._transport is None:
            return
        self._transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), timeout)
        except asyncio.TimeoutError:
            self._transport.abort()
