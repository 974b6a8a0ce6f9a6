"""provider: openai through the official client: against an OpenAI-API TEST DOUBLE (tests/openai_double.py)
for the failure paths, and against the real bundled model (tests/bundled_model.py) for the happy path and
an immediate stop.

The supervisor runs for real (`python -m supervisor`) and its workers use the
official openai client; only the double's server is ours, and says so.
"""

from __future__ import annotations

import gzip
import random
import socket
import time
from pathlib import Path
from typing import Any, Optional

import pytest

from bundled_model import NAME, BundledModel, needs_model
from harness import by_event, cli
from openai_double import MODEL, OpenAIDouble
from workers.providers.openai import StreamReading
from workers.providers.retries import RETRY_AFTER_CAP, Transient, retry_after, retry_delay


def _use(team, base_url: str, **llm: object) -> None:
    team.data["llm"] = {"provider": "openai", "base_url": base_url, "model": MODEL, "request_timeout": 5, **llm}
    team.write()


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


# ---- against the test double: the failure paths ----------------------------------------


def test_transient_failures_are_retried_and_the_conversation_stays_exactly_once(make_team):
    team = make_team(agents=1, max_cycles=4, restart="temporary")
    with OpenAIDouble(retry_after=1) as double:
        double.faults.extend(["ok", "500", "malformed", "cut", "ok", "429", "midstream", "shapeless"])
        _use(team, double.base_url, price={"input_per_1m": 100.0, "output_per_1m": 300.0})
        run = team.run()
    assert run.proc.returncode == 0, run.output
    events = run.new_events()
    retries = by_event(events, "llm_retry", "agent-a")
    assert [r["attempt"] for r in retries] == [1, 2, 3, 1, 2, 3]
    errors = [r["error"] for r in retries]
    assert "HTTP 500" in errors[0] and "malformed server-sent event" in errors[1]
    assert "broke off" in errors[2]  # the connection cut mid-stream
    assert "HTTP 429" in errors[3] and retries[3]["delay_s"] == 1.0  # the server's Retry-After, not a backoff draw
    assert "middle of the stream" in errors[4] and "stopped before its end" in errors[5]
    assert all("\n" not in e for e in errors)
    checkpoint = team.assert_exactly_once("agent-a", 4)
    cycles = by_event(events, "cycle_completed", "agent-a")
    for c in cycles:
        prompt, completion = c["tokens"]["prompt"], c["tokens"]["completion"]
        assert prompt > 0 and completion > 0 and c["model_ms"] > 0
        assert c["cost_usd"] == pytest.approx((prompt * 100.0 + completion * 300.0) / 1e6)  # input and output apart
    assert checkpoint.budget_spent_usd == pytest.approx(sum(c["cost_usd"] for c in cycles))


def test_a_4xx_fails_the_agent_at_once_in_one_line_and_keeps_its_checkpoint(make_team):
    team = make_team(agents=1, max_cycles=3, restart="temporary")
    with OpenAIDouble() as double:
        double.faults.extend(["ok", "400"])
        _use(team, double.base_url)
        run = team.run()
        calls = len(double.authorizations)
    assert run.proc.returncode == 3, run.output
    events = run.new_events()
    assert by_event(events, "llm_retry") == [] and calls == 2  # no second try of a bad request
    (error,) = by_event(events, "worker_error", "agent-a")
    assert "HTTP 400" in error["message"] and "injected bad request" in error["message"]
    assert "\n" not in error["message"] and "Traceback" not in run.output
    team.assert_exactly_once("agent-a", 1)


def test_a_server_that_stays_down_fails_the_agent_after_the_last_attempt(make_team):
    team = make_team(agents=1, max_cycles=3, restart="temporary")
    with OpenAIDouble() as double:
        double.faults.extend(["ok"] + ["500"] * 4)
        _use(team, double.base_url)
        run = team.run()
    assert run.proc.returncode == 3, run.output
    events = run.new_events()
    assert len(by_event(events, "llm_retry")) == 3
    (error,) = by_event(events, "worker_error", "agent-a")
    assert "gave up after 4 attempts" in error["message"]
    team.assert_exactly_once("agent-a", 1)


def test_a_hung_server_times_out_and_the_call_is_retried(make_team):
    team = make_team(agents=1, max_cycles=2, restart="temporary")
    with OpenAIDouble(hang_s=5) as double:
        double.faults.extend(["hang"])
        _use(team, double.base_url, request_timeout=0.5)
        run = team.run()
    assert run.proc.returncode == 0, run.output
    (retry,) = by_event(run.new_events(), "llm_retry")
    assert "in time" in retry["error"]
    team.assert_exactly_once("agent-a", 2)


def test_an_immediate_stop_closes_the_connection_and_the_server_sees_it(make_team):
    team = make_team(agents=2, max_cycles=3)
    with OpenAIDouble(piece_delay=0.2) as double:  # a reply takes ~2 s to stream
        _use(team, double.base_url)
        _stop_twice_while_generating(team, double.backend)
        assert double.backend.cut_off == 2  # both generations were stopped by the closed connections


def _stop_twice_while_generating(team, backend) -> None:
    """Ctrl+C twice while both agents' replies are being generated; wait until the server has let go of both."""
    run = team.start(terminal=True)
    run.wait_for(lambda ev: backend.streaming == 2, "both replies generating")
    run.ctrl_c()
    run.wait_for(lambda ev: len(by_event(ev, "interrupt_initiated")) >= 3, "the acks")
    run.ctrl_c()
    assert run.wait() == 1, run.output
    for name in team.names:
        (done,) = by_event(run.new_events(), "interrupt_completed", name)
        assert done["mode"] == "IMMEDIATE"
        team.assert_exactly_once(name, may_be_empty=True)
    deadline = time.monotonic() + 30
    while backend.streaming and time.monotonic() < deadline:
        time.sleep(0.05)


def _storage_text(storage: Path) -> str:
    """Every file under storage as text, gzipped checkpoints opened."""
    texts = []
    for path in storage.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            texts.append((gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode("utf-8", "replace"))
    return "\n".join(texts)


def test_the_api_key_is_sent_to_the_server_and_shown_nowhere(make_team):
    key = "sk-test-" + "".join(random.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(32))
    team = make_team(agents=1, max_cycles=2, restart="temporary")
    with OpenAIDouble(echo_auth=True) as double:  # a server that repeats the key in its error messages
        double.faults.extend(["500", "midstream", "ok", "401"])
        _use(team, double.base_url, api_key_env="AGENT_SUPERVISOR_TEST_KEY")
        run = team.start(env={"AGENT_SUPERVISOR_TEST_KEY": key})
        assert run.wait() == 3, run.output
        assert set(double.authorizations) == {f"Bearer {key}"}  # the worker read it and used it
    error = by_event(team.events(), "worker_error", "agent-a")[0]["message"]
    assert "HTTP 401" in error and "AGENT_SUPERVISOR_TEST_KEY" in error and "[key]" in error
    shown = [run.output, _storage_text(team.root)]
    config = str(team.config)
    for command in (("status", config), ("status", config, "--json"), ("logs", config), ("logs", config, "--json"),
                    ("checkpoints", config, "--agent", "agent-a", "--show", "latest"),
                    ("report", config, "--output", str(team.root / "report.html"))):
        done = cli(*command)
        shown += [done.stdout, done.stderr]
    shown.append((team.root / "report.html").read_text())
    assert all(key not in text for text in shown)
    assert all(key[8:20] not in text for text in shown)  # not even a piece of it


def test_a_key_variable_that_is_not_set_fails_in_one_line(make_team):
    team = make_team(agents=1, max_cycles=1)
    with OpenAIDouble() as double:
        _use(team, double.base_url, api_key_env="AGENT_SUPERVISOR_UNSET_KEY")
        run = team.start(env={"AGENT_SUPERVISOR_UNSET_KEY": ""})
        code = run.wait()
    lines = _error_lines(run.output)
    assert code == 2 and len(lines) == 1 and "AGENT_SUPERVISOR_UNSET_KEY is not set" in lines[0], run.output
    assert by_event(team.events(), "worker_started") == []


# ---- pre-flight: before any worker ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _preflight_refuses(team, code: int, env: Optional[dict[str, str]] = None) -> str:
    """Run the team; it must stop before any worker with `code` and one error line, which is returned."""
    run = team.start(env=env)
    assert run.wait() == code, run.output
    lines = _error_lines(run.output)
    assert len(lines) == 1 and "Traceback" not in run.output, run.output
    assert by_event(team.events(), "worker_started") == []
    return lines[0]


def test_an_unreachable_server_is_one_line_and_exit_3(make_team):
    team = make_team(agents=2, max_cycles=1)
    _use(team, f"http://127.0.0.1:{_free_port()}/v1")
    line = _preflight_refuses(team, 3)
    assert "is not reachable" in line and "start it" in line


def test_a_server_that_never_answers_is_given_up_in_bounded_time(make_team):
    team = make_team(agents=1, max_cycles=1)
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        _use(team, f"http://127.0.0.1:{silent.getsockname()[1]}/v1")
        line = _preflight_refuses(team, 3)
    assert "no answer within" in line


def test_a_model_the_server_does_not_list_is_one_line_naming_what_it_lists(make_team):
    team = make_team(agents=1, max_cycles=1)
    with OpenAIDouble() as double:
        _use(team, double.base_url, model="llama-3-70b")
        line = _preflight_refuses(team, 3)
    assert "'llama-3-70b' is not served by" in line and f"it lists: {MODEL}" in line and "load it" in line


def test_a_base_url_without_the_api_path_says_where_the_api_usually_is(make_team):
    team = make_team(agents=1, max_cycles=1)
    with OpenAIDouble() as double:
        _use(team, double.base_url.removesuffix("/v1"))
        line = _preflight_refuses(team, 3)
    assert "HTTP 404" in line and "usually ends in /v1" in line


def test_a_refused_or_echoed_key_is_one_line_without_the_key(make_team):
    key = "sk-preflight-" + "".join(random.choice("abcdefghjkmnpqrstuvwxyz") for _ in range(24))
    team = make_team(agents=1, max_cycles=1)
    with OpenAIDouble(key="sk-the-right-one", echo_auth=True) as double:
        _use(team, double.base_url, api_key_env="AGENT_SUPERVISOR_TEST_KEY")
        line = _preflight_refuses(team, 3, env={"AGENT_SUPERVISOR_TEST_KEY": key})
    assert "the key was refused (HTTP 401)" in line and "$AGENT_SUPERVISOR_TEST_KEY" in line and key not in line
    with OpenAIDouble(key=key, echo_auth=True, models_status=500) as double:  # an error that repeats the key
        _use(team, double.base_url, api_key_env="AGENT_SUPERVISOR_TEST_KEY")
        line = _preflight_refuses(team, 3, env={"AGENT_SUPERVISOR_TEST_KEY": key})
    assert "HTTP 500" in line and "[key]" in line and key not in line


# ---- against the real bundled model over /v1 -----------------------------------------


@pytest.fixture(scope="module")
def bundled():
    with BundledModel() as served:
        yield served


@needs_model
def test_a_team_on_the_bundled_model_over_openais_api_completes_with_real_words(make_team, bundled):
    team = make_team(agents=2, max_cycles=2)
    _use(team, bundled.base_url, model=NAME, options={"temperature": 0, "max_tokens": 12},
         price={"input_per_1m": 0.15, "output_per_1m": 0.60}, system_prompt="You are brief.")
    run = team.run()
    assert run.proc.returncode == 0, run.output
    for name in team.names:
        checkpoint = team.latest(name)
        replies = [m["content"] for m in checkpoint.messages if m["role"] == "assistant"]
        assert checkpoint.cycle == 2 and len(replies) == 2 and all(r.strip() for r in replies)
        for cycle in by_event(run.new_events(), "cycle_completed", name):
            prompt, completion = cycle["tokens"]["prompt"], cycle["tokens"]["completion"]
            assert 0 < completion <= 12 and prompt > 0 and cycle["model_ms"] > 0
            assert cycle["cost_usd"] == pytest.approx((prompt * 0.15 + completion * 0.60) / 1e6)


@needs_model
def test_an_immediate_stop_cuts_real_generation_over_openais_api(make_team, bundled):
    team = make_team(agents=2, max_cycles=2)
    _use(team, bundled.base_url, model=NAME, options={"temperature": 0, "max_tokens": 2000})
    cut_before = bundled.backend.cut_off
    _stop_twice_while_generating(team, bundled.backend)
    assert bundled.backend.cut_off == cut_before + 2  # the model stopped generating for both


# ---- the parts ---------------------------------------------------------------------------


def test_retry_after_is_read_in_seconds_milliseconds_or_a_date_and_bounded() -> None:
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert 50 < retry_after({"retry-after": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))}) <= 60
    assert retry_after({"retry-after": "soon"}) is None and retry_after({}) is None and retry_after(None) is None
    rng = random.Random(1)
    assert retry_delay(Transient("x", retry_after=3600.0), 0, rng) == RETRY_AFTER_CAP
    assert retry_delay(Transient("x", retry_after=1.5), 3, rng) == 1.5
    assert 0.0 <= retry_delay(Transient("x"), 2, rng) <= 2.0  # no Retry-After: the jittered backoff


class _Chunk:
    def __init__(self, **fields: Any) -> None:
        self.model_extra = fields.pop("model_extra", {})
        self.__dict__.update(fields)


class _Part:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def test_a_stream_reading_takes_text_end_usage_and_model_time_and_ignores_odd_shapes() -> None:
    reading = StreamReading()
    reading.take(_Chunk(choices=5, usage="lots"))
    reading.take(_Chunk(choices=[_Part(delta=_Part(content=7), finish_reason=None)], usage=None))
    assert not reading.finished and reading.parts == [] and reading.usage is None
    reading.take(_Chunk(choices=[_Part(delta=_Part(content="Hi"), finish_reason=None)], usage=None))
    reading.take(_Chunk(choices=[_Part(delta=_Part(content=None), finish_reason="stop")], usage=None,
                        model_extra={"timings": {"prompt_ms": 5, "predicted_ms": 20.5}}))
    reading.take(_Chunk(choices=[], usage=_Part(prompt_tokens=True, completion_tokens=3)))
    reading.take(_Chunk(choices=[], usage=_Part(prompt_tokens=10**30, completion_tokens=3)))
    assert reading.usage is None  # a boolean is not a count, nor is an absurd number
    hostile = StreamReading()
    hostile.take(_Chunk(choices=[_Part(delta=None, finish_reason="stop")],
                        model_extra={"timings": {"prompt_ms": float("nan"), "predicted_ms": float("inf")}}))
    assert hostile.finished and hostile.model_ms is None  # the call's wall time is used instead
    reading.take(_Chunk(choices=[], usage=_Part(prompt_tokens=11, completion_tokens=3)))
    assert reading.parts == ["Hi"] and reading.finished and reading.usage == (11, 3) and reading.model_ms == 25.5


# ---- the config ----------------------------------------------------------------------------


def _config(**llm: Any) -> Any:
    from supervisor.config import TeamConfig

    agents = llm.pop("agents", [{"name": "a", "task": "t", "max_cycles": 1}])
    return TeamConfig.from_mapping({"team": "t", "storage": "s", "llm": llm, "agents": agents}, source="team.yaml")


def _refused(**llm: Any) -> str:
    from supervisor.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        _config(**llm)
    return str(caught.value)


OPENAI = {"provider": "openai", "base_url": "http://127.0.0.1:8000/v1", "model": "m"}


@pytest.mark.parametrize("llm,field,problem", [
    ({**OPENAI, "base_url": "127.0.0.1:8000/v1"}, "llm.base_url", "expected http:// or https://"),
    ({**OPENAI, "base_url": "ftp://h/v1"}, "llm.base_url", "expected http:// or https://"),
    ({**OPENAI, "base_url": "http://user:pw@h/v1"}, "llm.base_url", "must not hold a user or password"),
    ({**OPENAI, "base_url": "http://h:99999/v1"}, "llm.base_url", "invalid base_url"),
    ({"provider": "openai", "model": "m"}, "agents[0].llm.base_url", "required for provider openai"),
    ({"provider": "openai", "base_url": "http://h/v1"}, "agents[0].llm.model", "required for provider openai"),
    ({**OPENAI, "api_key_env": "sk-live-1234"}, "llm.api_key_env", "never the key itself"),
    ({**OPENAI, "price": {"input_per_1m": 1.0, "output_per_1m": 2.0}, "price_per_1k_tokens": 0.5}, "llm.price", "not both"),
    ({**OPENAI, "price": {"input_per_1m": 1.0}}, "llm.price.output_per_1m", "required"),
    ({**OPENAI, "price": {"input_per_1m": -1.0, "output_per_1m": 2.0}}, "llm.price.input_per_1m", ">= 0"),
    ({**OPENAI, "options": {"stream": False}}, "llm.options.stream", "set by the supervisor"),
    ({"provider": "embedded", "api": "grpc"}, "llm.api", "must be one of ollama, openai"),
    ({"provider": "embedded", "api": "openai", "options": {"num_predict": 8}}, "llm.options.num_predict",
     "it is called max_tokens there"),
    ({"provider": "ollama", "options": {"max_tokens": 8}}, "llm.options.max_tokens", "it is called num_predict there"),
], ids=["no-scheme", "ftp", "userinfo", "bad-port", "no-base-url", "no-model", "key-not-name", "two-prices",
        "half-price", "negative-price", "stream-option", "unknown-api", "ollama-name-on-openai", "openai-name-on-ollama"])
def test_config_mistakes_are_one_line_naming_the_field(llm: dict, field: str, problem: str) -> None:
    message = _refused(**llm)
    assert f"team.yaml: {field}: " in message and problem in message and "\n" not in message
    assert "sk-live-1234" not in message


def test_the_team_may_leave_the_server_to_each_agent() -> None:
    config = _config(provider="openai", model="m", agents=[
        {"name": "a", "task": "t", "max_cycles": 1, "llm": {"base_url": "http://gpu-a:8000/v1"}},
        {"name": "b", "task": "t", "max_cycles": 1, "llm": {"base_url": "http://gpu-b:8000/v1"}},
    ])
    assert [config.agent_spec(name).llm.base_url for name in "ab"] == ["http://gpu-a:8000/v1", "http://gpu-b:8000/v1"]


def test_each_agent_gets_its_api_its_server_and_its_own_price() -> None:
    config = _config(**OPENAI, price_per_1k_tokens=0.5, agents=[
        {"name": "a", "task": "t", "max_cycles": 1},
        {"name": "b", "task": "t", "max_cycles": 1, "llm": {"price": {"input_per_1m": 1.0, "output_per_1m": 3.0}}},
        {"name": "c", "task": "t", "max_cycles": 1, "llm": {"provider": "embedded", "api": "openai", "model": None}},
    ], api_key_env="SOME_KEY")
    a, b, c = (config.agent_spec(name, model_host="http://127.0.0.1:4321").llm for name in "abc")
    assert (a.api, a.base_url, a.price) == ("openai", "http://127.0.0.1:8000/v1", None)
    assert a.cost_usd(1000, 1000) == pytest.approx(1.0)  # the older blended form: 2000 tokens at $0.5 per 1000
    assert b.price is not None and b.cost_usd(1_000_000, 1_000_000) == pytest.approx(4.0)  # the agent's price wins
    assert (c.api, c.base_url, c.model) == ("openai", "http://127.0.0.1:4321/v1", "smollm2:135m-instruct")
    assert (a.api_key_env, c.api_key_env) == ("SOME_KEY", None)  # the bundled server wants no key


# ---- budgets and the embedded server's own /v1 ----------------------------------------------


def test_an_agent_budget_counts_input_and_output_at_their_own_prices(make_team):
    team = make_team(agents=1, max_cycles=10)
    with OpenAIDouble() as double:
        _use(team, double.base_url, price={"input_per_1m": 1000.0, "output_per_1m": 3000.0})
        team.data["agents"][0]["budget_usd"] = 0.05
        team.write()
        run = team.run()
    assert run.proc.returncode == 0, run.output
    events = run.new_events()
    cycles = by_event(events, "cycle_completed", "agent-a")
    for c in cycles:
        assert c["cost_usd"] == pytest.approx((c["tokens"]["prompt"] * 1000.0 + c["tokens"]["completion"] * 3000.0) / 1e6)
    spent = sum(c["cost_usd"] for c in cycles)
    assert spent >= 0.05 and spent - cycles[-1]["cost_usd"] < 0.05  # it stopped at the first cycle past its budget
    checkpoint = team.latest("agent-a")
    assert checkpoint.status == "interrupted" and checkpoint.cycle == len(cycles) < 10
    assert checkpoint.budget_spent_usd == pytest.approx(spent)
    assert any("budget" in e["message"] for e in by_event(events, "interrupt_initiated", "agent-a"))


@needs_model
def test_embedded_over_openais_api_keeps_ctrl_c_semantics_and_resumes_to_completion(make_team):
    team = make_team(agents=2, max_cycles=3)
    team.data["llm"] = {"provider": "embedded", "api": "openai", "system_prompt": "You are brief.",
                        "options": {"temperature": 0, "max_tokens": 24}, "price": {"input_per_1m": 0.1, "output_per_1m": 0.4}}
    team.write()
    run = team.start(terminal=True)
    run.wait_all_started()
    run.ctrl_c()  # graceful: the call in flight finishes and is saved
    assert run.wait() == 0, run.output
    for name in team.names:
        assert team.latest(name).status == "interrupted"
    again = team.run()
    assert again.proc.returncode == 0, again.output
    events = team.events()
    assert "OpenAI's API" in again.output
    for name in team.names:
        final = team.latest(name)
        replies = [m for m in final.messages if m["role"] == "assistant"]
        assert final.status == "completed" and final.cycle == 3 and len(replies) == 3
        cycles = by_event(events, "cycle_completed", name)
        assert len(cycles) == 3
        for c in cycles:
            prompt, completion = c["tokens"]["prompt"], c["tokens"]["completion"]
            assert prompt > 0 and 0 < completion <= 24 and c["model_ms"] > 0
            assert c["cost_usd"] == pytest.approx((prompt * 0.1 + completion * 0.4) / 1e6)
