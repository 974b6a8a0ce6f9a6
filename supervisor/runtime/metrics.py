"""Prometheus metrics of the live run, computed from the events the root supervisor writes.

Every event of the tree reaches the root's event log (a group's too), so one
sink there sees all there is to count: no worker exports anything, and no
metrics file is shared between processes. The counters live in a private
CollectorRegistry, served by prometheus_client's own HTTP server from a thread
of the supervisor while the run is live; the port is closed when it ends.

Labels are bounded by the config: `team`, `agent` (an agent's, a group's or
the team's name, as the event's `agent_id`), `model`, `mode`, `source`,
`state`. No message, id or reply ever becomes a label. prometheus_client is
imported here, and this module only when `metrics:` is configured.
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Callable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import start_http_server

from supervisor.config import TeamConfig
from supervisor.config.fields import split_listen

PREFIX = "agent_supervisor_"
STATES = ("running", "completed", "interrupted", "failed")
STOP_STATES = ("completed", "interrupted", "failed")
# Seconds. A cycle is a model call or several: from a scripted 50 ms to minutes on a slow model.
CYCLE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# An interrupt is answered in milliseconds, or waits out the cycle in flight (graceful).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
MAX_AGENTS = 10_000  # distinct agent labels at most (the config's tree is far smaller); more are not counted


def model_label(config: TeamConfig, agent: str) -> str:
    """What an agent's model is called in labels: the model's name, or `scripted`."""
    try:
        llm = config.agent(agent).llm
    except KeyError:
        return "unknown"  # a group, the team, or an agent a reload added
    return "scripted" if llm.provider == "scripted" else llm.model_name


class _Agent:
    """One agent's children of each metric, looked up once: labels() takes a lock and a dict walk."""

    def __init__(self, metrics: "RunMetrics", agent: str) -> None:
        team, model = metrics.team, model_label(metrics.config, agent)
        self.model = model
        self.cycles = metrics.cycles.labels(team, agent)
        self.cycle = metrics.cycle.labels(team, agent)
        self.input_tokens = metrics.input_tokens.labels(team, agent, model)
        self.output_tokens = metrics.output_tokens.labels(team, agent, model)
        self.cost = metrics.cost.labels(team, agent, model)
        self.cycle_seconds = metrics.cycle_seconds.labels(team, agent)
        self.model_seconds = metrics.model_seconds.labels(team, agent, model)
        self.restarts = metrics.restarts.labels(team, agent)
        self.states = {state: metrics.state.labels(team, agent, state) for state in STATES}
        self.state: Optional[str] = None


class RunMetrics:
    """An event sink that keeps the run's metrics; `serve` opens the port, `close` shuts it."""

    def __init__(self, config: TeamConfig) -> None:
        self.config = config
        self.team = config.team
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        agent_labels = ("team", "agent")
        model_labels = ("team", "agent", "model")
        self.cycles = Counter(PREFIX + "cycles", "Cycles completed", agent_labels, registry=r)
        self.cycle = Gauge(PREFIX + "agent_cycle", "The agent's latest completed cycle", agent_labels, registry=r)
        self.input_tokens = Counter(PREFIX + "input_tokens", "Prompt tokens sent to the model", model_labels, registry=r)
        self.output_tokens = Counter(PREFIX + "output_tokens", "Completion tokens from the model", model_labels,
                                     registry=r)
        self.cost = Counter(PREFIX + "cost_usd", "Money spent on model calls, in USD", model_labels, registry=r)
        self.restarts = Counter(PREFIX + "restarts", "Workers (or groups) restarted", agent_labels, registry=r)
        self.interrupts = Counter(PREFIX + "interrupts", "Interrupts issued (the team's name) or received (an agent's)",
                                  ("team", "agent", "mode", "source"), registry=r)
        self.state = Gauge(PREFIX + "agent_state", "1 for the agent's current state, 0 for the others",
                           ("team", "agent", "state"), registry=r)
        self.cycle_seconds = Histogram(PREFIX + "cycle_duration_seconds", "A cycle's duration", agent_labels,
                                       buckets=CYCLE_BUCKETS, registry=r)
        self.model_seconds = Histogram(PREFIX + "model_call_duration_seconds", "The model's own time in a cycle",
                                       model_labels, buckets=CYCLE_BUCKETS, registry=r)
        self.latency = Histogram(PREFIX + "interrupt_latency_seconds",
                                 "From an interrupt's issue to the agent's stop being durable",
                                 ("team", "agent", "mode", "source"), buckets=LATENCY_BUCKETS, registry=r)
        self.alive = Gauge(PREFIX + "workers_alive", "Agents' worker processes running", ("team",), registry=r)
        self.last_stop = Gauge(PREFIX + "last_stop", "1 for how the run's last stop ended, 0 for the others",
                               ("team", "state"), registry=r)
        self.last_exit = Gauge(PREFIX + "last_stop_exit_code", "The exit code of the run's last stop", ("team",),
                               registry=r)
        ProcessCollector(namespace=PREFIX + "supervisor", registry=r)  # the root supervisor's own CPU and memory
        self._agents: dict[str, _Agent] = {}
        self._alive: set[str] = set()
        self._alive_gauge = self.alive.labels(self.team)
        self._group_agents = {group.name: [a.name for a in group.agents] for group in config.groups}
        self._server: Optional[Any] = None
        self._thread: Optional[threading.Thread] = None
        self._handlers: dict[str, Callable[[_Agent, str, dict[str, Any]], None]] = {
            "cycle_completed": self._cycle_completed,
            "worker_started": self._worker_started,
            "worker_exited": self._worker_exited,
            "worker_restarted": self._restarted,
            "group_restarted": self._restarted,
            "group_exited": self._group_exited,
            "interrupt_initiated": self._interrupt_initiated,
            "interrupt_completed": self._interrupt_completed,
            "supervisor_stopped": self._supervisor_stopped,
        }

    # ---- the sink ------------------------------------------------------------------

    def __call__(self, event: dict[str, Any]) -> None:
        handler = self._handlers.get(event.get("event"))  # type: ignore[arg-type]
        if handler is None:
            return
        name = event.get("agent_id")
        if not isinstance(name, str):
            return
        agent = self._agents.get(name)
        if agent is None:
            if len(self._agents) >= MAX_AGENTS:
                return
            agent = self._agents[name] = _Agent(self, name)
        handler(agent, name, event)

    def _cycle_completed(self, agent: _Agent, _name: str, event: dict[str, Any]) -> None:
        agent.cycles.inc()
        cycle = event.get("cycle")
        if isinstance(cycle, int):
            agent.cycle.set(cycle)
        duration = _number(event.get("duration_ms"))
        if duration is not None:
            agent.cycle_seconds.observe(duration / 1000.0)
        model_ms = _number(event.get("model_ms"))
        if model_ms is not None:
            agent.model_seconds.observe(model_ms / 1000.0)
        cost = _number(event.get("cost_usd"))
        if cost:
            agent.cost.inc(cost)
        tokens = event.get("tokens")
        if isinstance(tokens, dict):
            prompt, completion = _number(tokens.get("prompt")), _number(tokens.get("completion"))
            if prompt:
                agent.input_tokens.inc(prompt)
            if completion:
                agent.output_tokens.inc(completion)

    def _worker_started(self, agent: _Agent, name: str, event: dict[str, Any]) -> None:
        cycle = event.get("cycle")
        if isinstance(cycle, int):
            agent.cycle.set(cycle)
        self._set_state(agent, event.get("status"))
        self._alive.add(name)
        self._alive_gauge.set(len(self._alive))

    def _worker_exited(self, agent: _Agent, name: str, event: dict[str, Any]) -> None:
        self._set_state(agent, event.get("status"))
        self._alive.discard(name)
        self._alive_gauge.set(len(self._alive))

    def _group_exited(self, agent: _Agent, name: str, event: dict[str, Any]) -> None:
        """A group's process took its agents' workers with it."""
        self._alive.difference_update(self._group_agents.get(name, ()))
        self._alive_gauge.set(len(self._alive))

    def _restarted(self, agent: _Agent, _name: str, _event: dict[str, Any]) -> None:
        agent.restarts.inc()

    def _interrupt_initiated(self, agent: _Agent, name: str, event: dict[str, Any]) -> None:
        mode, source = _word(event.get("mode")), _word(event.get("source"))
        self.interrupts.labels(self.team, name, mode, source).inc()

    def _interrupt_completed(self, agent: _Agent, name: str, event: dict[str, Any]) -> None:
        latency = _number(event.get("latency_ms"))
        if latency is not None:
            self.latency.labels(self.team, name, _word(event.get("mode")), _word(event.get("source"))).observe(
                latency / 1000.0)

    def _supervisor_stopped(self, agent: _Agent, _name: str, event: dict[str, Any]) -> None:
        status = event.get("status")
        for state in STOP_STATES:
            self.last_stop.labels(self.team, state).set(1 if state == status else 0)
        code = event.get("exit_code")
        if isinstance(code, int):
            self.last_exit.labels(self.team).set(code)

    def _set_state(self, agent: _Agent, status: Any) -> None:
        if status not in STATES or status == agent.state:
            return
        for state, child in agent.states.items():
            child.set(1 if state == status else 0)
        agent.state = status

    # ---- the server ----------------------------------------------------------------

    def serve(self, listen: str) -> str:
        """Start serving /metrics; returns the HOST:PORT it listens on. OSError if it cannot listen there."""
        host, port = split_listen(listen)
        self._server, self._thread = start_http_server(port, host, registry=self.registry)
        bound_port = self._server.server_address[1]
        return f"[{host}]:{bound_port}" if ":" in host else f"{host}:{bound_port}"

    def close(self) -> None:
        """Stop serving and close the port (the serving thread polls twice a second: a connection wakes it)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        stopping = threading.Thread(target=server.shutdown, daemon=True)
        stopping.start()
        host, port = server.server_address[:2]
        try:
            with socket.create_connection(("127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host,
                                           port), timeout=0.5):
                pass
        except OSError:
            pass  # then shutdown waits out the poll interval instead
        stopping.join(2.0)
        server.server_close()
        thread.join(2.0)


def _number(value: Any) -> Optional[float]:
    """A finite, non-negative number from an event field, else None (a field is never trusted to be one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not 0 <= value < float("inf"):
        return None
    return float(value)


def _word(value: Any) -> str:
    """A mode or source as a label: one of the known words, else `other` (labels stay bounded)."""
    return value if value in ("GRACEFUL", "IMMEDIATE", "USER", "SYSTEM", "PROGRAMMATIC") else "other"
