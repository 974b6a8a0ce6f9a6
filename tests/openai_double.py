"""A TEST DOUBLE of an OpenAI-compatible server: the product's own API layer, a scripted backend, injected faults.

The HTTP layer is `workers.openai_api.ModelAPI`, the one the embedded model
server uses; behind it sits the Ollama double's `ScriptedBackend`, which
streams the scripted reply of cycle k in small pieces (so exactly-once can be
checked) and counts the generations cut off because the client closed the
connection. Each POST /v1/chat/completions takes the next fault from `faults`
(none left: a normal answer):

    "429"        HTTP 429 with `Retry-After: <retry_after>` seconds
    "500"        HTTP 500
    "400"        HTTP 400, invalid_request_error (not worth a retry)
    "401"        HTTP 401, a wrong key
    "midstream"  one piece, then an error event (the client raises APIError)
    "malformed"  one piece, then an event whose data is not JSON
    "shapeless"  one event of valid JSON in no chunk's shape, then [DONE]: no text, no end
    "cut"        one piece, then the connection is cut: the stream stops mid-way
    "hang"       no answer at all for `hang_s` seconds (the client's timeout fires)
    "ok"         a normal answer (to place faults after some good calls)
    "tool"       a call of the first tool the request offers, streamed as OpenAI streams one:
                 id and name first, the arguments in two deltas, finish_reason "tool_calls"

`requests` holds the body of every chat request (to check what the client sent).

With `echo_auth`, every error message repeats the request's Authorization
header, as a careless or hostile server might. `authorizations` records that
header of every chat request. With `key`, every request without that key as
its bearer token is refused with 401; `models_status` makes GET /v1/models
fail with that status. It runs in a thread of the test process on 127.0.0.1
and a free port.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
import json
from typing import Any, Optional
from urllib.parse import urlsplit

from ollama_double import MODEL, ScriptedBackend, answered
from workers.providers.scripted import scripted_arguments
from workers.model_server import ModelHTTPServer
from workers.openai_api import ModelAPI

__all__ = ["MODEL", "OpenAIDouble"]

STATUS_FAULTS = {"429": "slow down", "500": "injected failure", "400": "injected bad request", "401": "invalid key"}


class FaultyOpenAI(ModelAPI):
    server: "DoubleServer"

    def _refused(self) -> bool:
        """A 401 when the server wants a key and this request does not carry it (its body read first)."""
        auth = self.headers.get("Authorization")
        if self.server.key is None or auth == f"Bearer {self.server.key}":
            return False
        if self.command == "POST":
            self._body(self._openai_error)
        self._openai_error(401, STATUS_FAULTS["401"] + (f" (you sent {auth})" if self.server.echo_auth else ""))
        return True

    def do_GET(self) -> None:
        if self._refused():
            return
        if urlsplit(self.path).path == "/v1/models" and self.server.models_status != 200:
            echo = f" (you sent {self.headers.get('Authorization')})" if self.server.echo_auth else ""
            self._openai_error(self.server.models_status, f"the model list is broken{echo}")
            return
        super().do_GET()

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/v1/chat/completions":
            super().do_POST()
            return
        auth = self.headers.get("Authorization")
        self.server.authorizations.append(auth)
        if self._refused():
            return
        fault = self.server.faults.popleft() if self.server.faults else "ok"
        if fault == "ok":
            super().do_POST()
            return
        body = self._body(self._openai_error)  # read it, so the connection stays in step
        if fault == "tool" and body is not None:
            self._call_tool(body)
        elif fault in STATUS_FAULTS:
            message = STATUS_FAULTS[fault] + (f" (you sent {auth})" if self.server.echo_auth else "")
            if fault == "429":
                self._throttle(message)
            else:
                self._openai_error(int(fault), message)
        elif fault == "hang":
            time.sleep(self.server.hang_s)
            self.close_connection = True
        else:
            self._start_stream("text/event-stream")
            self._event({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                         "choices": [{"index": 0, "delta": {"role": "assistant", "content": "x"}, "finish_reason": None}]})
            self._break(fault)

    def _body(self, error: Any = None) -> Optional[dict[str, Any]]:
        body = super()._body(error)
        if body is not None and urlsplit(self.path).path == "/v1/chat/completions":
            self.server.requests.append(body)
        return body

    def _call_tool(self, body: dict[str, Any]) -> None:
        schema = body["tools"][0]["function"]
        arguments = json.dumps(scripted_arguments(schema, answered(body) + 1))
        half = len(arguments) // 2
        head = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": MODEL}

        def chunk(delta: dict[str, Any], finish: Optional[str] = None) -> dict[str, Any]:
            return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        self._start_stream("text/event-stream")
        self._event(chunk({"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_double", "type": "function", "function": {"name": schema["name"], "arguments": arguments[:half]}}]}))
        self._event(chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]}))
        self._event(chunk({}, "tool_calls"))
        self._event({**head, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})
        self._event("[DONE]")
        self._end_stream()

    def _throttle(self, message: str) -> None:
        data = ('{"error": {"message": "%s", "type": "rate_limit_error", "param": null, "code": null}}' % message).encode()
        self.send_response(429)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", str(self.server.retry_after))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _break(self, fault: str) -> None:
        if fault == "midstream":
            echo = f" (you sent {self.headers.get('Authorization')})" if self.server.echo_auth else ""
            self._event({"error": {"message": f"injected error mid-stream{echo}", "type": "server_error"}})
        elif fault == "malformed":
            self._chunk(b'data: {"id": "x", "choices": [{"delta": {"content": \n\n')
        elif fault == "shapeless":
            self._event({"choices": 5, "usage": "lots"})
            self._event("[DONE]")
        if fault == "cut":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        else:
            self._end_stream()


class DoubleServer(ModelHTTPServer):
    faults: deque
    authorizations: list[Optional[str]]
    retry_after: float
    hang_s: float
    echo_auth: bool
    key: Optional[str]
    models_status: int
    requests: list[dict[str, Any]]


class OpenAIDouble:
    """Start with `with OpenAIDouble() as double:`; `double.base_url` is its OpenAI API root."""

    def __init__(self, piece_delay: float = 0.0, hang_s: float = 30.0, retry_after: float = 1.0,
                 echo_auth: bool = False, key: Optional[str] = None, models_status: int = 200,
                 latency: float = 0.0) -> None:
        self.backend = ScriptedBackend(piece_delay, latency)
        self.httpd = DoubleServer(("127.0.0.1", 0), self.backend, FaultyOpenAI)
        self.httpd.faults = deque()
        self.httpd.authorizations = []
        self.httpd.retry_after = retry_after
        self.httpd.hang_s = hang_s
        self.httpd.echo_auth = echo_auth
        self.httpd.key = key
        self.httpd.models_status = models_status
        self.httpd.requests = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return self.httpd.host + "/v1"

    @property
    def faults(self) -> deque:
        return self.httpd.faults

    @property
    def authorizations(self) -> list[Optional[str]]:
        return self.httpd.authorizations

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.httpd.requests

    def __enter__(self) -> "OpenAIDouble":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
