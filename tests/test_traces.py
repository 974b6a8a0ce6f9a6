"""OpenTelemetry traces of a real run, received by a real OTLP/HTTP server in the test.

`Collector` is a small HTTP server on 127.0.0.1 that decodes each export with
the protobuf classes of `opentelemetry-proto`, as a collector would, and keeps
the spans. The team's model is the Ollama test double (real HTTP, real token
counts), so the model-call spans carry usage.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from harness import REPO, Team, by_event
from ollama_double import MODEL, OllamaDouble


class Collector:
    """An OTLP/HTTP traces endpoint: POST /v1/traces with a protobuf ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.resources: list[dict[str, Any]] = []
        self.paths: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                collector.paths.append(self.path)
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    collector.resources.append(_attributes(resource_spans.resource.attributes))
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            collector.spans.append({
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "start": span.start_time_unix_nano,
                                "end": span.end_time_unix_nano,
                                "attributes": _attributes(span.attributes),
                                "events": [(event.name, _attributes(event.attributes)) for event in span.events],
                            })
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> "Collector":
        self.thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def _attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        found[pair.key] = getattr(pair.value, kind) if kind else None
    return found


def test_one_trace_per_run_nests_run_cycle_and_model_call(make_team: Callable[..., Team]) -> None:
    # Every agent is still mid-run at the Ctrl+C: the group's agent starts later than the others, and a warm
    # client against the double finishes 50 quick cycles before it (10 ms a reply, 1000 cycles: 10 s at least).
    team = make_team(agents=2, max_cycles=1000, groups={"crew": {"agents": 1}})
    with OllamaDouble(latency=0.01) as double, Collector() as collector:
        team.data["llm"] = {"provider": "ollama", "host": double.host, "model": MODEL, "request_timeout": 5}
        team.write()
        run = team.start(env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})  # on by the standard variable alone
        for agent in team.names:
            run.wait_cycles(2, agent)
        run.ctrl_c()
        assert run.wait() == 0, run.output
    events = run.new_events()
    assert not by_event(events, "traces_export_failed")
    assert set(collector.paths) == {"/v1/traces"}
    spans = collector.spans
    assert len({span["trace_id"] for span in spans}) == 1, "one trace per run"
    (root,) = [span for span in spans if not span["parent"]]
    assert root["name"] == f"run {team.team}"
    assert {"service.name": "agent-supervisor", "agent_supervisor.team": team.team}.items() <= collector.resources[0].items()

    cycles = [span for span in spans if span["parent"] == root["span_id"]]
    calls = [span for span in spans if span["parent"] in {cycle["span_id"] for cycle in cycles}]
    assert len(cycles) == len(by_event(events, "cycle_completed")) and len(calls) == len(cycles)
    assert len(spans) == 1 + len(cycles) + len(calls)
    assert {cycle["attributes"]["gen_ai.agent.name"] for cycle in cycles} == set(team.names)  # the group's agent too
    for cycle in cycles:
        assert cycle["name"] == f"invoke_agent {cycle['attributes']['gen_ai.agent.name']}"
        assert cycle["attributes"]["gen_ai.operation.name"] == "invoke_agent"
        assert cycle["attributes"]["gen_ai.request.model"] == MODEL
        assert root["start"] <= cycle["start"] <= cycle["end"] <= root["end"]
    for call in calls:
        (cycle,) = [c for c in cycles if c["span_id"] == call["parent"]]
        assert call["name"] == f"chat {MODEL}"
        assert call["attributes"]["gen_ai.operation.name"] == "chat"
        assert call["attributes"]["gen_ai.request.model"] == MODEL
        assert call["attributes"]["gen_ai.provider.name"] == "ollama"
        assert call["attributes"]["gen_ai.usage.input_tokens"] > 0
        assert call["attributes"]["gen_ai.usage.output_tokens"] > 0
        assert cycle["start"] <= call["start"] <= call["end"] <= cycle["end"]

    checkpoints = [name for cycle in cycles for name, _ in cycle["events"] if name == "checkpoint_saved"]
    assert len(checkpoints) == len(by_event(events, "checkpoint_saved"))
    root_events = [name for name, _ in root["events"]]
    assert "interrupt_initiated" in root_events  # the Ctrl+C, issued by the supervisor
    stops = [attributes for span in spans for name, attributes in span["events"] if name == "interrupt_completed"]
    assert len(stops) == len(team.names) and {stop["mode"] for stop in stops} == {"GRACEFUL"}
    assert root["attributes"]["status"] == "interrupted" and root["attributes"]["exit_code"] == 0


def test_an_unreachable_collector_is_one_warning_and_the_run_goes_on(make_team: Callable[..., Team]) -> None:
    import socket

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    team = make_team(agents=2, max_cycles=4, latency=0.05)
    team.data["traces"] = {"endpoint": f"http://127.0.0.1:{port}"}
    team.write()
    run = team.run()
    assert run.proc.returncode == 0, run.output
    events = run.new_events()
    (warning,) = by_event(events, "traces_export_failed")
    assert warning["level"] == "warning" and warning["endpoint"] == f"http://127.0.0.1:{port}/v1/traces"
    assert warning["error"] == f"cannot connect to 127.0.0.1:{port}: Connection refused"
    assert f"traces cannot be exported to http://127.0.0.1:{port}/v1/traces" in run.output  # said once on the console
    for name in team.names:
        team.assert_exactly_once(name, 4)
    assert "Traceback" not in run.output and "Failed to export" not in run.output
    assert "opentelemetry" not in run.output.lower()


@pytest.mark.e2e  # a run in a child interpreter
def test_a_run_without_metrics_or_traces_imports_neither(tmp_path: Path) -> None:
    (tmp_path / "team.yaml").write_text(
        "team: plain\nstorage: state\nllm: {provider: scripted, latency: 0.01}\n"
        "agents: [{name: solo, task: count, max_cycles: 2}]\n")
    script = (
        "import sys\n"
        "from supervisor.config import load_config\n"
        "from supervisor.runtime.run import run_team\n"
        "outcome = run_team(load_config(sys.argv[1]))\n"
        "print(outcome.exit_code, sorted({m.split('.')[0] for m in sys.modules"
        " if m.startswith(('opentelemetry', 'prometheus_client'))}))\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "team.yaml")], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(" ", 1) == ["0", "[]\n"]
    lines = [json.loads(line) for line in (tmp_path / "state" / "events.jsonl").read_text().splitlines()]
    assert by_event(lines, "cycle_completed") and not by_event(lines, "metrics_serving")


def test_the_workers_are_given_the_runs_span_as_their_trace_parent(make_team: Callable[..., Team]) -> None:
    team = make_team(agents=1, max_cycles=2, latency=0.01, groups={"crew": {"agents": 1}})
    team.data["agent"] = "tests.agent_probe:TraceProbe"
    team.write()
    with Collector() as collector:
        run = team.start(env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
        assert run.wait() == 0, run.output
    (root,) = [span for span in collector.spans if not span["parent"]]
    expected = f"00-{root['trace_id']}-{root['span_id']}-01"
    for name in team.names:  # the team's own agent, and the group's: a worker's own spans are children of the run
        state = team.latest(name).extra["state"]
        assert (state["traceparent"], state["environ"]) == (expected, expected), name
