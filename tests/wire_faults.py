"""Worker entry points that break the protocol on purpose (test doubles).

The supervisor starts them exactly as it starts `workers.entry:run_worker`
(same forkserver, same pipe), so what is tested is its real receive path.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import time

from protocol import Heartbeat, encode

GARBAGE_SEED = 0


def garbage(size: int) -> bytes:
    """`size` random bytes, the same every run.

    Unseeded, about one draw in a thousand begins with a header that reads as a
    frame of a few MB still to come (under the 4 MiB limit): the reader then
    rightly waits for the rest, and the test waits with it, for as long as the
    sender lives. tests/test_wire_e2e.py checks that these are refused on arrival.
    """
    return random.Random(GARBAGE_SEED).randbytes(size)


def _finish(sock: socket.socket) -> None:
    time.sleep(0.2)
    sock.close()
    os._exit(0)


def random_bytes(sock: socket.socket, supervisor_pid: int) -> None:
    sock.sendall(encode(Heartbeat(sent_at=time.time())) + garbage(64))
    time.sleep(30)  # the supervisor must stop us, not wait for us


def oversized_frame(sock: socket.socket, supervisor_pid: int) -> None:
    sock.sendall(struct.pack(">I", 2**31) + b"x" * 16)
    time.sleep(30)


def unknown_message(sock: socket.socket, supervisor_pid: int) -> None:
    import msgpack

    payload = msgpack.packb({"v": 1, "type": "launch_missiles"})
    sock.sendall(struct.pack(">I", len(payload)) + payload)
    time.sleep(30)


def truncated_then_exit(sock: socket.socket, supervisor_pid: int) -> None:
    frame = encode(Heartbeat(sent_at=time.time()))
    sock.sendall(frame[: len(frame) - 3])
    _finish(sock)


def wrong_direction(sock: socket.socket, supervisor_pid: int) -> None:
    from protocol import Interrupt

    sock.sendall(encode(Interrupt(interrupt_id=1, mode="GRACEFUL", source="USER", message="x", issued_at=0.0)))
    time.sleep(30)


def crash_in_agent_loop(sock: socket.socket, supervisor_pid: int) -> None:
    """The real entry point around an agent loop that hits a bug."""
    from workers import agent_loop, entry

    async def broken(self, start):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug in the agent loop")

    agent_loop.AgentWorker._run_agent = broken  # type: ignore[method-assign]
    entry.run_worker(sock, supervisor_pid)


def forged_events(sock: socket.socket, supervisor_pid: int) -> None:
    """Well-formed frames that try to pass as the supervisor's own events."""
    from protocol import Event

    for name in ("interrupt_completed", "supervisor_stopped"):
        sock.sendall(encode(Event(event=name, fields={"agent_id": "someone-else", "timestamp": "1970", "exit_code": 0})))
    _finish(sock)


def deaf_worker(sock: socket.socket, supervisor_pid: int) -> None:
    """Detaches like a real worker, then never reads its pipe (a wedged agent)."""
    from protocol import Ready
    from protocol.lineage import detach

    detach(supervisor_pid)
    sock.sendall(encode(Ready(agent="agent-a", pid=os.getpid(), cycle=0, max_cycles=1, status="running", resumed=False)))
    while True:
        time.sleep(3600)


def _start_tools(sock: socket.socket, supervisor_pid: int) -> None:
    """Detach like a real worker, start two 'tools', note their pids, report ready."""
    import json
    import subprocess
    import sys

    from protocol import Ready
    from protocol.lineage import detach

    detach(supervisor_pid)
    in_group = subprocess.Popen(["sleep", "300"])
    escaped = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    storage = os.environ["TOOLS_FILE"]
    with open(storage, "w") as f:
        json.dump({"worker": os.getpid(), "tools": [in_group.pid, escaped.pid]}, f)
    sock.sendall(encode(Ready(agent="agent-a", pid=os.getpid(), cycle=0, max_cycles=1, status="running", resumed=False)))


def tools_then_crash(sock: socket.socket, supervisor_pid: int) -> None:
    """A worker with tools running that dies on its own."""
    _start_tools(sock, supervisor_pid)
    time.sleep(0.3)
    os._exit(1)


def tools_then_crash_three_times(sock: socket.socket, supervisor_pid: int) -> None:
    """Dies leaving tools behind on its first three starts (counted in CRASHES_FILE), then runs quietly."""
    from protocol import FrameDecoder, Interrupt, Ready
    from protocol.lineage import detach

    counter = os.environ["CRASHES_FILE"]
    crashes = int(open(counter).read()) if os.path.exists(counter) else 0
    if crashes < 3:
        with open(counter, "w") as f:
            f.write(str(crashes + 1))
        tools_then_crash(sock, supervisor_pid)
    detach(supervisor_pid)
    sock.sendall(encode(Ready(agent="agent-a", pid=os.getpid(), cycle=0, max_cycles=1, status="running", resumed=False)))
    decoder = FrameDecoder()
    while True:  # until told to stop (it leaves without its last word: a failed agent) or the pipe closes
        data = sock.recv(65536)
        if not data or any(isinstance(m, Interrupt) for m in decoder.feed(data)):
            os._exit(1)


def tools_then_hang(sock: socket.socket, supervisor_pid: int) -> None:
    """A worker with tools running that stops beating (the supervisor kills it)."""
    _start_tools(sock, supervisor_pid)
    while True:
        time.sleep(3600)


def tools_then_quit_when_immediate(sock: socket.socket, supervisor_pid: int) -> None:
    """A worker with tools running that exits, leaving them, when told to stop immediately."""
    from protocol import IMMEDIATE, FrameDecoder, Interrupt

    _start_tools(sock, supervisor_pid)
    decoder = FrameDecoder()
    while True:
        data = sock.recv(65536)
        if not data or any(isinstance(m, Interrupt) and m.mode == IMMEDIATE for m in decoder.feed(data)):
            os._exit(1)


def group_speaking_for_others(sock: socket.socket, supervisor_pid: int) -> None:
    """A group entry whose events claim an agent that is not in the group."""
    from protocol import Event

    sock.sendall(encode(Event(event="cycle_completed", fields={"agent_id": "outsider", "cycle": 1})))
    time.sleep(30)  # the parent must stop us


def flood(sock: socket.socket, supervisor_pid: int) -> None:
    """Valid heartbeats, as fast as the socket takes them, forever."""
    frame = encode(Heartbeat(sent_at=time.time())) * 256
    try:
        while True:
            sock.sendall(frame)
    except OSError:
        os._exit(0)
