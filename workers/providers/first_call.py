"""A model client's first calls, rehearsed in the forkserver before it forks any worker.

The first call through ollama's or openai's client imports what the client
loads only when it is used (anyio's asyncio backend and sniffio under httpx;
openai's chat resources and its stream parser) and runs its code cold. A
worker forked before any call did all of that on its own first call: 25-31 ms
of CPU and 2,700 page faults, against 3 ms for its second (a child forked from
a process with the provider preloaded, against the Ollama test double). For a
team, that is every agent's first cycle, all at once, while later agents are
still being forked.

Rehearsed here, `REHEARSALS` times, against this package's own model API on
127.0.0.1 (the embedded server's HTTP layer, `workers.model_server`, both its
Ollama and its OpenAI routes) with a backend that answers "ok", the modules
are loaded and the code warm in the image every worker is forked from.

The server runs in a thread only for the rehearsal: the clients are closed,
the server shut down and its threads joined before the forkserver forks
anything (a thread alive at a fork could hold a lock the child then waits on).
A failure, or a rehearsal past `DEADLINE`, only means no warm-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from typing import Any, Callable, Iterator

from protocol.specs import LLMSpec
from workers.model_server import Emit, ModelHTTPServer, Stats

REHEARSALS = 10  # CPython 3.11 specialises a function after 8 calls: ten calls leave the path warm
DEADLINE = 5.0  # seconds for all of them
MODEL = "rehearsal"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


class _Ok:
    """The model: "ok" to everything, at once."""

    name = MODEL

    def describe(self) -> dict[str, Any]:
        return {"details": {"format": "none", "family": MODEL, "families": [MODEL], "parameter_size": "0",
                            "quantization_level": "none", "parent_model": ""},
                "model_info": {"general.architecture": MODEL}}

    def chat(self, messages: list[dict[str, Any]], options: dict[str, Any], emit: Emit) -> Stats:
        emit("ok")
        return Stats(prompt_tokens=len(messages), completion_tokens=1, prompt_ms=0.0, eval_ms=0.0, done_reason="stop")


def rehearse(spec_for: Callable[[str], LLMSpec], times: int = REHEARSALS) -> int:
    """Make `times` calls through the provider `spec_for(url)` names, on a local server; how many were answered."""
    from workers.openai_api import ModelAPI  # serves Ollama's routes and OpenAI's /v1 beside them

    class Handler(ModelAPI):
        timeout = DEADLINE  # a connection left open ends all the same: closing the server joins its thread

    server = ModelHTTPServer(("127.0.0.1", 0), _Ok(), Handler)
    server.daemon_threads = False  # each request's thread is joined when the server closes
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        with _no_proxy():
            return asyncio.run(asyncio.wait_for(_calls(spec_for(server.host), times), DEADLINE))
    except Exception:  # noqa: BLE001 - no warm-up; the workers make their first calls cold, as before
        return 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(DEADLINE)


@contextlib.contextmanager
def _no_proxy() -> Iterator[None]:
    """The clients read proxy variables when they are made: calls to 127.0.0.1 must not go through a proxy."""
    saved = {name: os.environ.pop(name) for name in PROXY_VARIABLES if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


async def _calls(spec: LLMSpec, times: int) -> int:
    from workers.providers import make_provider

    provider = make_provider(spec)
    answered = 0
    try:
        for cycle in range(1, times + 1):
            await provider.chat([{"role": "user", "content": "rehearsal"}], cycle=cycle)
            answered += 1
    finally:
        await provider.aclose()  # no connection left open: the server's threads can end
    return answered
