"""The base class of every agent: one `cycle` per step, and `state` that is checkpointed.

Write an agent by subclassing `Agent` and naming it in the config
(`agent: package.module:Class`). The worker does the rest: it loads the latest
checkpoint, calls `cycle(k)` for k = cycles done + 1 .. max_cycles, appends the
cycle's reply to the conversation and saves the conversation *and* `self.state`
in one atomic checkpoint, so a resumed agent continues with both exactly where
the last durable cycle left them.

What a cycle may rely on, and what it must keep to:

* `self.state` is a dict of JSON values. Change it freely inside `cycle`; it
  reaches disk together with that cycle's reply, and a cycle that does not
  complete (an immediate stop, a crash) never reaches disk, so its half-done
  changes are gone on resume, as they must be.
* `await self.chat(messages)` is one LLM call through the agent's configured
  provider; its tokens and dollars are counted for the cycle and the budget.
  `await self.chat(messages, tools=[...])` offers the model functions to call
  (the config's `tools` are `self.tools`): their calls run in the worker and
  their results go back to the model until it answers. The tool calls and
  results are saved in the conversation, just before the cycle's reply, with
  the cycle's checkpoint.
  Every await inside `cycle` can be cancelled by an immediate stop.
* The return value is the cycle's reply: a `str`, or a `Step` that also names
  the prompt it answers. The conversation holds exactly one assistant reply per
  cycle (an assistant message with `tool_calls` is a request, not a reply):
  that is what makes resume exactly-once checkable.
* `await self.send(to, content)` sends a message (any JSON value) to another
  agent of the team; it leaves once this cycle's checkpoint is durable, and
  arrives exactly once, in order. `await self.receive(timeout=None)` returns
  the next message as `{"from": ..., "content": ...}` (None on timeout); it
  counts as consumed once this cycle's checkpoint is durable. `await
  self.ask(question)` returns a person's answer (`answer` command). Waiting is
  not working: a stop during a wait drops the cycle, to be done again on resume.
* `self.request_stop(message)` asks for this agent's own graceful stop once the
  cycle's checkpoint is safe; the stop is logged and counted like any other
  interrupt (source PROGRAMMATIC), and the agent is not restarted. A later run
  resumes it.

The built-in LLM chat agent (`workers.chat_agent:ChatAgent`) is one such class.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Optional, Sequence, Union

from protocol.tools import Tool
from workers.providers import Provider, ProviderError, Reply
from workers.tool_calls import MAX_TOOL_ROUNDS, ToolLike, as_tools, call_message, result_message, run_tool

if TYPE_CHECKING:
    from workers.correspondence import Correspondence

__all__ = ["DEFAULT_AGENT", "Agent", "AgentContext", "AgentLoadError", "Step", "Usage", "load_agent_class"]

DEFAULT_AGENT = "workers.chat_agent:ChatAgent"


@dataclass(frozen=True)
class Step:
    """A cycle's reply, and the prompt that asked for it (recorded as a user message before it)."""

    reply: str
    prompt: Optional[str] = None

    def turns(self, exchange: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
        """What the step adds to the conversation: the prompt, if any, the cycle's tool calls, then the one reply."""
        asked = [] if self.prompt is None else [{"role": "user", "content": self.prompt}]
        return [*asked, *exchange, {"role": "assistant", "content": self.reply}]


@dataclass
class Usage:
    """What the LLM calls of one cycle cost, summed over however many calls it made."""

    cost_usd: float = 0.0
    tokens: Optional[dict[str, int]] = None
    model_ms: Optional[float] = None

    def add(self, reply: Reply) -> None:
        self.cost_usd += reply.cost_usd
        if reply.tokens is not None:
            totals = self.tokens if self.tokens is not None else {}
            for key, count in reply.tokens.items():
                totals[key] = totals.get(key, 0) + int(count)
            self.tokens = totals
        if reply.model_ms is not None:
            self.model_ms = (self.model_ms or 0.0) + reply.model_ms


@dataclass
class AgentContext:
    """What the worker hands an agent: who it is, its live conversation, its provider."""

    name: str
    task: str
    max_cycles: int
    params: dict[str, Any]
    state: dict[str, Any]
    messages: list[dict[str, Any]]  # the worker's own list: agents read it through a copy
    provider: Provider
    budget_spent_usd: float = 0.0  # before the current cycle
    cycle: int = 0  # the cycle running now, 0 between cycles
    usage: Usage = field(default_factory=Usage)
    stop_message: Optional[str] = None
    mail: Optional["Correspondence"] = None  # messages and questions; set by the worker
    send_to: tuple[str, ...] = ()
    senders: tuple[str, ...] = ()
    traceparent: Optional[str] = None
    tools: tuple[Tool, ...] = ()  # the config's `tools`
    tool_timeout: float = 60.0  # seconds one tool call may take
    exchange: list[dict[str, Any]] = field(default_factory=list)  # this cycle's tool calls and results


class Agent:
    """Subclass this and override `cycle`; `setup` is optional.

    A subclass must be constructible without arguments: the worker creates it,
    then attaches the context (`name`, `task`, `state`, ...) before `setup`.
    """

    _context: AgentContext

    def attach(self, context: AgentContext) -> None:
        """Called once by the worker, before `setup`; not for agents to call."""
        self._context = context

    # ---- what an agent overrides -------------------------------------------

    def setup(self) -> Optional[Awaitable[None]]:
        """Called once before the first cycle of each run, with `state` already restored.

        The place for defaults: `self.state.setdefault("notes", [])`. It may
        also be `async def setup(self)`, to open a client for instance.
        """
        return None

    async def cycle(self, k: int) -> Union[str, Step]:
        """Do step `k` (1-based) of `max_cycles` and return its reply."""
        raise NotImplementedError(f"{type(self).__name__} must define `async def cycle(self, k)`")

    # ---- what an agent uses ------------------------------------------------

    @property
    def name(self) -> str:
        return self._context.name

    @property
    def task(self) -> str:
        return self._context.task

    @property
    def max_cycles(self) -> int:
        return self._context.max_cycles

    @property
    def params(self) -> dict[str, Any]:
        """The agent's `params:` from the config, as given."""
        return self._context.params

    @property
    def state(self) -> dict[str, Any]:
        """JSON values, saved in every checkpoint with the conversation."""
        return self._context.state

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        if not isinstance(value, dict):
            raise TypeError(f"state must be a dict (got {type(value).__name__})")
        self._context.state = value

    @property
    def messages(self) -> tuple[dict[str, Any], ...]:
        """The conversation so far (system prompt, task, then one prompt/reply per cycle); a copy."""
        return tuple(dict(m) for m in self._context.messages)

    @property
    def budget_spent_usd(self) -> float:
        """Dollars spent by this agent across runs, this cycle's calls included."""
        return self._context.budget_spent_usd + self._context.usage.cost_usd

    @property
    def tools(self) -> tuple[Tool, ...]:
        """The functions the config's `tools` names, ready to offer with `chat(..., tools=self.tools)`."""
        return self._context.tools

    async def chat(self, messages: Sequence[dict[str, Any]], *, tools: Sequence[ToolLike] = ()) -> str:
        """One LLM call on `messages` ({"role", "content"} dicts); returns the reply's text.

        With `tools` (Tool objects or type-hinted functions), the model may ask
        for them: each call runs in a thread with the agent's `tool_timeout`,
        its result (or an `error: ...` line) goes back to the model, and so on
        until it answers. The calls and results join the conversation before
        this cycle's reply, in the cycle's checkpoint.

        Raises `workers.providers.ProviderError` when the backend has failed for
        good (after its retries), or the model is still asking for tools after
        MAX_TOOL_ROUNDS rounds of results; left uncaught, that fails the agent
        with its last checkpoint intact.
        """
        context = self._context
        offered = as_tools(tools)
        if not offered:
            reply = await context.provider.chat(list(messages), cycle=context.cycle)  # providers never change messages
            context.usage.add(reply)
            return reply.content
        schemas = [tool.as_json() for tool in offered]
        by_name = {tool.name: tool for tool in offered}
        conversation = list(messages)
        for _ in range(MAX_TOOL_ROUNDS + 1):
            reply = await context.provider.chat(conversation, cycle=context.cycle, tools=schemas)
            context.usage.add(reply)
            if not reply.tool_calls:
                return reply.content
            asked = call_message(reply)
            results = [result_message(call, await run_tool(by_name, call, context.tool_timeout))
                       for call in reply.tool_calls]
            conversation += [asked, *results]
            context.exchange += [asked, *results]
        raise ProviderError(f"the model asked for tools {MAX_TOOL_ROUNDS + 1} times without answering")

    @property
    def send_to(self) -> tuple[str, ...]:
        """The agents the config's `send_to` names (the built-in chat agent sends each reply to them)."""
        return self._context.send_to

    @property
    def senders(self) -> tuple[str, ...]:
        """The agents whose config's `send_to` names this one."""
        return self._context.senders

    @property
    def traceparent(self) -> Optional[str]:
        """The run's span as a W3C traceparent when the run exports traces (also in $TRACEPARENT), else None.

        Spans the agent makes itself (a tool call, an HTTP client) join the
        run's trace when their parent is taken from it.
        """
        return self._context.traceparent

    async def send(self, to: str, content: Any) -> None:
        """Send `content` (any JSON value) to agent `to`, once this cycle's checkpoint is durable.

        Raises `workers.mailbox.MailError` at once for an agent the team does
        not have, content that is not JSON, or a message too big to travel;
        left uncaught, that fails the cycle with one line.
        """
        self._mail().box.send(to, content)

    async def receive(self, timeout: Optional[float] = None) -> Optional[dict[str, Any]]:
        """The next message for this agent, `{"from": agent, "content": value}`; None after `timeout` seconds."""
        return await self._mail().receive(timeout)

    async def ask(self, question: str) -> str:
        """Wait for a person's answer to `question` (given with `answer CONFIG AGENT TEXT`) and return it."""
        return await self._mail().ask(str(question))

    def _mail(self) -> "Correspondence":
        mail = self._context.mail
        if mail is None:
            raise RuntimeError("messages and questions need the worker: this agent is not running in one")
        return mail

    def request_stop(self, message: str) -> None:
        """Stop this agent gracefully after the current cycle is checkpointed."""
        self._context.stop_message = str(message) or f"agent {self.name} asked to stop"


class AgentLoadError(Exception):
    """The config's `agent:` cannot be made into an Agent; the message is one line."""


def load_agent_class(path: str) -> type[Agent]:
    """Import `package.module:Class` and check it is an `Agent` subclass."""
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's to fix, in one line
        raise AgentLoadError(f"agent {path}: cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    found = getattr(module, class_name, None)
    if found is None:
        raise AgentLoadError(f"agent {path}: module {module_name} has no {class_name!r}")
    if not (isinstance(found, type) and issubclass(found, Agent)):
        raise AgentLoadError(f"agent {path}: {class_name} is not a subclass of workers.agent.Agent")
    return found
