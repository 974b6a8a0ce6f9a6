"""Entry points for tests/test_forkserver.py: a worker that waits for one byte on its pipe, then exits by it."""

from __future__ import annotations

import os
import socket

from protocol.lineage import detach


def wait_for_word(sock: socket.socket, supervisor_pid: int) -> None:
    """Exit with the code the byte names (b"3" -> 3); b"r": raise, as a broken entry would."""
    detach(supervisor_pid)  # like every worker: dies with its parent, even a SIGKILLed one
    sock.sendall(b"up")
    word = sock.recv(1)
    if word == b"r":
        raise RuntimeError("the entry broke\x1b[2J\n")
    os._exit(int(word or b"0"))


def has_wave(sock: socket.socket, supervisor_pid: int) -> None:
    """Say whether the module `wave` was loaded before this worker ran any code of its own."""
    import sys

    sock.sendall(b"1" if "wave" in sys.modules else b"0")
    os._exit(0)


def deaf(sock: socket.socket, supervisor_pid: int) -> None:
    """Say it is up, then never read its pipe (an agent's code blocking its loop)."""
    import time

    detach(supervisor_pid)
    sock.sendall(b"up")
    time.sleep(120)
    os._exit(0)


WARMED: list[str] = []  # what the server's warm calls did before it forked


def warm_up() -> None:
    """A forkserver warm call: its work is in every worker forked later."""
    WARMED.append("warm")


def warm_up_and_break() -> None:
    """A warm call that fails: the server must serve all the same."""
    raise RuntimeError("no warm-up today")


def says_warmed(sock: socket.socket, supervisor_pid: int) -> None:
    """Say what the server's warm calls did, as this worker found it."""
    sock.sendall(",".join(WARMED).encode() or b"-")
    os._exit(0)


def hold_until(path: str) -> None:
    """A prepare call that lasts until the test creates `path` (a model client's slow import, say)."""
    import time

    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    WARMED.append("held")


def pack_of_words(socks: list[socket.socket], status_fds: list[int], supervisor_pid: int) -> None:
    """A pack's entry: each agent says up and what it holds; a byte on an agent's pipe ends that agent.

    The agent writes the code the byte names on its own status pipe, as `workers.entry.run_pack` does;
    the last one ends the process by that code instead.
    """
    import select

    from protocol.lineage import EXIT_STATUS

    detach(supervisor_pid)
    held = sorted(int(name) for name in os.listdir("/proc/self/fd"))
    for sock in socks:
        sock.sendall(f"up {len(held)}".encode().ljust(8))
    running = dict(enumerate(socks))
    while running:
        ready, _, _ = select.select(list(running.values()), [], [])
        for index, sock in list(running.items()):
            if sock not in ready:
                continue
            code = int(sock.recv(1) or b"0")
            del running[index]
            if not running:
                os._exit(code)
            os.write(status_fds[index], EXIT_STATUS.pack(code))
            os.close(status_fds[index])
            sock.close()
