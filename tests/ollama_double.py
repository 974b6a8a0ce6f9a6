"""A TEST DOUBLE of an Ollama server: the product's own API layer, a scripted backend, injected faults.

The HTTP layer is `workers.model_server.OllamaAPI`, the one the embedded model
server uses; behind it sits `ScriptedBackend`, which streams the scripted
reply of cycle k (k = assistant turns so far + 1) in small pieces, so that
exactly-once can be checked as with the scripted provider. Each /api/chat
request takes the next fault from `faults` (none left: a normal answer):

    "500"      an HTTP 500 with Ollama's error shape
    "midstream" one streamed piece, then an error line (the client raises status -1)
    "drop"     one streamed piece, then the connection is cut
    "hang"     no answer at all for `hang_s` seconds (the client's timeout fires)
    "ok"       a normal answer (to place faults after some good calls)
    "tool"     a call of the first tool the request offers, arguments filled in as the
               scripted provider fills them (`scripted_arguments`), instead of an answer

`requests` holds the body of every /api/chat request (to check what the client sent).

`latency` holds each generation that long before its first piece, and
`peak` is the most generations the server ever had in progress at once (to
check concurrency caps against what a server really sees).

It runs in a thread of the test process on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from typing import Any

from workers.model_server import Emit, ModelHTTPServer, OllamaAPI, Stats
from workers.providers.scripted import scripted_arguments, scripted_reply

MODEL = "double:latest"


class ScriptedBackend:
    name = MODEL

    def __init__(self, piece_delay: float = 0.0, latency: float = 0.0) -> None:
        self.piece_delay = piece_delay
        self.latency = latency
        self.calls = 0
        self.streaming = 0  # generations in progress now
        self.peak = 0  # the most generations ever in progress at once
        self.lock = threading.Lock()  # each request has its own thread
        self.cut_off = 0  # generations stopped because the client went away

    def describe(self) -> dict[str, Any]:
        return {"details": {"format": "gguf", "family": "double", "families": ["double"], "parameter_size": "0",
                            "quantization_level": "none", "parent_model": ""},
                "model_info": {"general.architecture": "double"}}

    def chat(self, messages: list[dict[str, Any]], options: dict[str, Any], emit: Emit) -> Stats:
        self.calls += 1
        cycle = sum(1 for m in messages if m.get("role") == "assistant") + 1
        text = scripted_reply(cycle)
        pieces = [text[i : i + 8] for i in range(0, len(text), 8)]
        with self.lock:
            self.streaming += 1
            self.peak = max(self.peak, self.streaming)
        try:
            time.sleep(self.latency)
            for piece in pieces:
                if not emit(piece):
                    self.cut_off += 1
                    break
                if self.piece_delay:
                    time.sleep(self.piece_delay)
        finally:
            with self.lock:
                self.streaming -= 1
        return Stats(prompt_tokens=10 * len(messages), completion_tokens=len(pieces), prompt_ms=1.0, eval_ms=2.0,
                     done_reason="stop")


class FaultyAPI(OllamaAPI):
    def _chat(self, body: dict[str, Any]) -> None:
        self.server.requests.append(body)  # type: ignore[attr-defined]
        fault = self.server.faults.popleft() if self.server.faults else "ok"  # type: ignore[attr-defined]
        if fault == "tool":
            schema = body["tools"][0]["function"]
            call = {"function": {"name": schema["name"], "arguments": scripted_arguments(schema, answered(body) + 1)}}
            self._start_stream()
            self._line({"model": MODEL, "created_at": "", "message": {"role": "assistant", "content": "", "tool_calls": [call]},
                        "done": False})
            self._line({"model": MODEL, "created_at": "", "message": {"role": "assistant", "content": ""}, "done": True,
                        "done_reason": "stop", "total_duration": 1_000_000, "prompt_eval_count": 7, "eval_count": 3})
            self._end_stream()
        elif fault == "500":
            self._error(500, "injected failure")
        elif fault in ("midstream", "drop"):
            self._start_stream()
            self._line({"model": MODEL, "created_at": "", "message": {"role": "assistant", "content": "x"}, "done": False})
            if fault == "midstream":
                self._line({"error": "injected error in the middle of the stream"})
                self._end_stream()
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
        elif fault == "hang":
            time.sleep(self.server.hang_s)  # type: ignore[attr-defined]
            self.close_connection = True
        else:
            super()._chat(body)


def answered(body: dict[str, Any]) -> int:
    """Cycles a request's conversation has answered: its assistant messages that are not tool calls."""
    return sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant" and not m.get("tool_calls"))


class OllamaDouble:
    """Start with `with OllamaDouble() as double:`; `double.host` is its address."""

    def __init__(self, piece_delay: float = 0.0, hang_s: float = 30.0, latency: float = 0.0, port: int = 0) -> None:
        self.backend = ScriptedBackend(piece_delay, latency)
        self.httpd = ModelHTTPServer(("127.0.0.1", port), self.backend)  # a port of its own, or a free one
        self.httpd.RequestHandlerClass = FaultyAPI
        self.httpd.faults = deque()  # type: ignore[attr-defined]
        self.httpd.hang_s = hang_s  # type: ignore[attr-defined]
        self.httpd.requests = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def host(self) -> str:
        return self.httpd.host

    @property
    def faults(self) -> deque:
        return self.httpd.faults  # type: ignore[attr-defined,no-any-return]

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.httpd.requests  # type: ignore[attr-defined,no-any-return]

    def __enter__(self) -> "OllamaDouble":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
