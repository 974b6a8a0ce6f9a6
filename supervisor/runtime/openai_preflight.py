"""`provider: openai`, checked before any worker runs: is the server there, does it serve the model?

Each server (base_url, with its key) is asked once for `GET {base_url}/models`;
an unreachable server, a refused key, an answer that is not OpenAI's model
list, or a model the server does not list is one line with exit 3 that says
what to start or which model to load. A key variable that is named but not
set is the user's configuration: exit 2. The whole check of one server is
bounded in time and in the bytes it reads, and no line carries the key.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Optional

from supervisor.config import AgentConfig, TeamConfig
from supervisor.errors import SupervisorError
from supervisor.runtime.pool_check import Skipped, check_pool

PREFLIGHT_TIMEOUT = 5.0  # seconds for one server, all of it
MAX_BODY = 1 << 20  # bytes of a model list; longer is not an answer we read
NAMES_SHOWN = 8  # models named in the "not served" line
MASK = "[key]"


def preflight_openai(config: TeamConfig) -> Skipped:
    """Ask each OpenAI-compatible server for its models once; say how to fix what is missing.

    A pool starts when one of its servers lists the models; the others are returned, with why.
    """
    wanted: dict[tuple[tuple[str, ...], Optional[str]], set[str]] = {}
    for agent in config.all_agents():
        if agent.llm.provider == "openai":
            wanted.setdefault(_server(agent), set()).add(agent.llm.model_name)
    skipped: Skipped = []
    for (base_urls, key_env), models in sorted(wanted.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        key = read_key(key_env)

        def check(base_url: str) -> None:
            try:
                _check_server(base_url, key, key_env, models)
            except SupervisorError as exc:  # the server's own words are in it: a server may echo the key
                raise SupervisorError(str(exc).replace(key, MASK) if key else str(exc), exc.exit_code) from None

        skipped += check_pool(base_urls, check)
    return skipped


def _check_server(base_url: str, key: Optional[str], key_env: Optional[str], models: set[str]) -> None:
    served = _served_models(base_url, key, key_env)
    for model in sorted(models):
        if model not in served:
            listed = ", ".join(sorted(served)[:NAMES_SHOWN]) + (", ..." if len(served) > NAMES_SHOWN else "")
            raise SupervisorError(
                f"model {model!r} is not served by {base_url} (it lists: {listed or 'nothing'}): "
                f"load it into that server, or set llm.model to one it lists", 3)


def _server(agent: AgentConfig) -> tuple[tuple[str, ...], Optional[str]]:
    return tuple(agent.llm.hosts or (str(agent.llm.base_url),)), agent.llm.api_key_env


def read_key(key_env: Optional[str]) -> Optional[str]:
    """The key from the variable named `key_env` (None: no key); a named variable that is unset is exit 2."""
    if key_env is None:
        return None
    key = os.environ.get(key_env)
    if not key:
        raise SupervisorError(f"llm.api_key_env: the environment variable {key_env} is not set (or empty): "
                              f"export it before the run", 2)
    return key


def _served_models(base_url: str, key: Optional[str], key_env: Optional[str]) -> set[str]:
    status, body = _get(f"{base_url}/models", key, base_url)

    def fail(problem: str) -> SupervisorError:
        return SupervisorError(f"OpenAI-compatible server {base_url}: {problem}", 3)

    if status in (401, 403):
        fix = f"check the key in ${key_env}" if key_env else "set llm.api_key_env to the variable that holds the key"
        raise fail(f"the key was refused (HTTP {status}): {fix}")
    if status == 404:
        raise fail("no model list at /models (HTTP 404): llm.base_url usually ends in /v1")
    if status != 200:
        raise fail(f"HTTP {status} on /models: {_detail(body)}")
    try:
        data = json.loads(body)
        entries = data["data"]
        return {entry["id"] for entry in entries if isinstance(entry, dict) and isinstance(entry.get("id"), str)}
    except (ValueError, TypeError, KeyError):
        raise fail("its answer to /models is not OpenAI's model list: is llm.base_url its OpenAI API (often .../v1)?") from None


def _get(url: str, key: Optional[str], base_url: str) -> tuple[int, bytes]:
    """Status and body of one GET, within PREFLIGHT_TIMEOUT in all and MAX_BODY bytes."""
    import httpx

    deadline = time.monotonic() + PREFLIGHT_TIMEOUT
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    unreachable = (f"OpenAI-compatible server {base_url} is not reachable ({{}}): start it (vLLM, llama.cpp's "
                   f"llama-server, LM Studio, ...) or fix llm.base_url")
    try:
        with httpx.Client(timeout=PREFLIGHT_TIMEOUT) as client:
            with client.stream("GET", url, headers=headers) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY:
                        raise SupervisorError(f"OpenAI-compatible server {base_url}: its model list is over "
                                              f"{MAX_BODY} bytes: is llm.base_url right?", 3)
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("the model list took too long")
                return response.status_code, bytes(body)
    except httpx.TimeoutException as exc:
        raise SupervisorError(unreachable.format(f"no answer within {PREFLIGHT_TIMEOUT:g}s: {type(exc).__name__}"), 3) from None
    except (httpx.TransportError, httpx.InvalidURL, OSError) as exc:
        raise SupervisorError(unreachable.format(type(exc).__name__), 3) from None


def _detail(body: bytes) -> str:
    """A server's error as one short line: OpenAI's `error.message` when it is there, else the start of the body."""
    try:
        data: Any = json.loads(body)
        text = str(data["error"]["message"]) if isinstance(data, dict) and isinstance(data.get("error"), dict) else body.decode()
    except (ValueError, KeyError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace")
    line = " ".join(text.split())
    return line[:200] + ("..." if len(line) > 200 else "")
