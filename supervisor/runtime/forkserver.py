"""The forkserver: one preloaded process that forks every worker, asked in plain data.

A worker is forked from this process, so it begins with the worker's modules
already imported (about a millisecond, not an interpreter's boot), inherits
nothing of the supervisor (its threads, its descriptors, its memory), and is
safe however many threads the supervisor runs.

It replaces `multiprocess`'s forkserver, which cost 7.7 ms per start here
(200 starts in a row, profiled): a new connection per start, the Process object
and the parent's preparation data pickled with dill, the pid read back; 1000
agents took 8 s just to be forked. Here the supervisor keeps one
SOCK_SEQPACKET connection open. A request is one msgpack map, with the
worker's end of its pipe passed beside it (SCM_RIGHTS); the reply is the pid,
with the read end of a status pipe on which the forkserver writes the exit
code when it reaps that worker. A worker whose forkserver died before saying
reads end-of-file there instead: its status is lost (`LOST_STATUS`).

A pack is one process for several agents (`agents_per_process`): its request
passes one pipe per agent, and its reply brings one status pipe per agent. The
process holds their write ends too, so an agent that leaves before the others
says its own exit code; the process's exit code goes to every one of them.

The forkserver leaves as soon as the connection closes (the supervisor is
gone, even by SIGKILL), with `os._exit`, no interpreter teardown; its workers
follow by their parent-death signal (`protocol.lineage`).
"""

from __future__ import annotations

import errno
import gc
import importlib
import json
import os
import select
import signal
import socket
import sys
from collections import deque
from typing import Any, Callable, Iterable, Iterator, Optional

import msgpack

from protocol.lineage import EXIT_STATUS

LOST_STATUS = 255  # the exit code of a worker whose forkserver died before reporting it
MAX_REQUEST = 65536
WINDOW = 32  # start requests in flight at once
REPLY_TIMEOUT = 30.0  # seconds a start may wait for the forkserver before it counts as gone
MAX_FD = 1 << 20
MAX_PACK = 64  # agents in one process at most: their pipes travel in one message (the kernel takes 253)
# entry, the worker's end of its pipe (a list of them: a pack, one process for several agents), the entry's further arguments
Job = tuple[str, "socket.socket | list[socket.socket]", tuple[Any, ...]]
Started = tuple[int, list[int]]  # a start's pid and the read ends of its status pipes, one per agent
BOOT = ("import sys, json; sys.path[:0] = json.loads(sys.argv[1]); "
        "from supervisor.runtime.forkserver import serve; serve(int(sys.argv[3]), sys.argv[4], sys.argv[5])")


class ForkServer:
    """The supervisor's end: start the server process, then ask it for workers."""

    def __init__(self, preload: list[str], warm: Iterable[str] = ()) -> None:
        """`preload`: modules every worker uses; `warm`: "module:function" calls run once they are loaded."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            os.set_inheritable(theirs.fileno(), True)
            paths = json.dumps([p for p in sys.path if p])
            argv = [sys.executable, "-P", "-c", BOOT, paths, "forkserver", str(theirs.fileno()), ",".join(preload), ",".join(warm)]
            # Ignored signals stay ignored across exec: the terminal's Ctrl+C never reaches the server or a worker.
            self.pid = os.posix_spawn(sys.executable, argv, dict(os.environ))
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(REPLY_TIMEOUT)
        self.conn = ours
        self.unanswered = 0  # prepare requests whose replies are still to be read, before any start's

    def prepare(self, call: str, *args: Any) -> None:
        """Have the server run `call(*args)` ("module:function") now, for every worker forked later.

        What the team needs is known only once its config is read, after the server has booted: the
        worker's own code decides which model client an agent loads, and loading it here means no
        worker imports it (and httpx, pydantic) on its own. A failure is the worker's to report, in its
        own words, when it needs what was not prepared; nothing is raised here.

        The reply is not waited for: the server's work (a model client's import and rehearsed calls,
        a few hundred ms) goes on while the supervisor opens its files and sockets. The replies come
        in the order of the requests, so the next start reads it first (`_reply`).
        """
        try:
            self.conn.send(msgpack.packb({"call": call, "args": list(args)}))
        except OSError:
            return  # a dead server is found, and replaced, by the next start
        self.unanswered += 1

    def start(self, entry: str, sock: socket.socket, *args: Any) -> tuple[int, int]:
        """Fork a worker that runs `entry(sock, *args)`: its pid and the read end of its status pipe.

        Raises OSError: the fork's own errno when the server could not fork
        (EAGAIN, ENOMEM, EMFILE), ECONNREFUSED when the server is gone.
        """
        result = next(self.start_many([(entry, sock, args)]))
        if isinstance(result, BaseException):
            raise result
        pid, (status,) = result
        return pid, status

    def start_many(self, jobs: Iterable[Job], window: int = WINDOW) -> Iterator[Started | OSError]:
        """Each job's (pid, status pipes) or its OSError, in order, with up to `window` requests ahead.

        While the caller sets up one worker, the server is already forking the
        next ones: on two cores a team's start is the slower of the two, not
        their sum. A job's socket may be closed once the next result is asked
        for: the server holds its own reference by then.
        """
        queue = iter(jobs)
        in_flight: deque[int] = deque()  # sent, reply not read yet: how many status pipes each brings
        gone: Optional[OSError] = None  # a send failed: that job and every later one get this
        while True:
            while gone is None and len(in_flight) < window:
                job = next(queue, None)
                if job is None:
                    break
                entry, sock, args = job
                request: dict[str, Any] = {"entry": entry, "args": list(args)}
                socks = sock if isinstance(sock, list) else [sock]
                if isinstance(sock, list):
                    request["pack"] = True
                try:
                    socket.send_fds(self.conn, [msgpack.packb(request)], [s.fileno() for s in socks])
                except OSError as exc:
                    gone = self._gone(exc)
                    break
                in_flight.append(len(socks))
            if in_flight:
                yield self._reply(in_flight.popleft())  # replies come in the order of the requests
            elif gone is not None:
                yield gone  # the job whose request failed
                for _ in queue:
                    yield gone
                return
            else:
                return

    def _reply(self, statuses: int) -> Started | OSError:
        """The next start's reply, which brings `statuses` status pipes."""
        try:
            while self.unanswered:  # a prepare's reply: it only says the server got that far
                self.unanswered -= 1
                if not self.conn.recv(MAX_REQUEST):
                    return ConnectionRefusedError(errno.ECONNREFUSED, "the forkserver is gone")
            reply, fds, _, _ = socket.recv_fds(self.conn, MAX_REQUEST, statuses)
        except OSError as exc:
            return self._gone(exc)
        if not reply:
            return ConnectionRefusedError(errno.ECONNREFUSED, "the forkserver is gone")
        answer = msgpack.unpackb(reply)
        if "error" in answer or len(fds) != statuses:
            for fd in fds:
                os.close(fd)
            if "error" in answer:
                return OSError(answer.get("errno") or errno.EINVAL, answer["error"])
            return ConnectionRefusedError(errno.ECONNREFUSED, "the forkserver answered without its status pipes")
        return int(answer["pid"]), list(fds)

    @staticmethod
    def _gone(exc: OSError) -> OSError:
        if isinstance(exc, ConnectionRefusedError):
            return exc
        return ConnectionRefusedError(errno.ECONNREFUSED, f"the forkserver is gone ({exc})")

    def close(self) -> None:
        """Let go of the connection: the server exits when it reads end-of-file."""
        try:
            self.conn.close()
        except OSError:
            pass


def read_status(fd: int) -> Optional[int]:
    """A worker's exit code from its status pipe: None while it runs, LOST_STATUS if nobody will say."""
    try:
        data = os.read(fd, EXIT_STATUS.size)
    except BlockingIOError:
        return None
    if len(data) == EXIT_STATUS.size:
        return int(EXIT_STATUS.unpack(data)[0])
    return LOST_STATUS


# ---- the server process ------------------------------------------------------------------------


def serve(conn_fd: int, preload: str, warm: str = "") -> None:
    """The forkserver's main loop: fork on request, report each exit, leave with the supervisor."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # the terminal's signals are the supervisor's
        signal.signal(signum, signal.SIG_IGN)
    for name in filter(None, preload.split(",")):
        try:
            importlib.import_module(name)
        except Exception:  # the worker that needs it will say why, in its own words
            pass
    conn = socket.socket(fileno=conn_fd)
    conn.setblocking(True)
    server = _Server(conn)
    for call in filter(None, warm.split(",")):  # e.g. a worker's start, rehearsed: its code is warm in every worker
        server.prepare(call, [])
    # Everything loaded so far is shared with every worker. Frozen, the cyclic GC of a worker never walks
    # (and so never writes to, and copies) those objects' pages: less memory per worker, less time faulting.
    gc.freeze()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler, so the wake-up byte is written
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == wake_r:
                os.read(wake_r, 4096)
                server.reap()
            elif not server.serve_one():
                os._exit(0)  # the supervisor is gone: no teardown, the workers follow by their parent-death signal


class _Server:
    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.statuses: dict[int, list[int]] = {}  # pid -> the write ends of its status pipes (one per agent)
        self.resolved: dict[str, Callable[..., Any]] = {}  # "module:function" -> it: entries and prepare calls

    def serve_one(self) -> bool:
        """Answer one request; False when the connection has closed."""
        try:
            data, fds, _, _ = socket.recv_fds(self.conn, MAX_REQUEST, MAX_PACK)
        except InterruptedError:
            return True
        except OSError:
            return False
        if not data:
            return False
        answer, passed = self._answer(data, fds)
        try:
            self._reply(answer, passed)
        finally:
            for fd in (*fds, *passed):  # ours to close once sent: a forked worker holds its own copies
                os.close(fd)
        return True

    def _answer(self, data: bytes, fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        """A request's reply and the descriptors to pass with it."""
        try:
            request = msgpack.unpackb(data)
            args = list(request.get("args") or [])
            if "call" in request:
                self.prepare(str(request["call"]), args)
                return {"prepared": True}, []
            target = self._resolve(str(request["entry"]))
            pack = bool(request.get("pack"))
            if not fds or (len(fds) != 1 and not pack):
                raise OSError(errno.EINVAL, "a start request carries one descriptor, or a pack's one per agent")
            pid, status_rs = self._fork(target, fds, args, pack)
        except Exception as exc:  # noqa: BLE001 - said to the supervisor, which turns it into one line
            number = exc.errno if isinstance(exc, OSError) else None
            return {"error": f"{type(exc).__name__}: {exc}", "errno": number}, []
        return {"pid": pid}, status_rs

    def prepare(self, call: str, args: list[Any]) -> None:
        """Run `call(*args)` ("module:function") for every worker forked later; a failure only means it did not."""
        try:
            self._resolve(call)(*args)
        except Exception:  # noqa: BLE001 - the worker that needs it will say why, in its own words
            return
        gc.freeze()  # what it loaded is shared with every later worker too

    def _resolve(self, dotted: str) -> Callable[..., Any]:
        if dotted not in self.resolved:
            module, _, name = dotted.partition(":")
            self.resolved[dotted] = getattr(importlib.import_module(module), name)
        return self.resolved[dotted]

    def _fork(self, target: Callable[..., Any], sock_fds: list[int], args: list[Any], pack: bool) -> tuple[int, list[int]]:
        pipes: list[tuple[int, int]] = []
        try:
            for _ in sock_fds:
                pipes.append(os.pipe())
            pid = os.fork()
        except OSError:
            for pair in pipes:
                os.close(pair[0])
                os.close(pair[1])
            raise
        writes = [w for _, w in pipes]
        if pid == 0:
            self._become_worker(target, sock_fds, writes if pack else None, args)
        self.statuses[pid] = writes  # kept until the reap, when the exit code goes in
        return pid, [r for r, _ in pipes]

    def _become_worker(self, target: Callable[..., Any], sock_fds: list[int], status_fds: Optional[list[int]],
                       args: list[Any]) -> None:
        """In the child: drop everything of the server's, run the entry, never return.

        `status_fds`: a pack's, the write ends of its agents' status pipes, which it keeps.
        """
        code = 70
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.conn.detach()
            # Every descriptor but the standard three and the worker's own is the server's (its connection,
            # its wake-up pipe, a status pipe per worker): a close_range per gap, not a close per sibling.
            low = 3
            for fd in sorted((*sock_fds, *(status_fds or ()))):
                os.closerange(low, fd)
                low = fd + 1
            os.closerange(low, MAX_FD)
            if status_fds is None:
                target(socket.socket(fileno=sock_fds[0]), *args)
            else:
                target([socket.socket(fileno=fd) for fd in sock_fds], status_fds, *args)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # noqa: BLE001 - the entry should have said it; one line, not a traceback
            try:
                said = repr(f"{type(exc).__name__}: {exc}")[1:-1]  # escapes, one line: runtime/ has no terminal/
                print(f"worker entry failed: {said}", file=sys.stderr, flush=True)
            except Exception:
                pass
        os._exit(code)

    def _reply(self, answer: dict[str, Any], fds: list[int]) -> None:
        try:
            socket.send_fds(self.conn, [msgpack.packb(answer)], fds)
        except OSError:
            pass  # the supervisor is gone: the next read says so

    def reap(self) -> None:
        """Report every exited worker on its status pipe."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = EXIT_STATUS.pack(os.waitstatus_to_exitcode(status))
            for fd in self.statuses.pop(pid, ()):
                try:
                    os.write(fd, code)  # a pack's agent that left first has said its own: that one is read first
                except OSError:
                    pass
                os.close(fd)
