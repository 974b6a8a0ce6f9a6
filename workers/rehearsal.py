"""A worker's start and stop, rehearsed in the forkserver before it forks any worker.

CPython 3.11 keeps each function's warm-up counters and specialised
instructions in its code object, and every call writes to them until the
function is warmed up. A worker forked from a server that never ran the
worker's code therefore writes to (and so copies, page by page) the code of
every function on its way to ready, and again on its way out. Run here first,
`REHEARSALS` times, that code is warm in the shared image: each worker copies
fewer pages, so it starts on less CPU, holds less private memory, and frees
less when it exits (`benchmarks/bench_terminal.py` prints a worker's USS and
page faults at ready).

The rehearsal is the real `AgentWorker` on a socket pair, with the scripted
provider and a temporary storage folder: Start, Ready, a graceful Interrupt
and, once it is acknowledged, an immediate one (a person's double Ctrl+C),
Stopped. It starts no thread and leaves no file. A failure only means no
warm-up; the forkserver serves all the same.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time

from protocol import GRACEFUL, IMMEDIATE, USER, Ack, FrameDecoder, Interrupt, Message, Ready, Start, Stopped, encode
from protocol.specs import AgentSpec, LLMSpec
from workers.agent_loop import AgentWorker

REHEARSALS = 10  # CPython 3.11 specialises a function after 8 calls: ten runs leave the path warm


def rehearse(times: int = REHEARSALS) -> int:
    """Run a worker's start and immediate stop `times` over; how many reached their Stopped (the first miss ends it)."""
    done = 0
    with tempfile.TemporaryDirectory(prefix="agent-supervisor-rehearsal-") as storage:
        while done < times and _once(storage):
            done += 1
    return done


def _once(storage: str) -> bool:
    spec = AgentSpec(agent="rehearsal", task="rehearsal", max_cycles=1, storage=storage,
                     llm=LLMSpec(provider="scripted", host="-", model="-", latency=3600.0))
    ours, theirs = socket.socketpair()
    try:
        ours.sendall(encode(Start(agent=spec.agent, spec=spec.to_wire())))  # waiting, as the supervisor's is
        ours.setblocking(False)
        return asyncio.run(_start_then_stop(ours, theirs))
    finally:
        ours.close()
        theirs.close()


async def _start_then_stop(ours: socket.socket, theirs: socket.socket) -> bool:
    """The worker on `theirs`; on `ours`, the supervisor's: Ready, a graceful then an immediate Interrupt, Stopped."""
    loop = asyncio.get_running_loop()
    running = asyncio.ensure_future(AgentWorker(theirs).run())
    decoder = FrameDecoder()
    seen: list[Message] = []
    stops = [(GRACEFUL, Ready), (IMMEDIATE, Ack)]  # a person's double Ctrl+C: each mode once what it waits for came
    try:
        while not any(isinstance(m, Stopped) for m in seen):
            data = await asyncio.wait_for(loop.sock_recv(ours, 65536), 5.0)
            if not data:
                break
            seen += decoder.feed(data)
            while stops and any(isinstance(m, stops[0][1]) for m in seen):
                mode, _ = stops.pop(0)
                interrupt = Interrupt(interrupt_id=2 - len(stops), mode=mode, source=USER, message="rehearsal",
                                      issued_at=time.time())
                await loop.sock_sendall(ours, encode(interrupt))
        await asyncio.wait_for(running, 5.0)
    finally:
        running.cancel()
    return any(isinstance(m, Stopped) for m in seen)
