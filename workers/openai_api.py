"""OpenAI's chat completions API beside Ollama's, on the embedded model server.

So `provider: openai` works on a fresh machine, against the bundled model:
`GET /v1/models`, `GET /v1/models/{id}` and `POST /v1/chat/completions`,
streamed as server-sent events (`stream: true`; with `stream_options:
{include_usage: true}` a last chunk carries the usage, then `data: [DONE]`)
or answered whole. Errors take OpenAI's JSON shape, `{"error": {"message",
"type", "param", "code"}}`, so the official client raises its usual
exceptions. The last chunk also carries llama.cpp's `timings` (the model's
own milliseconds), which a client may read as the call's model time.

As on the Ollama side, a client that goes away mid-stream stops its
generation: the next write fails and the backend is told to stop.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

from workers.model_server import Emit, OllamaAPI, Stats

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "user"}
NUMBERS = ("temperature", "top_p", "frequency_penalty", "presence_penalty")  # handed to the backend as they are


class BadRequest(Exception):
    """A request the server refuses with 400; `param` names the field, as OpenAI's errors do."""

    def __init__(self, message: str, param: Optional[str] = None) -> None:
        super().__init__(message)
        self.param = param


def _text(content: Any, where: str) -> str:
    """A message's content: a string, or a list of text parts (other parts are refused)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise BadRequest("only text content parts are supported", where)
            texts.append(part["text"])
        return "".join(texts)
    raise BadRequest("content must be a string or a list of text parts", where)


def messages_of(body: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation as the backend takes it: role and text."""
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("messages must be a non-empty list", "messages")
    messages = []
    for index, message in enumerate(raw):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            raise BadRequest(f"role must be one of {', '.join(ROLES)}", f"messages[{index}].role")
        messages.append({"role": ROLES[role], "content": _text(message.get("content"), f"messages[{index}].content")})
    return messages


def options_of(body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's sampling parameters under the names the backend (Ollama's options) uses."""
    options: dict[str, Any] = {}
    for name in NUMBERS:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRequest(f"{name} must be a number", name)
        options[name] = value
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"{name} must be a positive integer", name)
        options.setdefault("num_predict", value)
    seed = body.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise BadRequest("seed must be an integer", "seed")
        options["seed"] = seed
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise BadRequest("stop must be a string or a list of strings", "stop")
        options["stop"] = stops
    if body.get("n") not in (None, 1):
        raise BadRequest("only n=1 is supported", "n")
    return options


def usage_of(stats: Stats) -> dict[str, int]:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens}


def timings_of(stats: Stats) -> dict[str, float]:
    """llama.cpp server's names for the model's own time, prompt and generation apart."""
    return {"prompt_n": stats.prompt_tokens, "prompt_ms": stats.prompt_ms,
            "predicted_n": stats.completion_tokens, "predicted_ms": stats.eval_ms}


class ModelAPI(OllamaAPI):
    """The embedded server's HTTP layer: OpenAI's API under /v1, Ollama's (inherited) everywhere else."""

    # ---- plumbing ------------------------------------------------------------

    def _openai_error(self, status: int, message: str, param: Optional[str] = None, code: Optional[str] = None) -> None:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        self._json(status, {"error": {"message": message, "type": kind, "param": param, "code": code}})

    def _event(self, body: Any) -> bool:
        """One server-sent event as one HTTP chunk; False if the client has gone."""
        data = body if isinstance(body, str) else json.dumps(body)
        return self._chunk(b"data: " + data.encode() + b"\n\n")

    def _model(self) -> dict[str, Any]:
        return {"id": self.server.backend.name, "object": "model", "created": int(time.time()),
                "owned_by": "agent-supervisor"}

    # ---- routes --------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if not path.startswith("/v1/"):
            super().do_GET()
        elif path == "/v1/models":
            self._json(200, {"object": "list", "data": [self._model()]})
        elif path.startswith("/v1/models/"):
            name = unquote(path[len("/v1/models/"):])
            if name == self.server.backend.name:
                self._json(200, self._model())
            else:
                self._openai_error(404, f"The model '{name}' does not exist", "model", "model_not_found")
        else:
            self._openai_error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if not path.startswith("/v1/"):
            super().do_POST()
            return
        if path != "/v1/chat/completions":
            self._openai_error(404, f"no route {self.path}")
            return
        body = self._body(self._openai_error)
        if body is None:
            return
        name = body.get("model")
        if name != self.server.backend.name:
            self._openai_error(404, f"The model '{name}' does not exist", "model", "model_not_found")
            return
        try:
            messages, options = messages_of(body), options_of(body)
        except BadRequest as exc:
            self._openai_error(400, str(exc), exc.param)
            return
        if body.get("stream") is True:
            stream_options = body.get("stream_options")
            usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
            self._stream(messages, options, usage)
        else:
            self._whole(messages, options)

    def _whole(self, messages: list[dict[str, str]], options: dict[str, Any]) -> None:
        try:
            stats, text = self._run_backend(messages, options, None)
        except Exception as exc:  # noqa: BLE001 - a backend failure becomes OpenAI's error shape
            self._openai_error(500, f"{type(exc).__name__}: {exc}")
            return
        self._json(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.server.backend.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": stats.done_reason, "logprobs": None}],
            "usage": usage_of(stats), "timings": timings_of(stats),
        })

    def _stream(self, messages: list[dict[str, str]], options: dict[str, Any], usage: bool) -> None:
        """Chunks of `chat.completion.chunk`: the role, the pieces, the finish, the usage, [DONE]."""
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": self.server.backend.name}
        tail: dict[str, Any] = {"usage": None} if usage else {}

        def chunk(delta: dict[str, Any], finish: Optional[str] = None, **extra: Any) -> dict[str, Any]:
            return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
                    **tail, **extra}

        piece: Emit = lambda text: self._event(chunk({"content": text}))  # noqa: E731
        self._start_stream("text/event-stream")
        if not self._event(chunk({"role": "assistant", "content": ""})):
            return
        try:
            stats, _ = self._run_backend(messages, options, piece)
        except Exception as exc:  # noqa: BLE001 - mid-stream, an error event: the client raises it
            self._event({"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error",
                                   "param": None, "code": None}})
            self._end_stream()
            return
        ended = self._event(chunk({}, stats.done_reason, timings=timings_of(stats)))
        if ended and usage:
            ended = self._event({**head, "choices": [], "usage": usage_of(stats)})
        if ended and self._event("[DONE]"):
            self._end_stream()
