"""The embedded model server: Ollama's and OpenAI's HTTP APIs in front of a real model, in a process of its own.

`provider: embedded` needs no Ollama: the supervisor starts this process (by
its entry point, like a worker) before the workers and stops it after them.
It loads a GGUF model with `xllamacpp` (llama.cpp, prebuilt) and answers on
127.0.0.1 the part of Ollama's API that the official client uses: `/api/chat`
and `/api/generate` (streamed as NDJSON, or whole), `/api/tags`, `/api/show`,
`/api/version`, and a 404 `model 'x' not found`. So workers talk to it with
the very same provider code as to a user's Ollama. OpenAI's chat completions
API is served beside it, under /v1 (`workers.openai_api`).

The HTTP layer (`OllamaAPI`) takes any `Backend`; tests put a fault-injecting
test double behind the same layer. A client that goes away mid-stream stops
its generation: the next write fails and the backend is told to stop.
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, NamedTuple, Optional, Protocol

API_VERSION = "0.6.3"  # the Ollama API version these responses follow
BEAT_INTERVAL = 1.0

Emit = Callable[[str], bool]  # hand one piece of text to the client; False once it has gone


class Stats(NamedTuple):
    prompt_tokens: int
    completion_tokens: int
    prompt_ms: float
    eval_ms: float
    done_reason: str  # "stop" or "length"


class Backend(Protocol):
    name: str  # the model name clients ask for

    def describe(self) -> dict[str, Any]:
        """`details` and `model_info` for /api/tags and /api/show."""
        ...

    def chat(self, messages: list[dict[str, Any]], options: dict[str, Any], emit: Emit) -> Stats:
        """Generate a reply, piece by piece through `emit`; stop early when `emit` returns False."""
        ...


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class OllamaAPI(BaseHTTPRequestHandler):
    """One HTTP request against `self.server.backend`, answered as Ollama would."""

    protocol_version = "HTTP/1.1"
    # Each streamed piece goes out at once: with Nagle's algorithm a small write waits for the client's
    # delayed ACK, up to 40 ms per piece (ten rehearsed calls took 0.4 s with it; see providers/first_call.py).
    disable_nagle_algorithm = True
    server: "ModelHTTPServer"

    def log_message(self, format: str, *args: Any) -> None:
        return None  # no stray lines on a terminal; the supervisor's log is the log

    # ---- plumbing ------------------------------------------------------------

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _body(self, error: Optional[Callable[[int, str], None]] = None) -> Optional[dict[str, Any]]:
        """The request's JSON object, or None once `error` (this API's error shape) has answered."""
        fail = error or self._error
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(max(0, length)) or b"{}")
        except ValueError:
            fail(400, "invalid JSON body")
            return None
        if not isinstance(body, dict):
            fail(400, "the body must be a JSON object")
            return None
        return body

    def _known_model(self, body: dict[str, Any]) -> bool:
        name = str(body.get("model") or body.get("name") or "")
        if name in (self.server.backend.name, self.server.backend.name.split(":")[0]):
            return True
        self._error(404, f"model '{name}' not found")
        return False

    def _start_stream(self, content_type: str = "application/x-ndjson") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> bool:
        """One HTTP chunk, flushed; False if the client has gone."""
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            return False
        return True

    def _line(self, body: dict[str, Any]) -> bool:
        """One NDJSON line as one HTTP chunk; False if the client has gone."""
        return self._chunk(json.dumps(body).encode() + b"\n")

    def _end_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass

    # ---- routes --------------------------------------------------------------

    def do_GET(self) -> None:
        if self.path == "/api/version":
            self._json(200, {"version": API_VERSION})
        elif self.path == "/api/tags":
            backend = self.server.backend
            info = backend.describe()
            self._json(200, {"models": [{"name": backend.name, "model": backend.name, "modified_at": _now(),
                                         "size": info.get("size", 0), "digest": info.get("digest", ""),
                                         "details": info["details"]}]})
        elif self.path in ("/", "/api/ps"):
            self._json(200, {"models": []} if self.path == "/api/ps" else {"status": "Ollama is running"})
        else:
            self._error(404, "not found")

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        routes = {"/api/chat": self._chat, "/api/generate": self._generate, "/api/show": self._show}
        handler = routes.get(self.path)
        if handler is None:
            self._error(404, "not found")
            return
        body = self._body()
        if body is not None and self._known_model(body):
            handler(body)

    def _show(self, body: dict[str, Any]) -> None:
        info = self.server.backend.describe()
        self._json(200, {"modelfile": "", "parameters": "", "template": "", "details": info["details"],
                         "model_info": info["model_info"], "capabilities": ["completion"], "modified_at": _now()})

    def _chat(self, body: dict[str, Any]) -> None:
        messages = body.get("messages") or []
        if not isinstance(messages, list):
            self._error(400, "messages must be a list")
            return
        self._answer(body, messages, lambda text, done: {"message": {"role": "assistant", "content": text}})

    def _generate(self, body: dict[str, Any]) -> None:
        messages = [{"role": "system", "content": body["system"]}] if body.get("system") else []
        messages.append({"role": "user", "content": str(body.get("prompt") or "")})
        self._answer(body, messages, lambda text, done: {"response": text})

    def _run_backend(self, messages: list[Any], options: dict[str, Any], piece: Optional[Emit]) -> tuple[Stats, str]:
        """Generate: each piece to `piece` when streaming (it returns False once the client has gone), else gathered."""
        parts: list[str] = []

        def gather(text: str) -> bool:
            parts.append(text)
            return True

        stats = self.server.backend.chat(messages, options, piece or gather)
        return stats, "".join(parts)

    def _answer(self, body: dict[str, Any], messages: list[Any], shape: Callable[[str, bool], dict[str, Any]]) -> None:
        """Stream (the default) or answer whole; the final object carries the counts and durations."""
        backend = self.server.backend
        raw_options = body.get("options")
        options: dict[str, Any] = raw_options if isinstance(raw_options, dict) else {}
        stream = body.get("stream", True) is not False
        began = time.monotonic()
        piece: Optional[Emit] = None
        if stream:
            self._start_stream()

            def piece(text: str) -> bool:
                return self._line({"model": backend.name, "created_at": _now(), **shape(text, False), "done": False})

        try:
            stats, whole = self._run_backend(messages, options, piece)
        except Exception as exc:  # noqa: BLE001 - a backend failure becomes Ollama's error shape
            if stream:
                self._line({"error": f"{type(exc).__name__}: {exc}"})
                self._end_stream()
            else:
                self._error(500, f"{type(exc).__name__}: {exc}")
            return
        total_ns = int((time.monotonic() - began) * 1e9)
        final = {
            "model": backend.name, "created_at": _now(), **shape(whole, True),
            "done": True, "done_reason": stats.done_reason, "total_duration": total_ns, "load_duration": 0,
            "prompt_eval_count": stats.prompt_tokens, "prompt_eval_duration": int(stats.prompt_ms * 1e6),
            "eval_count": stats.completion_tokens, "eval_duration": int(stats.eval_ms * 1e6),
        }
        if stream:
            if self._line(final):
                self._end_stream()
        else:
            self._json(200, final)


class ModelHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a team's agents that connect at once (a pack's, a restart's, a
    # big team's first calls) overflowed it, and each connection dropped waited a second for the SYN's retry.
    request_queue_size = 1024  # the kernel caps it at net.core.somaxconn

    def __init__(self, address: tuple[str, int], backend: Backend,
                 handler: type[BaseHTTPRequestHandler] = OllamaAPI) -> None:
        super().__init__(address, handler)
        self.backend = backend

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


# ---- the real model -----------------------------------------------------------------


class LlamaBackend:
    """A GGUF model run by xllamacpp (llama.cpp's server core, in process, no HTTP of its own used)."""

    def __init__(self, name: str, path: str, threads: int = 2, slots: int = 2, ctx_per_slot: int = 2048) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = path
        params.n_parallel = slots
        params.n_ctx = ctx_per_slot * slots
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        self.name = name
        self.path = path
        self.ctx_per_slot = ctx_per_slot
        self._server = xllamacpp.Server(params)

    def describe(self) -> dict[str, Any]:
        return {
            "size": os.path.getsize(self.path),
            "digest": "",
            "details": {"format": "gguf", "family": "llama", "families": ["llama"], "parameter_size": "135M",
                        "quantization_level": "Q4_1", "parent_model": ""},
            "model_info": {"general.architecture": "llama", "general.parameter_count": 134515008,
                           "llama.context_length": self.ctx_per_slot},
        }

    def chat(self, messages: list[dict[str, Any]], options: dict[str, Any], emit: Emit) -> Stats:
        request: dict[str, Any] = {
            "messages": [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))} for m in messages],
            "stream": True,
            "temperature": float(options.get("temperature", 0.8)),
        }
        if int(options.get("num_predict") or -1) > 0:
            request["max_tokens"] = int(options["num_predict"])
        for ours, theirs in (("top_p", "top_p"), ("top_k", "top_k"), ("seed", "seed"), ("stop", "stop")):
            if ours in options:
                request[theirs] = options[ours]
        final: dict[str, Any] = {}
        errors: list[str] = []

        def on_chunk(chunk: Any) -> bool:  # True stops the generation
            if isinstance(chunk, dict) and "error" in chunk:
                errors.append(str(chunk["error"]))
                return True
            choice = (chunk.get("choices") or [{}])[0] if isinstance(chunk, dict) else {}
            if choice.get("finish_reason"):
                final.update(chunk.get("timings") or {}, finish_reason=choice["finish_reason"])
            text = (choice.get("delta") or {}).get("content")
            if text:
                return not emit(text)
            return False

        self._server.handle_chat_completions(request, on_chunk)
        if errors:
            raise RuntimeError(errors[0])
        return Stats(
            prompt_tokens=int(final.get("prompt_n", 0)) + int(final.get("cache_n", 0)),
            completion_tokens=int(final.get("predicted_n", 0)),
            prompt_ms=float(final.get("prompt_ms", 0.0)),
            eval_ms=float(final.get("predicted_ms", 0.0)),
            done_reason="length" if final.get("finish_reason") == "length" else "stop",
        )


# ---- the process -----------------------------------------------------------------------


def serve(sock: socket.socket, parent_pid: int) -> None:
    """Entry point: load the model, serve HTTP on 127.0.0.1, beat to the parent until it lets go."""
    from protocol import Error, Event, FrameDecoder, Heartbeat, Start, encode
    from protocol.lineage import detach
    from protocol.specs import ModelServerSpec

    detach(parent_pid)
    code = 0
    try:
        sock.settimeout(30.0)
        decoder = FrameDecoder()
        start = None
        while start is None:
            data = sock.recv(65536)
            if not data:
                os._exit(0)
            for message in decoder.feed(data):
                if isinstance(message, Start):
                    start = message
        spec = ModelServerSpec.from_wire(start.spec)
        if spec.log:  # llama.cpp talks on stderr: into a file beside the events, not onto the terminal
            # O_NOFOLLOW: a symlink planted in storage must not redirect the server's output.
            log = os.open(spec.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
        began = time.monotonic()
        backend = LlamaBackend(spec.model, spec.path, spec.threads, spec.slots, spec.ctx_per_slot)
        from workers.openai_api import ModelAPI

        httpd = ModelHTTPServer(("127.0.0.1", spec.port), backend, ModelAPI)
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True).start()
        sock.settimeout(5.0)
        sock.sendall(encode(Event(event="model_server_ready", fields={
            "host": httpd.host, "model": backend.name, "load_ms": round((time.monotonic() - began) * 1000.0, 1)})))
        while True:  # the pipe is the lifeline: EOF or any message from the parent ends us
            readable, _, _ = select.select([sock], [], [], BEAT_INTERVAL)
            if readable:
                break
            sock.sendall(encode(Heartbeat(sent_at=time.time())))
    except BaseException as exc:  # noqa: BLE001 - one line to the parent, never a traceback
        code = 70
        try:
            sock.settimeout(1.0)
            sock.sendall(encode(Error(kind="model_server", message=f"{type(exc).__name__}: {exc}", fatal=True)))
        except Exception:  # noqa: BLE001
            pass
    os._exit(code)
