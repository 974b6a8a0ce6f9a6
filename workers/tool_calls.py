"""Running the tools a model asks for, and the messages that record the exchange.

A tool is the user's own blocking function, so it runs in a thread and the
cycle's task only awaits it, bounded by the agent's `tool_timeout`. An
IMMEDIATE stop cancels that await at once. A thread cannot be killed, so a
tool that hangs is abandoned: its thread is a daemon, not one of asyncio's
executor threads, which the worker would wait for on its way out.

A tool's failure is the model's to handle, not the cycle's: a tool that
raises, overruns its timeout, is not offered, or is called with arguments that
are not a JSON object, answers the model with an `error: ...` line as its
result, and the model carries on. Only a model that keeps asking for tools
without ever answering fails the cycle (one line, the checkpoint intact).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from typing import Any, Callable, Mapping, Sequence, Union

from protocol.tools import Tool, ToolError, load_tool, tool_of
from workers.providers.base import Reply, ToolCall
from workers.threads import in_daemon_thread

__all__ = ["MAX_RESULT_CHARS", "MAX_TOOL_ROUNDS", "ToolLike", "as_tools", "call_message", "load_tools",
           "result_message", "run_tool"]

MAX_TOOL_ROUNDS = 16  # model calls answered with tool results in one chat before it counts as a loop
MAX_RESULT_CHARS = 20_000  # what a tool's result may add to the conversation (and every later prompt)

ToolLike = Union[Tool, Callable[..., Any]]


def load_tools(paths: Sequence[str], search: Sequence[str] = ()) -> tuple[Tool, ...]:
    """The config's tools, imported; ToolError (one line) for a path that does not import or lacks hints."""
    tools = tuple(load_tool(path, search) for path in paths)
    names = [tool.name for tool in tools]
    for name in names:
        if names.count(name) > 1:
            raise ToolError(f"tools: two tools are named {name!r}; a model calls them by name")
    return tools


def as_tools(tools: Sequence[ToolLike]) -> tuple[Tool, ...]:
    """Tools given to `Agent.chat`: Tool objects, or plain functions described on the spot."""
    return tuple(tool if isinstance(tool, Tool) else tool_of(tool) for tool in tools)


async def run_tool(tools: Mapping[str, Tool], call: ToolCall, timeout: float) -> str:
    """The tool's result as text for the model; every failure becomes an `error: ...` line instead."""
    tool = tools.get(call.name)
    if tool is None:
        return f"error: there is no tool named {call.name!r}; the tools are {', '.join(tools) or 'none'}"
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError as exc:
        return f"error: the arguments are not JSON ({exc.args[0] if exc.args else exc})"
    except RecursionError:
        return "error: the arguments nest too deeply"
    if not isinstance(arguments, dict):
        return "error: the arguments must be a JSON object"
    try:
        result = await asyncio.wait_for(in_thread(tool.function, arguments), timeout)
    except asyncio.TimeoutError:
        return f"error: {call.name} did not finish within {timeout:g} s"
    except Exception as exc:  # noqa: BLE001 - the tool's failure goes back to the model, not up the stack
        return f"error: {call.name} raised {type(exc).__name__}: {exc}"[:MAX_RESULT_CHARS]
    return as_text(result)[:MAX_RESULT_CHARS]


async def in_thread(function: Callable[..., Any], arguments: dict[str, Any]) -> Any:
    """`function(**arguments)` in a daemon thread; awaiting it can be cancelled, the thread is then left to end alone."""
    context = contextvars.copy_context()

    def call() -> Any:
        try:
            return context.run(function, **arguments)
        except Exception:
            raise  # handed to the waiting task as it is
        except BaseException as exc:  # noqa: BLE001 - a tool's SystemExit must not end the worker
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from None

    return await in_daemon_thread(call, f"tool {getattr(function, '__name__', '?')}")


def as_text(result: Any) -> str:
    """A tool's return value as the model reads it: a string as it is, anything else as JSON."""
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(result)


def call_message(reply: Reply) -> dict[str, Any]:
    """The assistant message that asks for the reply's tool calls."""
    return {"role": "assistant", "content": reply.content,
            "tool_calls": [{"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                           for call in reply.tool_calls]}


def result_message(call: ToolCall, result: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": result}
