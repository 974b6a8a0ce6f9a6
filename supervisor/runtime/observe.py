"""What the run tells systems outside it: Prometheus metrics and OpenTelemetry traces.

Both are event sinks of the root supervisor's log, built only when the config
(or, for traces, OTEL_EXPORTER_OTLP_ENDPOINT) asks for them; otherwise neither
prometheus_client nor opentelemetry is imported, so a run that wants neither
starts as fast as before.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Optional

from supervisor.config import TeamConfig
from supervisor.errors import SupervisorError

if TYPE_CHECKING:
    from supervisor.runtime.events import EventLog
    from supervisor.runtime.metrics import RunMetrics
    from supervisor.runtime.traces import RunTraces

OTEL_ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"


def traces_endpoint(config: TeamConfig) -> Optional[str]:
    """The collector to export to: the config's, else the standard environment variable's; None: no traces."""
    if config.traces is not None:
        return config.traces.endpoint
    return os.environ.get(OTEL_ENDPOINT_VARIABLE, "").strip() or None


class Observers:
    """The run's metrics server and trace exporter, whichever are configured."""

    def __init__(self, config: TeamConfig) -> None:
        self.config = config
        self.metrics: Optional["RunMetrics"] = None
        self.traces: Optional["RunTraces"] = None
        self.listening: Optional[str] = None
        self._log: Optional["EventLog"] = None

    @property
    def sinks(self) -> list[Callable[[dict[str, Any]], None]]:
        return [self._guarded(name, sink) for name, sink in (("metrics", self.metrics), ("traces", self.traces))
                if sink is not None]

    def _guarded(self, name: str, sink: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        """A fault in what only observes the run must not end it: the sink is dropped, and that is said once."""
        broken: list[str] = []

        def guarded(event: dict[str, Any]) -> None:
            if broken:
                return
            try:
                sink(event)
            except Exception as exc:  # noqa: BLE001
                broken.append(f"{type(exc).__name__}: {exc}")
                if self._log is not None:
                    self._log.emit("observer_failed", level="warning", agent_id=self.config.team, observer=name,
                                   error=" ".join(broken[0].split())[:300])

        return guarded

    def start(self) -> None:
        """Open the metrics port and build the trace exporter; what cannot start is exit 2, before any worker."""
        self._start_traces()
        try:
            self._start_metrics()
        except BaseException:
            self.close()
            raise

    def _start_traces(self) -> None:
        endpoint = traces_endpoint(self.config)
        if endpoint is None:
            return
        try:
            from supervisor.runtime.traces import RunTraces
        except ImportError as exc:
            raise SupervisorError(f"traces: needs {exc.name or 'opentelemetry-sdk'}: "
                                  "pip install 'agent-supervisor[traces]'", 2) from None
        self.traces = RunTraces(self.config, endpoint, self._export_failed)

    def _export_failed(self, url: str, error: str) -> None:
        """Once a run: the collector is not taking spans; the run goes on without them."""
        if self._log is not None:
            self._log.emit("traces_export_failed", level="warning", agent_id=self.config.team, endpoint=url,
                           error=error)

    def _start_metrics(self) -> None:
        if self.config.metrics is None:
            return
        try:
            from supervisor.runtime.metrics import RunMetrics
        except ImportError as exc:
            raise SupervisorError(f"metrics: needs {exc.name or 'prometheus-client'}: "
                                  "pip install 'agent-supervisor[metrics]'", 2) from None

        metrics = RunMetrics(self.config)
        listen = self.config.metrics.listen
        try:
            self.listening = metrics.serve(listen)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise SupervisorError(f"metrics.listen {listen}: cannot serve metrics there: {reason}", 2) from None
        self.metrics = metrics

    def announce(self, log: "EventLog") -> None:
        """Say where metrics are served, after the run's first line; later warnings go to `log` too."""
        self._log = log
        if self.listening is not None:
            log.emit("metrics_serving", agent_id=self.config.team, listen=self.listening,
                     url=f"http://{self.listening}/metrics")

    def traceparent(self) -> Optional[str]:
        """The run's span as a W3C traceparent, for the workers' Start; None without traces."""
        return self.traces.traceparent() if self.traces is not None else None

    def close(self) -> None:
        if self.traces is not None:
            self.traces.close()
            self.traces = None
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
