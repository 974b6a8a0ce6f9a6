"""The ollama provider against a fault-injecting Ollama TEST DOUBLE (tests/ollama_double.py).

The supervisor runs for real (`python -m supervisor`) and its workers use the
official ollama client; only the server is ours, and says so.
"""

from __future__ import annotations

import socket
import time

import pytest

from harness import by_event
from ollama_double import MODEL, OllamaDouble
from workers.providers.ollama import Transient, classify, estimate_tokens, fit_context


def _use(team, host: str, **llm: object) -> None:
    team.data["llm"] = {"provider": "ollama", "host": host, "model": MODEL, "request_timeout": 5, **llm}
    team.write()


def test_transient_failures_are_retried_and_the_conversation_stays_exactly_once(make_team):
    team = make_team(agents=1, max_cycles=4, restart="temporary")
    with OllamaDouble() as double:
        double.faults.extend(["ok", "500", "midstream", "drop", "ok", "500"])
        _use(team, double.host, price_per_1k_tokens=0.5)
        run = team.run()
    assert run.proc.returncode == 0, run.output
    events = run.new_events()
    retries = by_event(events, "llm_retry", "agent-a")
    assert [r["attempt"] for r in retries] == [1, 2, 3, 1]
    assert "HTTP 500" in retries[0]["error"] and "middle of the stream" in retries[1]["error"]
    checkpoint = team.assert_exactly_once("agent-a", 4)
    cycles = by_event(events, "cycle_completed", "agent-a")
    assert all(c["tokens"]["prompt"] > 0 and c["tokens"]["completion"] > 0 and c["model_ms"] > 0 for c in cycles)
    spent = sum(c["cost_usd"] for c in cycles)
    assert spent > 0 and checkpoint.budget_spent_usd == pytest.approx(spent)


def test_a_hung_server_times_out_and_the_call_is_retried(make_team):
    team = make_team(agents=1, max_cycles=2, restart="temporary")
    with OllamaDouble(hang_s=5) as double:
        double.faults.extend(["hang"])
        _use(team, double.host, request_timeout=0.5)
        run = team.run()
    assert run.proc.returncode == 0, run.output
    (retry,) = by_event(run.new_events(), "llm_retry")
    assert "in time" in retry["error"]
    team.assert_exactly_once("agent-a", 2)


def test_a_backend_that_stays_down_fails_the_agent_and_keeps_its_checkpoint(make_team):
    team = make_team(agents=1, max_cycles=3, restart="temporary")
    with OllamaDouble() as double:
        double.faults.extend(["ok"] + ["500"] * 4)
        _use(team, double.host)
        run = team.run()
    assert run.proc.returncode == 3, run.output
    events = run.new_events()
    assert len(by_event(events, "llm_retry")) == 3
    (error,) = by_event(events, "worker_error", "agent-a")
    assert "gave up after 4 attempts" in error["message"]
    checkpoint = team.assert_exactly_once("agent-a", 1)  # cycle 1 is intact on disk
    assert checkpoint.status == "running"
    assert by_event(events, "supervisor_stopped")[0]["status"] == "failed"


def test_a_missing_model_is_one_line_and_exit_3_before_any_worker(make_team):
    team = make_team(agents=1, max_cycles=2)
    with OllamaDouble() as double:
        _use(team, double.host, model="llama3.1:8b-instruct-q8_0")
        run = team.run()
    assert run.proc.returncode == 3
    lines = [line for line in run.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "ollama pull llama3.1:8b-instruct-q8_0" in lines[0], run.output
    assert "Traceback" not in run.output and by_event(team.events(), "worker_started") == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_server_is_one_line_and_exit_3_before_any_worker(make_team):
    team = make_team(agents=2, max_cycles=1)
    _use(team, f"http://127.0.0.1:{_free_port()}")
    run = team.run()
    assert run.proc.returncode == 3
    lines = [line for line in run.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "is not reachable" in lines[0] and "ollama serve" in lines[0]
    assert "Traceback" not in run.output
    assert by_event(team.events(), "worker_started") == []


def test_an_immediate_stop_cuts_the_stream_and_the_server_sees_it(make_team):
    team = make_team(agents=2, max_cycles=3)
    with OllamaDouble(piece_delay=0.2) as double:  # a reply takes ~2 s to stream
        _use(team, double.host)
        run = team.start(terminal=True)
        run.wait_for(lambda ev: double.backend.streaming == 2, "both replies streaming")
        run.ctrl_c()
        run.wait_for(lambda ev: len(by_event(ev, "interrupt_initiated")) >= 3, "the acks")
        run.ctrl_c()
        assert run.wait() == 1, run.output
        events = run.new_events()
        for name in team.names:
            (done,) = by_event(events, "interrupt_completed", name)
            assert done["mode"] == "IMMEDIATE"
        deadline = time.monotonic() + 5
        while double.backend.cut_off < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert double.backend.cut_off == 2  # both generations were stopped by the closed connections
    for name in team.names:
        team.assert_exactly_once(name, may_be_empty=True)


def test_the_context_keeps_the_system_prompt_the_task_and_the_newest_turns():
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"}]
    messages += [{"role": "assistant" if i % 2 else "user", "content": f"turn {i} " + "x" * 400} for i in range(20)]
    window = fit_context(messages, budget=600)
    assert window[:2] == messages[:2] and window[-1] == messages[-1]
    assert sum(estimate_tokens(m) for m in window) <= 600
    assert window[2:] == messages[-len(window) + 2 :]  # the newest turns, in order
    assert fit_context(messages[:3], budget=1) == messages[:3]  # the newest turn is always sent


def test_a_stream_cut_short_is_retried_like_any_transient_failure():
    cut = Transient("the stream ended without its final message")
    assert classify(cut, "http://h:1", "m") is cut


@pytest.mark.parametrize(
    ("kind", "api", "module"),
    [
        ("scripted", "ollama", "workers.providers.scripted"),
        ("ollama", "ollama", "workers.providers.ollama"),
        ("embedded", "ollama", "workers.providers.ollama"),
        ("ollama", "openai", "workers.providers.openai"),
        ("embedded", "openai", "workers.providers.openai"),
        ("openai", "openai", "workers.providers.openai"),
        ("nonesuch", "ollama", None),
    ],
)
def test_the_forkserver_preloads_the_module_make_provider_picks(kind, api, module) -> None:
    """One choice of provider module, made in the worker's package: make_provider and the preload both ask it."""
    import sys

    from workers.providers import preload, provider_module

    assert provider_module(kind, api) == module
    preload([[kind, api]])
    assert module is None or module in sys.modules


LEAN_PRELOAD = """
import json, sys
from workers.providers import preload
preload([["ollama", "ollama"], ["openai", "openai"]])
import httpx, ollama, openai
try:
    httpx.main()
    said = None
except RuntimeError as exc:
    said = str(exc)
print(json.dumps({"loaded": sorted(m for m in ("click", "pygments", "rich") if m in sys.modules), "said": said,
                  "clients": [hasattr(ollama, "AsyncClient"), hasattr(openai, "AsyncOpenAI")]}))
"""


@pytest.mark.e2e  # a fresh interpreter: this one has imported httpx long ago
def test_the_model_clients_come_without_httpx_command_line_client() -> None:
    """httpx imports its CLI (click, pygments, rich: 6.5 MB) when click is there; no worker should carry it."""
    import importlib.util

    from harness import fresh_python

    if importlib.util.find_spec("click") is None:
        pytest.skip("without click installed, httpx never loads its command-line client")
    found = fresh_python(LEAN_PRELOAD)
    assert found["loaded"] == []
    assert found["clients"] == [True, True]
    assert "not loaded in an agent-supervisor worker" in found["said"]


def test_the_model_server_takes_a_burst_of_connections_before_it_accepts_any():
    """A team's agents connect at once (a pack's, a big team's first calls): none may wait for a SYN retry.

    socketserver listens with a backlog of 5; the kernel drops a connection beyond it, and the client's
    SYN is retried a second later. The server here never accepts: the backlog alone must hold them all.
    """
    from workers.model_server import ModelHTTPServer

    server = ModelHTTPServer(("127.0.0.1", 0), backend=None)  # type: ignore[arg-type]  # nothing is served
    clients: list[socket.socket] = []
    try:
        for _ in range(64):
            client = socket.create_connection(server.server_address, timeout=0.5)  # a dropped SYN: timeout
            clients.append(client)
        assert len(clients) == 64
    finally:
        for client in clients:
            client.close()
        server.server_close()
