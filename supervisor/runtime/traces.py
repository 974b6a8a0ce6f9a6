"""OpenTelemetry traces of a run, built by the root supervisor from the events it writes.

One trace per run: a span for the run, a child span per agent cycle, and under
each cycle a span for its model call, named and attributed after the GenAI
semantic conventions (`gen_ai.operation.name`, `gen_ai.request.model`,
`gen_ai.usage.input_tokens`, ...). Interrupts, checkpoints and restarts are
span events.

Why here and not in the workers: every event of the tree, a group's agents'
included, already reaches the root with what a span needs (a cycle's
duration, its model time and tokens), so one exporter in one process covers
the team. Workers import nothing more and start no exporter thread (32 of them
would pay OpenTelemetry's import 32 times), a worker killed mid-batch loses no
spans, and an unreachable collector is handled in one place. The price is
precision: a cycle's span ends when its event arrives (a pipe hop after the
worker's clock), and its model call is one span of the cycle's summed model
time, placed at the cycle's end (where the built-in agent makes its call).

A span is made whole, start to end, from what the events say, so it is built
as the SDK's finished-span record (ReadableSpan) and handed straight to the
batch processor: the live-span machinery (context, sampling, attribute
checks per span) would cost the supervisor's loop several times as much for
nothing. The run is sampled once, by the SDK's sampler (OTEL_TRACES_SAMPLER
applies), when it starts.

Exporting happens on the SDK's batch thread, never on the supervisor's loop.
A failed export (no collector, a refusal) drops that batch, mutes exporting
for QUIET_S seconds, and is said once, as a `traces_export_failed` warning
event; the exporter's own log lines are kept off the terminal. At the run's
end the last spans get at most SHUTDOWN_S seconds. opentelemetry is imported
here, and this module only when traces are configured.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, Callable, Optional, Sequence
from urllib.parse import urlsplit

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from supervisor.config import TeamConfig

EXPORT_TIMEOUT_S = 1.0  # one export, retries included: a collector answers in milliseconds or is away
QUIET_S = 30.0  # after a failed export, batches are dropped unsent this long
SHUTDOWN_S = 3.0  # what the run's end waits for the last spans
BATCH_DELAY_MS = 1000
TRACES_PATH = "/v1/traces"
SERVICE = "agent-supervisor"
EXPORTER_LOGGERS = ("opentelemetry.exporter", "opentelemetry.sdk")
QUEUE_SPANS = 16384  # spans waiting for export; a big team's second of cycles fits many times over
BATCH_SPANS = 1024


def traces_url(endpoint: str) -> str:
    """A collector's base URL as OTLP/HTTP's traces URL (`.../v1/traces`), as the standard variable is read."""
    if urlsplit(endpoint).path.rstrip("/").endswith(TRACES_PATH):
        return endpoint
    return endpoint.rstrip("/") + TRACES_PATH


class _FirstMessage(logging.Handler):
    """Keeps the exporter's first complaint since `clear()` (it names the cause), instead of printing it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.text: Optional[str] = None

    def clear(self) -> None:
        self.text = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.text is not None:
            return
        try:
            self.text = " ".join(record.getMessage().split())[:300]
        except Exception:  # noqa: BLE001 - a log record that cannot format itself is no reason to fail
            self.text = None


class GuardedExporter(SpanExporter):
    """The OTLP exporter, made harmless: a failure mutes it for a while and is remembered, never raised."""

    def __init__(self, inner: SpanExporter, said: _FirstMessage, url: str) -> None:
        self.inner = inner
        self.url = url
        self.said = said
        self.failure: Optional[str] = None  # the first failure, read by the supervisor's thread
        self._quiet_until = 0.0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if time.monotonic() < self._quiet_until:
            return SpanExportResult.FAILURE
        self.said.clear()
        try:
            result = self.inner.export(spans)
            reason = self.said.text
        except Exception as exc:  # noqa: BLE001 - the exporter's failure is never the run's
            result, reason = SpanExportResult.FAILURE, f"{type(exc).__name__}: {exc}"
        if result is not SpanExportResult.SUCCESS:
            self._quiet_until = time.monotonic() + QUIET_S
            if self.failure is None:
                self.failure = _unreachable(self.url) or reason or "the collector did not accept the spans"
        return result

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        except Exception:  # noqa: BLE001
            pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class Draft:
    """A span being put together from events; `finish` makes it the SDK's finished span and queues it."""

    __slots__ = ("name", "context", "parent", "kind", "start", "end", "attributes", "events", "status", "cycle")

    def __init__(self, name: str, context: SpanContext, parent: Optional[SpanContext], kind: SpanKind, start: int,
                 attributes: dict[str, Any], cycle: Any = None) -> None:
        self.name, self.context, self.parent, self.kind = name, context, parent, kind
        self.start, self.end = start, start
        self.attributes = attributes
        self.events: list[Event] = []
        self.status = UNSET
        self.cycle = cycle

    def add_event(self, name: str, attributes: dict[str, Any], timestamp: int) -> None:
        if len(self.events) < MAX_EVENTS:
            self.events.append(Event(name, attributes, timestamp))


MAX_EVENTS = 128  # events on one span (the SDK's default limit): the run's interrupts and restarts
UNSET = Status(StatusCode.UNSET)


class RunTraces:
    """An event sink that turns the run's events into spans and exports them over OTLP/HTTP."""

    def __init__(self, config: TeamConfig, endpoint: str, warn: Callable[[str, str], None]) -> None:
        self.config = config
        self.team = config.team
        self.url = traces_url(endpoint)
        self._warn = warn
        self._warned = False
        self._said = _FirstMessage()
        self._loggers = [logging.getLogger(name) for name in EXPORTER_LOGGERS]
        self._propagated = [logger.propagate for logger in self._loggers]
        for logger in self._loggers:  # their complaints become one event, not lines on the operator's terminal
            logger.addHandler(self._said)
            logger.propagate = False
        self.exporter = GuardedExporter(OTLPSpanExporter(endpoint=self.url, timeout=EXPORT_TIMEOUT_S), self._said,
                                        self.url)
        attributes: dict[str, Any] = {"agent_supervisor.team": self.team}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = SERVICE
        # Ours alone (no global provider is set), and shut down by close(), bounded, not at interpreter exit.
        self.provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
        self.processor = BatchSpanProcessor(self.exporter, max_queue_size=QUEUE_SPANS,
                                            max_export_batch_size=BATCH_SPANS, schedule_delay_millis=BATCH_DELAY_MS)
        self.provider.add_span_processor(self.processor)
        self._resource = self.provider.resource
        self._scope = InstrumentationScope("agent_supervisor")
        self._ids = RandomIdGenerator()
        self._flags = TraceFlags(TraceFlags.SAMPLED)
        self._trace_id = 0
        self._run: Optional[Draft] = None
        self._cycles: dict[str, Draft] = {}
        self._models = {agent.name: self._model_of(agent.name) for agent in config.all_agents()}
        self._handlers: dict[str, Callable[[str, dict[str, Any], int], None]] = {
            "supervisor_started": self._started,
            "cycle_completed": self._cycle_completed,
            "checkpoint_saved": self._checkpoint_saved,
            "interrupt_initiated": self._interrupt,
            "interrupt_completed": self._interrupt_completed,
            "worker_restarted": self._restarted,
            "group_restarted": self._restarted,
            "worker_exited": self._exited,
            "supervisor_stopped": self._stopped,
        }

    def traceparent(self) -> Optional[str]:
        """The run's span as a W3C traceparent (once the run's first line is in), for the workers' own spans."""
        run = self._run
        if run is None:
            return None
        return f"00-{run.context.trace_id:032x}-{run.context.span_id:016x}-01"

    def _model_of(self, agent: str) -> tuple[str, str]:
        llm = self.config.agent(agent).llm
        if llm.provider == "scripted":
            return "scripted", "scripted"
        if llm.provider == "openai" or llm.api == "openai":
            return "openai", llm.model_name  # the OpenAI API, a real one or the embedded server's /v1
        return "ollama", llm.model_name  # Ollama's API: a real Ollama, or the embedded model server

    # ---- spans ---------------------------------------------------------------------

    def _draft(self, name: str, parent: Optional[Draft], kind: SpanKind, start: int, attributes: dict[str, Any],
               cycle: Any = None) -> Draft:
        context = SpanContext(self._trace_id, self._ids.generate_span_id(), is_remote=False, trace_flags=self._flags)
        return Draft(name, context, parent.context if parent is not None else None, kind, start, attributes, cycle)

    def _finish(self, draft: Draft, end: int) -> None:
        self.processor.on_end(ReadableSpan(
            draft.name, context=draft.context, parent=draft.parent, resource=self._resource,
            attributes=draft.attributes, events=draft.events, kind=draft.kind, status=draft.status,
            start_time=draft.start, end_time=max(end, draft.start), instrumentation_scope=self._scope))

    # ---- the sink ------------------------------------------------------------------

    def __call__(self, event: dict[str, Any]) -> None:
        if self.exporter.failure is not None and not self._warned:
            self._warned = True
            self._warn(self.url, self.exporter.failure)
        handler = self._handlers.get(event.get("event"))  # type: ignore[arg-type]
        agent = event.get("agent_id")
        if handler is None or not isinstance(agent, str):
            return
        if self._run is None and handler != self._started:
            return  # before the run's first line (an archive note), or a run not sampled
        handler(agent, event, time.time_ns())

    def _started(self, agent: str, event: dict[str, Any], now: int) -> None:
        if self._run is not None or self._trace_id:
            return
        self._trace_id = self._ids.generate_trace_id()
        name = f"run {self.team}"
        if not self.provider.sampler.should_sample(None, self._trace_id, name).decision.is_sampled():
            return  # the whole run is left out: no span of it is made
        self._run = self._draft(name, None, SpanKind.INTERNAL, now, {
            "agent_supervisor.team": self.team,
            "agent_supervisor.agents": len(self._models),
        })

    def _cycle_completed(self, agent: str, event: dict[str, Any], now: int) -> None:
        self._end_cycle(agent)
        provider, model = self._models.get(agent, ("unknown", "unknown"))
        start = now - _nanos(event.get("duration_ms"))
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
        }
        usage = _usage(event.get("tokens"))
        attributes.update(usage)
        cycle = event.get("cycle")
        if isinstance(cycle, int):
            attributes["agent_supervisor.cycle"] = cycle
        cost = event.get("cost_usd")
        if isinstance(cost, (int, float)) and not isinstance(cost, bool):
            attributes["agent_supervisor.cost_usd"] = float(cost)
        span = self._draft(f"invoke_agent {agent}", self._run, SpanKind.INTERNAL, start, attributes, cycle)
        span.end = now
        model_ms = event.get("model_ms")
        if model_ms is not None or usage:
            began = max(start, now - _nanos(model_ms)) if model_ms is not None else start
            call = self._draft(f"chat {model}", span, SpanKind.CLIENT, began, {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
                **usage,
            })
            self._finish(call, now)
        self._cycles[agent] = span

    def _checkpoint_saved(self, agent: str, event: dict[str, Any], now: int) -> None:
        open_cycle = self._cycles.get(agent)
        attributes = _fields(event, "checkpoint_id", "cycle", "status", "bytes", "duration_ms")
        if open_cycle is not None and open_cycle.cycle == event.get("cycle"):
            open_cycle.add_event("checkpoint_saved", attributes, now)
            open_cycle.end = now  # the cycle's span covers its save
            self._end_cycle(agent)
        elif self._run is not None:
            self._run.add_event("checkpoint_saved", {"agent": agent, **attributes}, now)

    def _interrupt(self, agent: str, event: dict[str, Any], now: int) -> None:
        attributes = _fields(event, "mode", "source", "interrupt_id", "trigger")
        open_cycle = self._cycles.get(agent)
        if open_cycle is not None:
            open_cycle.add_event("interrupt_received", attributes, now)
        elif self._run is not None:
            self._run.add_event("interrupt_initiated", {"agent": agent, **attributes}, now)

    def _interrupt_completed(self, agent: str, event: dict[str, Any], now: int) -> None:
        attributes = _fields(event, "mode", "source", "interrupt_id", "latency_ms", "cycle")
        open_cycle = self._cycles.get(agent)
        if open_cycle is not None:
            open_cycle.add_event("interrupt_completed", attributes, now)
            self._end_cycle(agent)
        elif self._run is not None:
            self._run.add_event("interrupt_completed", {"agent": agent, **attributes}, now)

    def _restarted(self, agent: str, event: dict[str, Any], now: int) -> None:
        self._end_cycle(agent)
        if self._run is not None:
            self._run.add_event(str(event.get("event")), {"agent": agent, **_fields(event, "attempt", "cycle")}, now)

    def _exited(self, agent: str, event: dict[str, Any], now: int) -> None:
        self._end_cycle(agent)
        if event.get("status") == "failed" and self._run is not None:
            self._run.add_event("worker_failed", {"agent": agent, **_fields(event, "exitcode")}, now)

    def _stopped(self, agent: str, event: dict[str, Any], now: int) -> None:
        if agent != self.team or self._run is None:
            return
        for name in list(self._cycles):
            self._end_cycle(name)
        self._run.attributes.update(_fields(event, "status", "exit_code"))
        if event.get("status") == "failed":
            self._run.status = Status(StatusCode.ERROR, "the run failed")
        self._finish(self._run, now)
        self._run = None

    def _end_cycle(self, agent: str) -> None:
        open_cycle = self._cycles.pop(agent, None)
        if open_cycle is not None:
            self._finish(open_cycle, open_cycle.end)

    # ---- the end -------------------------------------------------------------------

    def close(self) -> None:
        """Send what is left, waiting SHUTDOWN_S at most; say so if the collector could not be reached."""
        if self._run is not None:  # a run that ended without its stop line (an error before the loop)
            for name in list(self._cycles):
                self._end_cycle(name)
            self._finish(self._run, time.time_ns())
            self._run = None
        closing = threading.Thread(target=self.provider.shutdown, name="traces-shutdown", daemon=True)
        closing.start()
        closing.join(SHUTDOWN_S)
        if self.exporter.failure is not None and not self._warned:
            self._warned = True
            self._warn(self.url, self.exporter.failure)
        for logger, propagated in zip(self._loggers, self._propagated):
            logger.removeHandler(self._said)
            logger.propagate = propagated


def _unreachable(url: str) -> Optional[str]:
    """Why the collector cannot be reached, in words (the exporter's own last word is generic); None if it can."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=EXPORT_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"


def _nanos(milliseconds: Any) -> int:
    if isinstance(milliseconds, bool) or not isinstance(milliseconds, (int, float)) or not 0 <= milliseconds < 1e12:
        return 0
    return int(milliseconds * 1e6)


def _usage(tokens: Any) -> dict[str, int]:
    if not isinstance(tokens, dict):
        return {}
    usage = {}
    for key, name in (("prompt", "gen_ai.usage.input_tokens"), ("completion", "gen_ai.usage.output_tokens")):
        count = tokens.get(key)
        if isinstance(count, int) and not isinstance(count, bool):
            usage[name] = count
    return usage


def _fields(event: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The named fields that are plain scalars, as span attributes (an attribute cannot hold None or a mapping)."""
    return {key: event[key] for key in keys if isinstance(event.get(key), (str, int, float, bool))}
