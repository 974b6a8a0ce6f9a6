"""The config's field types: names, durations, hosts, dotted paths, plain data.

Validation is strict on purpose: YAML guesses types (`yes` is a boolean, `10`
an int, `"10"` a string), and a silently coerced value is a misconfiguration
found hours later. Each checker raises ValueError with a message fit to show
the user; pydantic pins it to the field and `errors` makes it one line.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo

from protocol.specs import APIS, HOOK_POINTS, PROVIDERS
from protocol.tools import ToolError, load_tool
from supervisor.config.errors import describe, show

AVAILABLE_PROVIDERS = PROVIDERS
DEFAULT_OLLAMA_PORT = 11434
NAME_MAX = 64
RESTART_KINDS = ("permanent", "transient", "temporary")
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
BACKENDS = ("local", "ray")

MAX_DURATION = 24 * 24 * 3600.0  # epoll takes its timeout in 32-bit milliseconds: at most 24.8 days
MAX_USD = 1e9  # sums of costs stay finite, and finite numbers are all a checkpoint can hold
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
PLAIN_DATA_DEPTH = 16  # params and options nest at most this deep: a group's Start frame adds its own levels
MAX_NUM_CTX = 2**31 - 1  # llama.cpp and Ollama read the context size as a 32-bit integer
URL_MAX = 2048  # characters of a base_url
ENV_NAME_MAX = 255

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
_DURATION_RE = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(ms|s|m|h)\s*\Z")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_HINT = "use seconds or e.g. 30s, 2m"
_CALL_RE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*\Z")
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmg]i?b|b)?\s*\Z", re.IGNORECASE)
_UNIT_BYTES = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_SIZE_HINT = "use bytes or e.g. 50MB, 512KiB, 1GB"
MAX_SIZE = 2**50  # a petabyte: sizes are compared with file sizes, never allocated
DEFAULT_METRICS_HOST = "127.0.0.1"
_LISTEN_RE = re.compile(r"(?:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):)?(\d{1,5})\Z")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def parse_duration(value: object) -> float:
    """Seconds as a float from `30`, `0.5`, `"30s"`, `"250ms"`, `"2m"`, `"1.5h"` or `"30"`.

    Raises ValueError with a message fit to show the user. Booleans are
    rejected even though Python counts them as ints: `timeout: yes` is a typo,
    not one second. Negative, infinite and NaN durations are rejected too.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"invalid duration {show(value)} ({_DURATION_HINT})")
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        try:
            seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else float(value)
        except (ValueError, OverflowError):
            raise ValueError(f"invalid duration {show(value)} ({_DURATION_HINT})") from None
    else:
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            raise ValueError(f"invalid duration {show(value)} (too large)") from None
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"invalid duration {show(value)} (must be a finite number of seconds)")
    if seconds < 0:
        raise ValueError(f"must not be negative (got {show(value)})")
    if seconds > MAX_DURATION:
        raise ValueError(f"must be at most 24 days (got {show(value)})")
    return seconds


def parse_size(value: object) -> int:
    """Bytes as an int from `1048576`, `"50MB"`, `"512KiB"`, `"1.5GB"` (KB = 1000 bytes, KiB = 1024).

    Booleans are rejected, as for durations: `max_bytes: yes` is a typo.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"invalid size {show(value)} ({_SIZE_HINT})")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE_RE.match(value)
        if match is None:
            raise ValueError(f"invalid size {show(value)} ({_SIZE_HINT})")
        size = int(float(match.group(1)) * _UNIT_BYTES[(match.group(2) or "b").lower()])
    if size < 0:
        raise ValueError(f"must not be negative (got {show(value)})")
    if size > MAX_SIZE:
        raise ValueError(f"must be at most 1 PiB (got {show(value)})")
    return size


def parse_listen(value: object) -> str:
    """`HOST:PORT`, `:PORT` or `PORT` -> `HOST:PORT`, the host 127.0.0.1 when none is given.

    Port 0 asks the system for a free port (the run's event says which).
    """
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ValueError(f"must be HOST:PORT, e.g. 127.0.0.1:9464 (got {show(value)})")
    match = _LISTEN_RE.match(str(value).strip())
    if match is None:
        raise ValueError(f"must be HOST:PORT, e.g. 127.0.0.1:9464 (got {show(value)})")
    host, port = match.group(1) or DEFAULT_METRICS_HOST, int(match.group(2))
    if port > 65535:
        raise ValueError(f"port must be between 0 and 65535 (got {show(value)})")
    return f"{host}:{port}"


def split_listen(listen: str) -> tuple[str, int]:
    """A checked `HOST:PORT` as the host (IPv6 without its brackets) and the port."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def check_endpoint(value: str) -> str:
    """An OTLP/HTTP collector's URL: http or https, a host, nothing a terminal would mangle."""
    from urllib.parse import urlsplit

    text = value.strip()
    if not text.isprintable():
        raise ValueError(f"invalid URL {show(value)} (control characters)")
    try:
        parts = urlsplit(text)
        parts.port
    except ValueError as exc:
        raise ValueError(f"invalid URL {show(value)}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL, e.g. http://127.0.0.1:4318 (got {show(value)})")
    return text


_RAY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}\Z")


def check_ray_name(value: str) -> str:
    """A Ray node (its id, its IP address) or resource name: a plain token, never a terminal's escape."""
    if not _RAY_NAME_RE.match(value):
        raise ValueError(f"invalid Ray name {show(value)}: up to 128 letters, digits and _ . : / -")
    return value


def check_name(value: str) -> str:
    """Names become folder names and log keys, so keep them to a safe alphabet."""
    if not value:
        raise ValueError("must not be empty")
    if len(value) > NAME_MAX:
        raise ValueError(f"must be at most {NAME_MAX} characters (got {len(value)})")
    if not _NAME_RE.match(value):
        raise ValueError(
            f"invalid name {show(value)}: use lowercase letters, digits, '-' and '_', starting with a letter or digit"
        )
    return value


def check_not_blank(value: str) -> str:
    """An all-whitespace task is as empty as no task for the agent."""
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def normalize_host(value: str) -> str:
    """`host`, `host:port`, `http://host` or `http://host:port` -> `http://host:port`.

    Ollama's own client gives 11434 to a bare `host` but port 80 to
    `http://host`; a user who names an Ollama server without a port means
    Ollama's port either way, so both get 11434.
    """
    from urllib.parse import urlsplit

    text = value.strip().rstrip("/")
    if not text:
        raise ValueError("must not be empty")
    if not text.isprintable():  # it reaches error messages and logs as it is
        raise ValueError(f"invalid host {show(value)} (control characters)")
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid host {show(value)}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid host {show(value)} (expected e.g. http://127.0.0.1:11434)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port or DEFAULT_OLLAMA_PORT}{parts.path}"


def check_base_url(value: str) -> str:
    """An OpenAI API root such as `http://127.0.0.1:8000/v1`: http or https, a host, no trailing slash.

    Unlike `host`, no scheme or port is guessed: OpenAI-compatible servers
    listen on many ports and paths, and a guess would call the wrong one.
    """
    from urllib.parse import urlsplit

    text = value.strip().rstrip("/")
    if not text:
        raise ValueError("must not be empty")
    if len(text) > URL_MAX:
        raise ValueError(f"must be at most {URL_MAX} characters (got {len(text)})")
    if not text.isprintable():  # it reaches error messages and logs as it is
        raise ValueError(f"invalid base_url {show(value)} (control characters)")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - reading it checks the port
    except ValueError as exc:
        raise ValueError(f"invalid base_url {show(value)}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid base_url {show(value)} (expected http:// or https://, e.g. http://127.0.0.1:8000/v1)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not hold a user or password: give the key in the variable named by api_key_env")
    if parts.query or parts.fragment:
        raise ValueError(f"invalid base_url {show(value)} (no query or fragment)")
    return text


def check_env_name(value: str) -> str:
    """The NAME of an environment variable. The value is never echoed: it may be the key itself, by mistake."""
    if not value or len(value) > ENV_NAME_MAX or not _ENV_NAME_RE.match(value):
        raise ValueError("must be the name of an environment variable (letters, digits and _), such as OPENAI_API_KEY, "
                         "never the key itself")
    return value


def default_host() -> str:
    return normalize_host(os.environ.get("OLLAMA_HOST") or f"127.0.0.1:{DEFAULT_OLLAMA_PORT}")


def one_of(*allowed: str) -> AfterValidator:
    """A str field limited to `allowed`, with a message that lists them."""

    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)} (got {show(value)})")
        return value

    return AfterValidator(check)


def _findable(top: str, beside: Optional[Path]) -> bool:
    """Whether a worker could import package `top`: from its path, or from the config's folder."""
    try:
        if importlib.util.find_spec(top) is not None:
            return True
        return beside is not None and importlib.machinery.PathFinder.find_spec(top, [str(beside)]) is not None
    except (ImportError, ValueError):
        return False


def dotted_path(what: str) -> AfterValidator:
    """`package.module:name` whose top-level package can be found; nothing is imported here.

    Workers put the config file's folder on their path, so a module kept next
    to the config counts as found.
    """

    def check(value: str, info: ValidationInfo) -> str:
        if not _CALL_RE.match(value):
            raise ValueError(f"must be a dotted path like package.module:{what} (got {show(value)})")
        top = value.split(":")[0].split(".")[0]
        base = (info.context or {}).get("base_dir")
        if not _findable(top, Path(base) if base is not None else None):
            raise ValueError(f"no module named {top!r} can be imported (got {show(value)})")
        return value

    return AfterValidator(check)


def check_tool(value: str, info: ValidationInfo) -> str:
    """A tool must import and have type hints now, not fail in every worker later.

    Unlike an agent class, a tool is imported here: its schema (hints,
    docstring) is part of what the config means, and a function without
    hints is a config error. Tools are the user's own code, named in the
    config, so importing them is as trusted as running them.
    """
    base = (info.context or {}).get("base_dir")
    try:
        load_tool(value, [str(base)] if base is not None else [])
    except ToolError as exc:
        raise ValueError(str(exc).removeprefix(f"tool {value}: ")) from None
    return value


def check_plain_data(value: dict[str, Any]) -> dict[str, Any]:
    """Only what JSON and msgpack both carry unchanged: the value travels to a worker and into checkpoints.

    The walk keeps its own stack and stops at PLAIN_DATA_DEPTH, so neither deep
    nesting nor a mapping that contains itself can exhaust Python's.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        at = f" at {where}" if where else ""
        if item is None or isinstance(item, (str, bool)):
            continue
        if isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise ValueError(f"must hold integers that fit in 64 bits (got {show(item)}{at})")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(f"must hold finite numbers (got {item}{at})")
        elif isinstance(item, (list, dict)):
            if depth >= PLAIN_DATA_DEPTH:
                raise ValueError(f"must not nest deeper than {PLAIN_DATA_DEPTH} levels{at}")
            if isinstance(item, list):
                stack.extend((element, f"{where}[{index}]", depth + 1) for index, element in reversed(list(enumerate(item))))
                continue
            entries = []
            for key, element in item.items():
                if not isinstance(key, str):
                    raise ValueError(f"keys must be strings (got {show(key)}{at})")
                entries.append((element, f"{where}.{key}" if where else key, depth + 1))
            stack.extend(reversed(entries))
        else:
            raise ValueError(f"must hold plain data: strings, numbers, booleans, lists, mappings (got {describe(item)}{at})")
    return value


def check_llm_options(value: dict[str, Any]) -> dict[str, Any]:
    """The options the workers read themselves must be what they read: whole numbers."""
    bounds = (("num_ctx", 1, MAX_NUM_CTX), ("num_predict", -2, MAX_NUM_CTX),
              ("max_tokens", 1, MAX_NUM_CTX), ("max_completion_tokens", 1, MAX_NUM_CTX))
    for key, low, high in bounds:
        if key not in value or value[key] is None:
            continue
        number = value[key]
        if isinstance(number, bool) or not isinstance(number, int):
            raise ValueError(f"{key} must be an integer (got {describe(number)})")
        if not low <= number <= high:
            raise ValueError(f"{key} must be between {low} and {high} (got {show(number)})")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
ByteSize = Annotated[int, BeforeValidator(parse_size)]
Listen = Annotated[str, BeforeValidator(parse_listen)]
Endpoint = Annotated[str, AfterValidator(check_endpoint)]
Name = Annotated[str, AfterValidator(check_name)]
Task = Annotated[str, AfterValidator(check_not_blank)]
Host = Annotated[str, AfterValidator(normalize_host)]
BaseURL = Annotated[str, AfterValidator(check_base_url)]
EnvName = Annotated[str, AfterValidator(check_env_name)]
Api = Annotated[str, one_of(*APIS)]
PlainData = Annotated[dict[str, Any], AfterValidator(check_plain_data)]
LLMOptions = Annotated[dict[str, Any], AfterValidator(check_plain_data), AfterValidator(check_llm_options)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
USD = Annotated[float, Field(le=MAX_USD)]
RestartKind = Annotated[str, one_of(*RESTART_KINDS)]
Strategy = Annotated[str, one_of(*STRATEGIES)]
Backend = Annotated[str, one_of(*BACKENDS)]
RayName = Annotated[str, AfterValidator(check_ray_name)]
HookPoint = Annotated[str, one_of(*HOOK_POINTS)]
AgentClass = Annotated[str, dotted_path("Class")]
HookCall = Annotated[str, dotted_path("function")]
ToolPath = Annotated[str, dotted_path("function"), AfterValidator(check_tool)]
