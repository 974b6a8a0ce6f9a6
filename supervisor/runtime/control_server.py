"""The live run's control endpoint: a Unix socket served by the supervisor's one loop.

`<storage>/control.sock` is created 0600 inside the 0700 storage folder and
accepts only the run's own user (the peer's credentials, SO_PEERCRED). Each
connection carries one request in the project's msgpack frames, read with the
same strict decoder as the workers' pipes and bounded: a client that sends
garbage, too much, or nothing within IDLE_TIMEOUT is answered with one error
and dropped; past MAX_CLIENTS a newcomer is answered "busy". Nothing here
blocks the loop or decides anything: a request is handed to `serve` (the
arbiter's operator desk), which answers now or later through `reply`.
A watcher gets every event as a Notice; one that does not keep up is dropped.
"""

from __future__ import annotations

import errno
from functools import partial
import itertools
import os
import selectors
import socket
import stat
import struct
import time
from pathlib import Path
from typing import Any, Callable, Optional

from protocol import Message, ProtocolError, encode
from protocol.control import REFUSED, MAX_REPLY_BYTES, Notice, Reply, request_decoder, socket_address
from supervisor.runtime.events import EventWriter
from supervisor.runtime.reactor import Reactor

MAX_CLIENTS = 128  # connections at once; more are told the run is busy
IDLE_TIMEOUT = 5.0  # seconds for a client to send its whole request
READ_BYTES = 64 * 1024  # one read per client per loop pass
WATCHER_BACKLOG = 1024 * 1024  # bytes queued for a watcher before it is dropped as too slow
CLOSE_DRAIN = 1.0  # seconds the run's end waits to hand out last answers
_PEERCRED = struct.Struct("3i")  # pid, uid, gid


class Client:
    """One operator connection: its request so far, what is queued for it, and whether it watches."""

    def __init__(self, number: int, sock: socket.socket, pid: int) -> None:
        self.number = number
        self.sock = sock
        self.pid = pid
        self.decoder = request_decoder()
        self.outbox = bytearray()
        self.asked = False  # its one request has arrived
        self.watching = False
        self.closing = False  # close once the outbox is out
        self.closed = False


Serve = Callable[[Client, Message], None]


class ControlServer:
    def __init__(self, path: Path, log: EventWriter, team: str) -> None:
        self.path = path
        self.log = log
        self.team = team
        self.reactor: Optional[Reactor] = None
        self.serve: Optional[Serve] = None
        self.listener: Optional[socket.socket] = None
        self.clients: dict[int, Client] = {}
        self._numbers = itertools.count(1)
        self.last_events: dict[tuple[str, str], dict[str, Any]] = {}  # (agent_id, event) -> the latest such line
        self.last_by_agent: dict[str, dict[str, Any]] = {}  # agent_id -> its latest line

    # ---- the socket's life ---------------------------------------------------------

    def open(self, reactor: Reactor, serve: Serve) -> None:
        """Listen, replacing a socket a killed run left (the caller holds the run lock: no run is live there)."""
        self.reactor, self.serve = reactor, serve
        try:
            self._remove_stale()
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old_umask = os.umask(0o177)  # born 0600: no moment when another user could connect
            try:
                with socket_address(self.path) as address:
                    listener.bind(address)
            finally:
                os.umask(old_umask)
            os.chmod(self.path, 0o600)
            listener.listen(MAX_CLIENTS)
            listener.setblocking(False)
        except OSError as exc:
            self.log.emit("control_unavailable", level="warning", agent_id=self.team, path=str(self.path),
                          error=exc.strerror or str(exc))
            return
        self.listener = listener
        reactor.watch(listener, lambda mask: self._accept())

    def _remove_stale(self) -> None:
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise OSError(errno.EEXIST, f"{self.path.name} exists and is not a socket")
        os.unlink(self.path)

    def close(self) -> None:
        """The run ends: last answers out (briefly), every connection closed, the socket removed."""
        if self.listener is None:
            return
        if self.reactor is not None:
            self.reactor.unwatch(self.listener)
        self.listener.close()
        self.listener = None
        try:
            os.unlink(self.path)
        except OSError:
            pass
        deadline = time.monotonic() + CLOSE_DRAIN
        for client in list(self.clients.values()):
            self._drain(client, deadline)
            self._drop(client)

    # ---- connections ---------------------------------------------------------------

    def _accept(self) -> None:
        assert self.listener is not None and self.reactor is not None
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of descriptors: the others are served; this one retries later
                return
            sock.setblocking(False)
            pid, uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
            if uid != os.geteuid():
                self.log.emit("control_rejected", level="warning", agent_id=self.team, peer_pid=pid, peer_uid=uid,
                              reason="another user")
                sock.close()
                continue
            client = Client(next(self._numbers), sock, pid)
            self.clients[client.number] = client
            self.reactor.watch(sock, partial(self._on_client, client))
            if len(self.clients) > MAX_CLIENTS:
                self.reply(client, Reply(code=REFUSED, message="the run is busy with other requests; try again"))
                continue
            self.reactor.at(f"control:{client.number}", time.monotonic() + IDLE_TIMEOUT, partial(self._idle, client))

    def _on_client(self, client: Client, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(client)
        if client.closed or not mask & selectors.EVENT_READ:
            return
        try:
            data = client.sock.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # gone, mid-request or after it: whatever it asked still happens, unanswered
            self._drop(client)
            return
        if client.asked or client.closing:
            if not client.watching:
                self._refuse(client, "one request per connection")
            return  # a watcher's chatter is ignored
        try:
            messages = client.decoder.feed(data)
        except ProtocolError as exc:
            self._refuse(client, f"bad request: {exc}")
            return
        if not messages:
            return
        if len(messages) > 1 or client.decoder.pending:
            self._refuse(client, "one request per connection")
            return
        client.asked = True
        assert self.reactor is not None and self.serve is not None
        self.reactor.cancel(f"control:{client.number}")
        self.serve(client, messages[0])

    def _idle(self, client: Client) -> None:
        if not client.asked and not client.closed:
            self._refuse(client, f"no request within {IDLE_TIMEOUT:g}s")

    def _refuse(self, client: Client, problem: str) -> None:
        self.log.emit("control_rejected", level="warning", agent_id=self.team, peer_pid=client.pid,
                      reason=problem[:200])
        self.reply(client, Reply(code=REFUSED, message=problem[:500]))

    # ---- answers -------------------------------------------------------------------

    def reply(self, client: Client, answer: Reply, *, keep_open: bool = False) -> None:
        """Queue the answer; the connection closes once it is out, unless the client now watches."""
        if client.closed:
            return
        try:
            frame = encode(answer, MAX_REPLY_BYTES)
        except ProtocolError as exc:
            frame = encode(Reply(code=answer.code, message=f"{answer.message} (details dropped: {exc})"[:1000]))
        client.outbox += frame
        client.closing = not keep_open
        client.watching = keep_open
        self._flush(client)

    def publish(self, event: dict[str, Any]) -> None:
        """An event sink: remember each agent's latest lines, and pass the event to every watcher."""
        agent, name = event.get("agent_id"), event.get("event")
        if isinstance(agent, str) and isinstance(name, str):
            if (agent, name) not in self.last_events and len(self.last_events) >= 64 * 1024:
                self.last_events.clear()  # a bound, never reached by a real team
            self.last_events[(agent, name)] = event
            if agent in self.last_by_agent or len(self.last_by_agent) < 64 * 1024:
                self.last_by_agent[agent] = event
        watchers = [c for c in self.clients.values() if c.watching and not c.closed]
        if not watchers:
            return
        try:
            frame = encode(Notice(event=_plain(event)), MAX_REPLY_BYTES)
        except ProtocolError:
            return
        for client in watchers:
            self._queue(client, frame)

    def publish_to(self, client: Client, event: dict[str, Any]) -> None:
        """One event to one watcher (a new watcher's replay)."""
        try:
            self._queue(client, encode(Notice(event=_plain(event)), MAX_REPLY_BYTES))
        except ProtocolError:
            pass

    def _queue(self, client: Client, frame: bytes) -> None:
        if client.closed:
            return
        if len(client.outbox) > WATCHER_BACKLOG:
            self._drop(client)  # too slow to follow: the loop never waits for a watcher
            return
        client.outbox += frame
        self._flush(client)

    def replay(self) -> list[dict[str, Any]]:
        """The latest line of each kind per agent, oldest first: what a new watcher's table starts from."""
        return sorted(self.last_events.values(), key=lambda e: str(e.get("timestamp", "")))

    def _flush(self, client: Client) -> None:
        if client.closed:
            return
        while client.outbox:
            try:
                sent = client.sock.send(client.outbox)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(client)
                return
            del client.outbox[:sent]
        if not client.outbox and client.closing:
            self._drop(client)
            return
        assert self.reactor is not None
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbox else 0)
        if self.reactor.watching(client.sock):
            self.reactor.modify(client.sock, partial(self._on_client, client), events)

    def _drain(self, client: Client, deadline: float) -> None:
        """At the run's end only: a bounded blocking wait to hand over what is queued."""
        if client.closed or not client.outbox:
            return
        try:
            client.sock.settimeout(max(0.01, deadline - time.monotonic()))
            client.sock.sendall(client.outbox)
            client.outbox.clear()
        except OSError:
            pass

    def _drop(self, client: Client) -> None:
        if client.closed:
            return
        client.closed = True
        if self.reactor is not None:
            self.reactor.unwatch(client.sock)
            self.reactor.cancel(f"control:{client.number}")
        client.sock.close()
        self.clients.pop(client.number, None)


def _plain(event: dict[str, Any]) -> dict[str, Any]:
    """An event as plain msgpack data (what json.dumps with default=str writes)."""
    out: dict[str, Any] = {}
    for key, value in event.items():
        out[str(key)] = value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)
    return out
