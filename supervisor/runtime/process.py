"""Worker processes as the supervisor sees them: a pid, a pipe, a sentinel.

Workers are forked by our forkserver (`forkserver.py`), whose preload names the
worker modules, asked in plain data over one connection. A worker starts in
about a millisecond, inherits none of the supervisor's descriptors (so every
worker's pipe reaches EOF the moment the supervisor dies), and, unlike a plain
fork, is safe whatever threads the supervisor has. The supervisor refers to
the worker only by its entry point's dotted name.
"""

from __future__ import annotations

import errno
import os
import resource
import select
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from protocol import FrameDecoder, Message, ProtocolError, encode
from supervisor.runtime.forkserver import LOST_STATUS, MAX_PACK, ForkServer, Job, read_status

if TYPE_CHECKING:
    from supervisor.config import TeamConfig

WORKER_ENTRY = "workers.entry:run_worker"
PACK_ENTRY = "workers.entry:run_pack"  # several agents in one process (`agents_per_process`)
GROUP_ENTRY = "supervisor.runtime.group:run_group"
START_HEADROOM = 16  # descriptors a start may need for a moment (its pipes, the forkserver's reply)
PROVIDER_PRELOAD = "workers.providers:preload"  # imports the model clients of a team's (provider, api) pairs
WORKER_PRELOAD = ["workers.entry", "workers.agent_loop", "workers.chat_agent", "protocol.checkpoints", "workers.providers.scripted"]
WORKER_WARM = ["workers.rehearsal:rehearse"]  # a worker's start and stop, run in the forkserver before it forks one

_server: Optional[ForkServer] = None
_prepared: list[tuple[str, tuple[Any, ...]]] = []  # what the team asked the server to load: a replacement does it too


def worker_context() -> ForkServer:
    """The forkserver, started once, with SIGINT/SIGTERM ignored in it."""
    global _server
    if _server is None:
        from supervisor.runtime.signals import signals_ignored

        with signals_ignored():
            _server = ForkServer(WORKER_PRELOAD, WORKER_WARM)
        for call, args in _prepared:
            _server.prepare(call, *args)
    return _server


def preload_for(config: "TeamConfig") -> None:
    """Have the forkserver load the model clients `config`'s agents use (the worker's code picks the module)."""
    kinds = sorted({(a.llm.provider, a.llm.wire_api) for a in config.all_agents()})
    prepare_workers(PROVIDER_PRELOAD, [list(kind) for kind in kinds])


def prepare_workers(call: str, *args: Any) -> None:
    """Have the forkserver (this one and any that replaces it) run `call(*args)` before the workers start."""
    request = (call, args)
    if request not in _prepared:
        server = worker_context()  # first: a server started now replays only what was asked before
        _prepared.append(request)
        server.prepare(call, *args)


def replace_dead_forkserver() -> bool:
    """Start a new forkserver if ours is gone (killed, out of descriptors); True if it was."""
    if forkserver_death() is None:
        return False
    start_forkserver_again()
    return True


def forkserver_death() -> Optional[str]:
    """How our forkserver ended, if it has (it is reaped then); None while it runs or before it started.

    Its children die with it (their parent-death signal), so their restarts,
    by their own policy, go through the next one.
    """
    global _server
    server = _server
    if server is None:
        return None
    try:
        done, status = os.waitpid(server.pid, os.WNOHANG)
    except ChildProcessError:
        done, status = server.pid, None  # reaped already (by someone's wait): gone all the same
    if not done:
        return None
    server.close()
    _server = None
    if status is None:
        return "exit status unknown"
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def start_forkserver_again() -> None:
    """A new forkserver after the last one died, started like the first (the terminal's signals ignored)."""
    global _server
    if _server is not None:
        _server.close()
        _server = None
    worker_context()


def ended_within(pid: Optional[int], timeout: float) -> bool:
    """Whether our child `pid` has ended, waiting up to `timeout` for one caught in the middle of its exit.

    A dying forkserver closes its workers' status pipes before the kernel lets it be reaped, so a
    worker's exit can be read while its forkserver cannot yet be waited for.
    """
    if pid is None:
        return False
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):  # no pidfds here: only what waitpid says now
        return False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(0.0, timeout) * 1000.0))
    finally:
        os.close(fd)


def forkserver_pid() -> Optional[int]:
    """The forkserver that starts our workers now (None before the first start)."""
    return _server.pid if _server is not None else None


RESOURCE_ERRNOS = {
    errno.EMFILE: "out of open files (EMFILE): raise `ulimit -n`",
    errno.ENFILE: "the system is out of open files (ENFILE)",
    errno.ENOMEM: "out of memory (ENOMEM)",
    errno.EAGAIN: "cannot fork (EAGAIN): the process limit (`ulimit -u`) or memory is short",
}


def resource_problem(exc: BaseException) -> Optional[str]:
    """What the machine ran out of, when a start failed for want of it; None for any other failure."""
    if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
        return RESOURCE_ERRNOS[exc.errno]
    return None


def _pipe_pair() -> tuple[socket.socket, socket.socket]:
    """A worker's pipe: (ours, theirs); EMFILE when too few descriptors are left to start one."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    if theirs.fileno() + START_HEADROOM >= resource.getrlimit(resource.RLIMIT_NOFILE)[0]:
        # Descriptors are handed out lowest first: so few are left that the forkserver's reply could not
        # bring the status pipe; say so now, as the resource error it is.
        ours.close()
        theirs.close()
        raise OSError(errno.EMFILE, "too few open files left to start a worker")
    return ours, theirs


def helper_pids() -> set[int]:
    """The processes the supervisor keeps on purpose: the forkserver, now."""
    pid = forkserver_pid()
    return {pid} if pid is not None else set()


def wait_ready(read: tuple[int, ...] = (), write: tuple[int, ...] = (), timeout: float = 0.0) -> None:
    """Block until one of the descriptors is ready or `timeout` passes.

    poll, not select: select refuses descriptor numbers past 1023, which a big team's pipes reach.
    """
    poller = select.poll()
    masks: dict[int, int] = {}
    for fd in read:
        masks[fd] = masks.get(fd, 0) | select.POLLIN
    for fd in write:
        masks[fd] = masks.get(fd, 0) | select.POLLOUT
    for fd, mask in masks.items():
        poller.register(fd, mask)
    poller.poll(max(0.0, timeout) * 1000.0)


@dataclass
class FramedPipe:
    """One end of a stream socket speaking frames: non-blocking writes through an outbox.

    A write never blocks the loop: what the socket does not take now waits in
    the outbox until the selector says the socket is writable again. The two
    directions close apart: a write that fails (the child has exited) must not
    stop us reading the last words it left in the socket before it went.
    """

    sock: socket.socket
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    outbox: bytearray = field(default_factory=bytearray)
    pipe_open: bool = True  # the read side: False once EOF (or a broken stream) has been read
    writable: bool = True  # the write side: False once a write has failed

    def send(self, message: Message) -> None:
        """Queue a frame and write what the socket takes now; the rest waits."""
        self.send_frame(encode(message))

    def send_frame(self, frame: bytes) -> None:
        """`send` for a frame already encoded (one interrupt, many workers)."""
        if not (self.pipe_open and self.writable):
            return
        self.outbox += frame
        self.flush()

    def flush(self) -> None:
        while self.outbox and self.pipe_open and self.writable:
            try:
                sent = self.sock.send(self.outbox)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the peer is gone; what it wrote before going is still ours to read
                self.writable = False
                self.outbox.clear()
                return
            del self.outbox[:sent]

    def drain(self, timeout: float) -> None:
        """Block up to `timeout` seconds until the outbox is written (a process's last words)."""
        deadline = time.monotonic() + timeout
        while self.outbox and self.pipe_open and self.writable and time.monotonic() < deadline:
            wait_ready(write=(self.sock.fileno(),), timeout=deadline - time.monotonic())
            self.flush()

    def receive(self, max_bytes: Optional[int] = None) -> list[Message]:
        """What is readable now, up to `max_bytes` (the rest waits for the next call).

        The bound keeps one child that writes without pause from holding the
        loop: the others, and the signals, are served between two calls.
        Raises ProtocolError for a broken stream.
        """
        messages: list[Message] = []
        budget = max_bytes
        while self.pipe_open and (budget is None or budget > 0):
            try:
                data = self.sock.recv(65536 if budget is None else min(65536, budget))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                self.pipe_open = False
                self.decoder.close()  # raises if the stream ended inside a frame
                break
            if budget is not None:
                budget -= len(data)
            messages.extend(self.decoder.feed(data))
        return messages


@dataclass(kw_only=True)
class StatusPipeChild(FramedPipe):
    """A child as the loop holds it: its frames' socket, and a status pipe that brings its exit code.

    Whoever reaps the child (the forkserver, or the Ray backend's carrier) writes the code there; the
    pipe turning readable is the child's sentinel.
    """

    name: str
    status_fd: int
    started_at: float
    _exitcode: Optional[int] = None

    @property
    def sentinel(self) -> int:
        """Readable once the child has exited (or what reaps it died, taking the status with it)."""
        return self.status_fd

    def exitcode(self) -> Optional[int]:
        """Its exit code (negative: killed by that signal), LOST_STATUS if its reaper died first, None while it runs."""
        if self._exitcode is None and self.status_fd >= 0:
            self._exitcode = read_status(self.status_fd)
        return self._exitcode

    def wait(self, timeout: float) -> Optional[int]:
        """Block up to `timeout` seconds for the exit; its code, or None if it still runs."""
        deadline = time.monotonic() + timeout
        while self.exitcode() is None and time.monotonic() < deadline:
            wait_ready((self.status_fd,), timeout=deadline - time.monotonic())
        return self.exitcode()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        if self.status_fd >= 0:
            self.exitcode()  # what the pipe holds now, before it goes
            os.close(self.status_fd)
            self.status_fd = -1


@dataclass(eq=False)
class Pack:
    """Agents that share one worker process (`agents_per_process`), each on its own pipe and status pipe.

    One process for several agents starts them and holds them for less (a Python process per agent
    costs more CPU to start than forking it, see docs/benchmarks.md), at the price of a shared fate:
    an agent that blocks the loop, crashes the interpreter or is killed takes its siblings with it.
    """

    open: int  # members not closed yet by the loop: the process and its group are buried after the last
    killed_for: Optional[str] = None  # the member whose kill took the process, and its siblings with it


def _chunks(jobs: list[tuple[str, str]], pack: int) -> Iterator[tuple[int, int]]:
    """(first index, size) of each start request: runs of worker jobs, `pack` at most; any other job alone."""
    at = 0
    while at < len(jobs):
        size = 1
        if jobs[at][1] == WORKER_ENTRY:
            while size < pack and at + size < len(jobs) and jobs[at + size][1] == WORKER_ENTRY:
                size += 1
        yield at, size
        at += size


@dataclass(kw_only=True)
class WorkerProcess(StatusPipeChild):
    """One running child (a worker, or a group's sub-supervisor) forked by our forkserver."""

    pid: int
    forkserver: Optional[int] = None  # the forkserver that started it: it dies with that one
    pack: Optional["Pack"] = None  # the agents it shares its process with, if any
    killed: bool = False  # its own kill was asked for (not a pack sibling's)

    @classmethod
    def start(cls, name: str, entry: str = WORKER_ENTRY) -> "WorkerProcess":
        result = next(cls.start_many([(name, entry)]))
        if isinstance(result, BaseException):
            raise result
        return result

    @classmethod
    def start_many(cls, jobs: list[tuple[str, str]], first: Optional[Callable[[int], bytes]] = None,
                   pack: int = 1) -> Iterator["WorkerProcess | OSError"]:
        """Start each (name, entry): its process or the OSError that stopped it, in order, forked ahead.

        `first(i)`: a frame for job i, made as its request is, written into its pipe before the worker exists, so the worker finds
        it waiting when it starts. Sent afterwards, each woke a freshly forked worker that then took
        the supervisor's core from it (1.9 ms per start at 1000 agents, profiled).

        `pack`: up to this many agents in a row (jobs of `WORKER_ENTRY`) share one process, each on
        its own pipe (`Pack`).
        """
        server = worker_context()
        if replace_dead_forkserver():
            server = worker_context()
        made: list[tuple[socket.socket, socket.socket]] = []  # the pipes of the requests made so far
        short: list[OSError] = []  # why requests stopped early: too few descriptors left
        left: list[bytes] = []  # the part of each first frame still to write
        chunks = list(_chunks(jobs, max(1, min(pack, MAX_PACK))))

        def pipe_for(index: int) -> socket.socket:
            ours, theirs = _pipe_pair()
            made.append((ours, theirs))
            if first is not None:
                ours.setblocking(False)
                frame = first(index)
                try:
                    written = ours.send(frame)
                except BlockingIOError:
                    written = 0
                left.append(frame[written:])  # what the pipe did not take waits in the outbox
            return theirs

        def requests() -> Iterator[Job]:
            for at, size in chunks:
                try:
                    theirs = [pipe_for(at + i) for i in range(size)]
                except OSError as exc:
                    short.append(exc)
                    return  # the later jobs would fail alike
                if size == 1:
                    yield jobs[at][1], theirs[0], (os.getpid(),)
                else:
                    yield PACK_ENTRY, theirs, (os.getpid(),)

        results = server.start_many(requests())
        started_at = time.monotonic()
        for at, size in chunks:
            result = next(results, None)
            if result is None:  # the requests stopped before this one: too few descriptors left
                failure = short[0] if short else OSError(errno.EMFILE, "too few open files left to start a worker")
                for index in range(at, at + size):
                    if index < len(made):
                        made[index][0].close()
                        made[index][1].close()
                    yield failure
                continue
            for index in range(at, at + size):
                made[index][1].close()  # the server holds its own reference by now
            if isinstance(result, BaseException):
                for index in range(at, at + size):
                    made[index][0].close()
                    yield result
                continue
            pid, status_fds = result
            shared = Pack(open=size) if size > 1 else None
            for i, status_fd in enumerate(status_fds):
                index = at + i
                os.set_blocking(status_fd, False)
                ours = made[index][0]
                ours.setblocking(False)
                worker = cls(name=jobs[index][0], pid=pid, status_fd=status_fd, sock=ours, started_at=started_at,
                             forkserver=server.pid, pack=shared)
                if first is not None and left[index]:
                    worker.send_frame(left[index])
                yield worker
            started_at = time.monotonic()

    def kill_tree(self, ppids: Optional[dict[int, int]] = None) -> None:
        """SIGKILL the worker, its process group, and descendants that left the group.

        `ppids`: a parent map already read (`reaper.parents`), when many trees are killed at once.
        """
        from supervisor.runtime.reaper import kill_descendants

        self.killed = True
        if self.pack is not None and self.pack.killed_for is None:
            self.pack.killed_for = self.name  # its siblings go too: they are told apart from it at their exits
        kill_descendants(self.pid, ppids)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.kill(self.pid, signal.SIGKILL)  # it may not have left our group yet
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        if self.pack is not None and self.sock.fileno() != -1:
            self.pack.open -= 1
        super().close()


__all__ = ["FramedPipe", "GROUP_ENTRY", "PACK_ENTRY", "Pack", "LOST_STATUS", "StatusPipeChild", "WORKER_ENTRY", "WorkerProcess", "ProtocolError", "worker_context"]
