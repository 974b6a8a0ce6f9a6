"""Tools for the built-in chat agent: `tools: [module:function]`, called by the model, run in the worker.

The runs are the real supervisor and workers. The model is the scripted
provider (which asks for the first tool it is offered, then answers with what
the tool said), or the test double of Ollama's or OpenAI's API taught to
answer with a tool call (a stand-in for a model that calls tools: the bundled
model does not). The tools live in a module written next to the config, as a
user's would.
"""

from __future__ import annotations

import asyncio
import json
import signal
import textwrap
from pathlib import Path

import pytest

from harness import by_event
from ollama_double import MODEL, OllamaDouble
from openai_double import OpenAIDouble
from protocol.tools import ToolError, tool_of
from workers.agent import Agent, AgentContext
from workers.providers import ProviderError, Reply, ToolCall
from workers.providers.scripted import scripted_reply
from workers.providers.window import fit_context
from workers.tool_calls import MAX_TOOL_ROUNDS, run_tool

KIT = '''
import pathlib
import time

def lookup(query: str, limit: int = 3) -> str:
    """Look a phrase up in the index.

    Args:
        query: the phrase to find
        limit: how many hits at most
    """
    return f"found {query}"

def broken(query: str) -> str:
    """Always fails."""
    raise ValueError("the index is gone")

def slow(query: str) -> str:
    """Hangs on cycle 2, after saying so in a file next to this module."""
    if query == "cycle 2":
        (pathlib.Path(__file__).parent / "slow-started").write_text("yes")
        time.sleep(60)
    return "quick"

def unhinted(query):
    return query
'''


def _with_tools(team, module: str, *tools: str, **keys: object) -> None:
    (team.root / f"{module}.py").write_text(textwrap.dedent(KIT))
    team.data["tools"] = [f"{module}:{tool}" for tool in tools]
    team.data.update(keys)
    team.write()


def _tool_turns(messages: list[dict]) -> list[tuple[str, str, str]]:
    """(tool, arguments, result) for each call in the conversation, in order."""
    calls = {c["id"]: c["function"] for m in messages for c in m.get("tool_calls") or []}
    return [(calls[m["tool_call_id"]]["name"], calls[m["tool_call_id"]]["arguments"], m["content"])
            for m in messages if m["role"] == "tool"]


def test_a_tools_schema_is_its_signature_and_docstring() -> None:
    def search(query: str, limit: int = 5, exact: bool = False, tags: list[str] = []) -> str:  # noqa: B006
        """Search the notes.

        Args:
            query: what to look for
            limit: hits at most
        """
        return query

    schema = tool_of(search).as_json()
    assert schema["function"]["name"] == "search" and schema["function"]["description"] == "Search the notes."
    assert schema["function"]["parameters"] == {
        "type": "object", "required": ["query"],
        "properties": {"query": {"type": "string", "description": "what to look for"},
                       "limit": {"type": "integer", "description": "hits at most"},
                       "exact": {"type": "boolean"}, "tags": {"type": "array", "items": {"type": "string"}}},
    }

    def bare(query, limit: int) -> str:  # type: ignore[no-untyped-def]
        return query

    with pytest.raises(ToolError, match="parameter 'query' has no type hint"):
        tool_of(bare)


def test_the_chat_agent_calls_a_tool_and_saves_the_exchange_with_its_cycle(make_team) -> None:
    team = make_team(agents=1, latency=0.01, max_cycles=2)
    _with_tools(team, "kit_ok", "lookup")
    run = team.run()
    assert run.proc.returncode == 0, run.output
    final = team.latest("agent-a")
    assert final.status == "completed" and final.cycle == 2
    # Each cycle: the model asks for the tool, the tool's result goes back, the model answers with it.
    assert _tool_turns(final.messages) == [("lookup", json.dumps({"query": "cycle 1"}), "found cycle 1"),
                                           ("lookup", json.dumps({"query": "cycle 2"}), "found cycle 2")]
    replies = [m["content"] for m in final.messages if m["role"] == "assistant" and not m.get("tool_calls")]
    assert replies == [f"{scripted_reply(k)} [lookup said: found cycle {k}]" for k in (1, 2)]
    # In order within the cycle: the call, its result, then the one reply.
    roles = [(m["role"], bool(m.get("tool_calls"))) for m in final.messages[2:5]]
    assert roles == [("assistant", True), ("tool", False), ("assistant", False)]
    assert len(by_event(run.new_events(), "cycle_completed", "agent-a")) == 2


def test_a_tool_that_raises_or_hangs_answers_the_model_with_an_error(make_team) -> None:
    team = make_team(agents=2, latency=0.01, max_cycles=2)
    _with_tools(team, "kit_bad", tool_timeout=0.5)
    team.data["agents"][0]["tools"] = ["kit_bad:broken"]
    team.data["agents"][1]["tools"] = ["kit_bad:slow"]
    team.write()
    run = team.run()
    assert run.proc.returncode == 0, run.output
    raised = _tool_turns(team.latest("agent-a").messages)
    assert [result for _, _, result in raised] == ["error: broken raised ValueError: the index is gone"] * 2
    hung = _tool_turns(team.latest("agent-b").messages)
    assert [result for _, _, result in hung] == ["quick", "error: slow did not finish within 0.5 s"]
    assert all(team.latest(name).status == "completed" for name in team.names)


def test_an_immediate_stop_during_a_tool_keeps_the_last_checkpoint(make_team) -> None:
    team = make_team(agents=1, latency=0.01, max_cycles=3, immediate_timeout=10)
    _with_tools(team, "kit_hang", "slow")
    run = team.start()
    started = team.root / "slow-started"
    run.wait_for(lambda ev: started.exists(), "the tool of cycle 2 to start")
    run.signal(signal.SIGTERM)
    run.wait_for(lambda ev: by_event(ev, "interrupt_initiated"), "the first interrupt")
    run.signal(signal.SIGTERM)  # the second is immediate: it cancels the wait for the tool
    assert run.wait() == 1, run.output
    # The worker left at once, though its tool still sleeps: it was not killed after the timeout.
    exited = by_event(run.new_events(), "worker_exited", "agent-a")
    assert exited and exited[-1]["exitcode"] == 0, exited
    saved = team.latest("agent-a")
    assert saved.cycle == 1  # cycle 2's call never reached the conversation
    assert _tool_turns(saved.messages) == [("slow", json.dumps({"query": "cycle 1"}), "quick")]


@pytest.mark.parametrize("tool, says", [("kit_cfg:unhinted", "parameter 'query' has no type hint"),
                                        ("kit_cfg:missing", "module kit_cfg has no 'missing'"),
                                        ("kit_nowhere:lookup", "no module named 'kit_nowhere'")])
def test_a_tool_that_cannot_be_offered_is_a_config_error(make_team, tool: str, says: str) -> None:
    team = make_team(agents=1)
    _with_tools(team, "kit_cfg")
    team.data["tools"] = [tool]
    team.write()
    run = team.run()
    assert run.proc.returncode == 2, run.output
    lines = run.output.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in run.output, run.output


def _double_tools_run(team, llm: dict, double) -> list[dict]:
    _with_tools(team, f"kit_{llm['provider']}", "lookup")
    team.data["llm"] = llm
    team.write()
    double.faults.extend(["tool"])  # the first call asks for the tool; the next answers
    run = team.run()
    assert run.proc.returncode == 0, run.output
    return team.latest("agent-a").messages


@pytest.mark.parametrize("api", ["ollama", "openai"])
def test_a_tool_call_through_each_api_reaches_the_tool_and_its_result_the_model(make_team, api: str) -> None:
    team = make_team(agents=1, max_cycles=1)
    if api == "ollama":
        with OllamaDouble() as ollama:
            messages = _double_tools_run(team, {"provider": "ollama", "host": ollama.host, "model": MODEL}, ollama)
            requests = list(ollama.requests)
    else:
        with OpenAIDouble() as openai:
            messages = _double_tools_run(team, {"provider": "openai", "base_url": openai.base_url, "model": MODEL}, openai)
            requests = list(openai.requests)
    assert _tool_turns(messages) == [("lookup", json.dumps({"query": "cycle 1"}), "found cycle 1")]
    assert messages[-1]["role"] == "assistant" and messages[-1]["content"]
    # Both calls offered the tool's schema; the second carried the call and the tool's result back.
    assert len(requests) == 2
    assert all(r["tools"][0]["function"]["name"] == "lookup" for r in requests)
    assert requests[0]["tools"][0]["function"]["parameters"]["required"] == ["query"]
    back = requests[1]["messages"]
    result = back[-1]
    assert result["role"] == "tool" and result["content"] == "found cycle 1"
    asked = back[-2]["tool_calls"][0]["function"]
    if api == "ollama":
        assert asked == {"name": "lookup", "arguments": {"query": "cycle 1"}} and result["tool_name"] == "lookup"
    else:
        assert asked == {"name": "lookup", "arguments": json.dumps({"query": "cycle 1"})}
        assert result["tool_call_id"] == back[-2]["tool_calls"][0]["id"] == "call_double"


def test_the_tool_module_is_found_beside_the_config(tmp_path: Path) -> None:
    """The config check imports from the config's folder without leaving it on the path."""
    import sys

    from supervisor.config import load_config

    (tmp_path / "kit_beside.py").write_text(textwrap.dedent(KIT))
    config = tmp_path / "team.yaml"
    config.write_text("team: t\nstorage: s\nllm: {provider: scripted}\ntools: [kit_beside:lookup]\n"
                      "agents: [{name: a, task: t, max_cycles: 1}]\n")
    before = list(sys.path)
    team = load_config(config)
    assert sys.path == before
    assert team.agent_spec("a").tools == ("kit_beside:lookup",)


def test_an_agent_of_a_group_gets_the_teams_tools(make_team) -> None:
    team = make_team(agents=1, latency=0.01, max_cycles=1, groups={"crew": {"agents": 1}})
    _with_tools(team, "kit_group", "lookup")
    run = team.run()
    assert run.proc.returncode == 0, run.output
    for name in team.names:
        assert _tool_turns(team.latest(name).messages) == [("lookup", json.dumps({"query": "cycle 1"}), "found cycle 1")]


# ---- the worker's side, without a run ------------------------------------------------------------


def _lookup(query: str) -> str:
    """Finds things."""
    return f"found {query}"


def test_a_call_the_tool_cannot_take_answers_the_model_with_an_error() -> None:
    tools = {"_lookup": tool_of(_lookup)}

    def ask(name: str, arguments: str) -> str:
        return asyncio.run(run_tool(tools, ToolCall(id="1", name=name, arguments=arguments), 5.0))

    assert ask("_lookup", '{"query": "x"}') == "found x"
    assert ask("nope", "{}") == "error: there is no tool named 'nope'; the tools are _lookup"
    assert ask("_lookup", "{not json").startswith("error: the arguments are not JSON")
    assert ask("_lookup", "[1]") == "error: the arguments must be a JSON object"
    assert ask("_lookup", "[" * 100_000) == "error: the arguments nest too deeply"
    assert ask("_lookup", '{"q": 1}').startswith("error: _lookup raised TypeError:")


class _AlwaysAsks:
    """A model that asks for a tool every time and never answers: no model here does that on cue."""

    def __init__(self) -> None:
        self.calls = 0

    async def chat(self, messages: list[dict], *, cycle: int, tools=None) -> Reply:  # type: ignore[no-untyped-def]
        self.calls += 1
        return Reply(content="", tool_calls=(ToolCall(id=f"c{self.calls}", name="_lookup", arguments='{"query": "q"}'),))

    async def aclose(self) -> None:
        return None


def test_a_model_that_never_stops_asking_for_tools_fails_the_cycle_in_one_line() -> None:
    model = _AlwaysAsks()
    agent = Agent()
    context = AgentContext(name="a", task="t", max_cycles=1, params={}, state={}, messages=[], provider=model, cycle=1)
    agent.attach(context)
    with pytest.raises(ProviderError, match=r"^the model asked for tools \d+ times without answering$"):
        asyncio.run(agent.chat([{"role": "user", "content": "go"}], tools=[_lookup]))
    assert model.calls == MAX_TOOL_ROUNDS + 1
    assert len(context.exchange) == 2 * model.calls  # each call and its result, for the cycle to save or drop


def test_a_trimmed_conversation_never_starts_with_a_tools_result() -> None:
    head = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"}]
    asked = {"role": "assistant", "content": "", "tool_calls": [{"id": "1", "type": "function",
                                                                  "function": {"name": "f", "arguments": "{}"}}]}
    result = {"role": "tool", "tool_call_id": "1", "name": "f", "content": "x" * 400}
    reply = {"role": "assistant", "content": "done"}
    sent = fit_context([*head, asked, result, reply], budget=130)  # room for the result and reply, not the call
    assert sent == [*head, reply]
