"""Bare fork-and-pipe versions of each supervised step: the floors of the benchmark.

Each function does the least the operating system needs for one step (fork,
one pipe per child, a durable write, a reap), so that `bench_interrupts.py`
can say how far the real supervisor is from what the machine allows, measured
in the same run on the same machine. Only the standard library is imported at
module level: this module is also the forkserver's preload in the start-up
floor, where it must stay tiny.

`forkserver_floor` is meant to run in a fresh interpreter (the benchmark
starts one per repeat), so that every repeat pays its own forkserver boot.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Callable

FILE_MODE = 0o600


def _fork(child: Callable[[], None]) -> int:
    """Fork; the child runs `child` and always leaves with os._exit, never via Python's exit path."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            child()
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    return pid


def _reap_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _read_exactly_one(fd: int) -> None:
    if not os.read(fd, 1):
        raise RuntimeError("a floor child died before answering")


class _Children:
    """N forked children, each blocked in os.read on its own pipe, each with a pipe back.

    A child first writes one byte to say it is blocked, then waits for one byte;
    `answer` says whether it writes a byte back and waits to be released (the
    ack floor, where exits must not compete with the answers) or simply exits
    (the immediate-stop floor).
    """

    def __init__(self, n: int, answer: bool) -> None:
        self.down: list[int] = []  # parent writes
        self.up: list[int] = []  # parent reads
        self.pids: list[int] = []
        for _ in range(n):
            down_r, down_w = os.pipe()
            up_r, up_w = os.pipe()

            def child(down_r: int = down_r, up_w: int = up_w) -> None:
                os.write(up_w, b"r")
                os.read(down_r, 1)
                if answer:
                    os.write(up_w, b"a")
                    os.read(down_r, 1)  # exit only when released, outside the timed window

            self.pids.append(_fork(child))
            os.close(down_r)
            os.close(up_w)
            self.down.append(down_w)
            self.up.append(up_r)
        for fd in self.up:
            _read_exactly_one(fd)  # every child is now blocked in os.read

    def close(self) -> None:
        for fd in self.down:
            try:
                os.write(fd, b"x")  # release a child still waiting (EOF cannot: siblings hold copies)
            except OSError:
                pass
        for fd in self.down + self.up:
            try:
                os.close(fd)
            except OSError:
                pass
        _reap_all(self.pids)
        self.pids = []


def ack_floor(n: int, settle: float) -> float:
    """Seconds from the first byte written to N idle children to the last byte back."""
    children = _Children(n, answer=True)
    try:
        time.sleep(settle)  # let them go idle, as the real workers are when Ctrl+C comes
        started = time.perf_counter()
        for fd in children.down:
            os.write(fd, b"i")
        for fd in children.up:
            _read_exactly_one(fd)
        return time.perf_counter() - started
    finally:
        children.close()


def immediate_floor(n: int, settle: float) -> float:
    """Seconds from the first byte written to N idle children until every one is reaped."""
    children = _Children(n, answer=False)
    try:
        time.sleep(settle)
        started = time.perf_counter()
        for fd in children.down:
            os.write(fd, b"k")
        for pid in children.pids:  # in order: the last return is the last exit
            os.waitpid(pid, 0)
        elapsed = time.perf_counter() - started
        children.pids = []
        return elapsed
    finally:
        children.close()


def durable_write(directory: Path, name: str, payload: bytes) -> None:
    """What a checkpoint must cost at least: create, write, fsync, rename, fsync the folder."""
    temp = directory / f".tmp-{name}"
    fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, directory / name)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def durable_write_floor(sizes: list[int], directory: Path) -> list[float]:
    """Seconds for each bare durable write of `sizes[i]` bytes, one file after another."""
    directory.mkdir(mode=0o700, exist_ok=True)
    timings: list[float] = []
    for index, size in enumerate(sizes):
        payload = os.urandom(size)
        started = time.perf_counter()
        durable_write(directory, f"floor_{index:08d}.bin", payload)
        timings.append(time.perf_counter() - started)
    return timings


def graceful_floor(n: int, directory: Path, size: int = 50_000) -> float:
    """Seconds from a common 'cycle end' until N children have each saved a file durably and been reaped.

    Every child sleeps until the same wall-clock moment (the end of its
    in-flight cycle), writes `size` bytes durably into its own folder and exits;
    the parent reaps them all. This is what a graceful stop costs beyond the cycle.
    """
    payload = os.urandom(size)
    folders = []
    for index in range(n):
        folder = directory / f"agent-{index:04d}"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folders.append(folder)
    cycle_end = time.time() + 0.15 + 0.002 * n  # late enough for every fork to be done

    pids = []
    for folder in folders:

        def child(folder: Path = folder) -> None:
            delay = cycle_end - time.time()
            if delay > 0:
                time.sleep(delay)
            durable_write(folder, "checkpoint.bin", payload)

        pids.append(_fork(child))
    for pid in pids:  # in order: the last return is the last exit
        os.waitpid(pid, 0)
    return time.time() - cycle_end


# ---- the forkserver start-up floor (run in its own process) -------------------------


def report_ready(sock: socket.socket) -> None:
    """Target of a floor process: say 'ready' with one byte, like a worker's Ready message."""
    sock.sendall(b"r")
    sock.close()


def forkserver_floor(n: int) -> dict[str, float]:
    """Boot a preloaded `multiprocess` forkserver, then start N processes that each send one byte.

    `boot_ms` is ensure_running() plus one warm-up process (ensure_running returns
    before the server has imported its preload); `start_ms` is the first start()
    to the last byte received.
    """
    import multiprocess
    from multiprocess import forkserver

    import _floors  # by its module name, so the target pickles by reference, not by value

    ctx = multiprocess.get_context("forkserver")
    ctx.set_forkserver_preload(["_floors"])

    def one_round(count: int) -> None:
        pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(count)]
        processes = []
        for ours, theirs in pairs:
            process = ctx.Process(target=_floors.report_ready, args=(theirs,), daemon=False)
            process.start()
            theirs.close()
            processes.append(process)
        for ours, _ in pairs:
            if ours.recv(1) != b"r":
                raise RuntimeError("a forkserver floor child died before answering")
            ours.close()
        timing["last_byte"] = time.perf_counter()
        for process in processes:
            process.join()

    timing: dict[str, float] = {}
    started = time.perf_counter()
    forkserver.ensure_running()
    one_round(1)
    boot = time.perf_counter() - started
    started = time.perf_counter()
    one_round(n)
    return {"boot_ms": boot * 1000.0, "start_ms": (timing["last_byte"] - started) * 1000.0}



# ---- the start of N agents: fresh interpreter to every child ready (run as a script) ------------

READY_SCRIPT = """
import asyncio, os, socket, sys, time
import workers.entry, workers.agent_loop, protocol.checkpoints, workers.providers.scripted  # the worker's preload


async def answer(socks):  # one loop; each agent's pipe: read a 100-byte frame, answer one byte
    loop = asyncio.get_running_loop()

    async def one(sock):
        sock.setblocking(False)
        await loop.sock_recv(sock, 100)
        await loop.sock_sendall(sock, b"r")

    await asyncio.gather(*map(one, socks))
    return 0


n, per_process, use_asyncio = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "asyncio"
pairs, pids = [], []
for first in range(0, n, per_process):
    group = [socket.socketpair() for _ in range(min(per_process, n - first))]
    pid = os.fork()
    if pid == 0:
        if not use_asyncio:
            group[0][1].sendall(b"r")
            os._exit(0)
        os._exit(asyncio.run(answer([theirs for _, theirs in group])))
    for ours, theirs in group:
        theirs.close()
        if use_asyncio:
            ours.sendall(bytes(100))
        pairs.append(ours)
    pids.append(pid)
for ours in pairs:
    assert ours.recv(1) == b"r"
print(time.time(), flush=True)
for pid in pids:
    os.waitpid(pid, 0)
"""


def start_floor(n: int, *, per_process: int = 1, asyncio: bool = False, repo: str = "") -> float:
    """Exec of a fresh interpreter with the worker's modules to N forked agents ready, in ms.

    Bare (the issue's floor): one child per agent, which writes one byte and leaves. `asyncio`:
    each child runs an asyncio loop that reads a 100-byte frame on each of its `per_process` agents'
    pipes and answers it, the least a worker does before it is ready. `repo` goes on PYTHONPATH.
    """
    import subprocess
    import sys

    if not asyncio and per_process != 1:
        raise ValueError("the bare floor has one child per agent")
    began = time.time()
    done = subprocess.run([sys.executable, "-c", READY_SCRIPT, str(n), str(per_process), "asyncio" if asyncio else "bare"],
                          capture_output=True, text=True, check=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": repo or os.environ.get("PYTHONPATH", "")})
    return (float(done.stdout.split()[0]) - began) * 1000.0
