"""What a person at the terminal sees, in the reference example's voice.

The console is a sink of the event stream: it sees each event as the JSONL
writer does and renders the ones a person should see (the banner from
`supervisor_started`, the notices from `interrupt_initiated`, a line per
cycle). The run's outcome and statistics come at the end, from the outcome the
run returns. It only formats; it decides nothing, and every line it writes has
its control characters neutralised.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional, TextIO

from supervisor.terminal.text import neutralise

RULE = "=" * 60
SIGNALS = ("Ctrl+C", "SIGTERM", "SIGHUP")  # triggers that are a signal's name
SELF_STOPS = ("agent", "timeout", "budget")  # an agent stopped by its own limit or request


class Console:
    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream or sys.stdout
        self.team = ""  # the root team, from supervisor_started: its stops are the team's

    def _show(self, *lines: str) -> None:
        """Every line goes out through here: control characters are shown, never obeyed."""
        self._print(*(neutralise(line) for line in lines))

    def _print(self, *lines: str) -> None:
        """The raw write (a subclass draws elsewhere); only `_show` calls it."""
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed terminal must not break a shutdown

    # ---- blocks -------------------------------------------------------------

    def banner(self, team: str, storage: str, llm: str, agents: int, resumed: dict[str, int]) -> None:
        if resumed:
            where = ", ".join(f"{name} at cycle {cycle}" for name, cycle in resumed.items())
            session = f"📂 EXISTING CHECKPOINTS FOUND - Resuming previous session ({where})"
        else:
            session = "🚀 NEW SESSION - Starting fresh execution"
        self._show(
            RULE,
            f"🤖 AGENT SUPERVISOR - team {team} ({agents} agent{'s' if agents != 1 else ''})",
            RULE,
            f"📂 Storage: {storage}",
            f"🔧 LLM: {llm}",
            "",
            session,
            RULE,
            "",
            "ℹ️  Press Ctrl+C at any time to trigger graceful shutdown.",
            "ℹ️  Press Ctrl+C twice for immediate shutdown.",
            "",
        )

    def interrupt_notice(self, mode: str, source: str, reason: str) -> None:
        if mode == "GRACEFUL":
            self._show(
                "",
                f"⚠️  {reason}! Initiating graceful shutdown...",
                "   Every agent finishes its current cycle and saves a checkpoint...",
                "   Press Ctrl+C again for immediate shutdown.",
                "",
            )
        else:
            self._show("", f"🛑 {reason}! Immediate shutdown: cancelling in-flight LLM calls...", "")

    def outcome(self, status: str, interrupt: Optional[dict[str, Any]]) -> None:
        if status == "completed":
            self._show("", "✅ Team completed successfully!")
        elif status == "interrupted" and interrupt is not None:
            headline = (
                "✅ Gracefully interrupted and checkpoints saved!"
                if interrupt["mode"] == "GRACEFUL"
                else "🛑 Stopped immediately; the last durable checkpoints are kept."
            )
            self._show(
                "",
                headline,
                "   Run again to resume from where you left off.",
                "",
                f"   Source: {interrupt['source']}",
                f"   Mode: {interrupt['mode']}",
                f"   Message: {interrupt['message']}",
                f"   Timestamp: {interrupt['timestamp']}",
            )
        elif status == "failed":
            self._show("", "❌ The run ended with failed agents; see the statistics and events.jsonl.")

    def statistics(
        self, status: str, rows: list[dict[str, Any]], interrupts: dict[str, int], storage: str, config: str = "CONFIG"
    ) -> None:
        width = max([len(row["agent"]) for row in rows] + [5])
        lines = [
            "",
            RULE,
            "📊 EXECUTION STATISTICS",
            RULE,
            f"Status: {status}",
            f"Cycles: {sum(row['cycle'] for row in rows)}",
            f"Budget Spent: ${sum(row['budget_spent_usd'] for row in rows):.4f}",
            "",
            "Agents:",
        ]
        for row in rows:
            lines.append(
                f"  {row['agent']:<{width}}  {row['status']:<11}  cycles {row['cycle']}/{row['max_cycles']}"
                f"  {row['checkpoint_id'] or '-'}"
            )
        lines += [
            "",
            "Interrupt Metrics:",
            f"  Total Interrupts: {interrupts['total']}",
            f"  Graceful: {interrupts['graceful']}",
            f"  Immediate: {interrupts['immediate']}",
            RULE,
            "",
            f"📊 Interrupt metrics log: {storage}/interrupt_metrics.jsonl",
            f"   View detailed metrics: cat {storage}/interrupt_metrics.jsonl",
            f"   All events: python -m supervisor logs {config}",
        ]
        self._show(*lines)

    def line(self, text: str) -> None:
        self._show(text)

    def stop(self) -> None:
        """Nothing to take down: plain lines stay as they were written."""

    def finish(self, outcome: Any, storage: str, config: str = "CONFIG") -> None:
        """How the run ended (a `runtime.arbiter.Outcome`), then the closing statistics."""
        self.outcome(outcome.status, outcome.interrupt)
        if outcome.storage_failure is not None:
            self.line(f"❌ storage {storage}: {outcome.storage_failure} (the agents' checkpoints are intact)")
        self.statistics(outcome.status, outcome.rows, outcome.interrupts, storage, config)

    # ---- the event sink -------------------------------------------------------

    def __call__(self, event: dict[str, Any]) -> None:
        render = self._renderers.get(str(event.get("event")))
        if render is not None:
            render(self, event, str(event.get("agent_id", "")))

    def _started(self, event: dict[str, Any], agent: str) -> None:
        self.team = agent
        resumed = event.get("resumed_cycles")
        agents = event.get("agents")
        self.banner(agent, str(event.get("storage", "")), str(event.get("llm", "")),
                    len(agents) if isinstance(agents, list) else 0, resumed if isinstance(resumed, dict) else {})

    def _archived(self, event: dict[str, Any], agent: str) -> None:
        self.line(f"🗄️  Previous state archived to {event.get('to')}")

    def _model_loading(self, event: dict[str, Any], agent: str) -> None:
        self.line(f"🧠 Starting the embedded model server ({event.get('model')})...")

    def _interrupt(self, event: dict[str, Any], agent: str) -> None:
        """A stop the supervisor started (not an agent's acknowledgement of it)."""
        if agent != self.team or "trigger" not in event:
            return
        mode, source, message = str(event.get("mode")), str(event.get("source")), str(event.get("message", ""))
        trigger = str(event["trigger"])
        aimed = event.get("agents")
        if isinstance(aimed, list):
            tail = ": it finishes its cycle and stops; the others run on." if trigger in SELF_STOPS else ""
            for name in aimed:
                self.line(f"[{name}] ⏹️  {message}{tail}")
        elif trigger in SIGNALS:
            self.interrupt_notice(mode, source, f"{trigger} detected" if mode == "GRACEFUL" else f"Second {trigger}")
        elif trigger == "graceful_timeout":
            self.line(f"⏱️  Graceful timeout ran out ({message}): stopping immediately.")
        elif trigger == "model_server":
            self.line("❌ the embedded model server keeps dying; stopping the team.")
        elif trigger in ("resources", "forkserver"):  # the machine cannot start more workers: retrying would not help
            self.line(f"❌ {message}; stopping the team.")
        elif trigger in ("program", "budget", "timeout"):
            self.interrupt_notice(mode, source, message[:1].upper() + message[1:])

    def _gave_up(self, event: dict[str, Any], agent: str) -> None:
        team = event.get("team")
        which = "the team" if team in (None, self.team) else f"group {team}"
        self.line(f"[{agent}] ❌ {event.get('reason')}; stopping {which}.")

    def _killed(self, event: dict[str, Any], agent: str) -> None:
        if event.get("trigger") in SIGNALS:
            self.line(f"🛑 {event.get('trigger')} again: killing what is left now.")

    def _cycle(self, event: dict[str, Any], agent: str) -> None:
        reply = str(event.get("reply", "")).splitlines()[0:1]
        text = reply[0] if reply else ""
        self.line(f"[{agent}] CYCLE {event.get('cycle')}/{event.get('max_cycles', '?')}: {text}")

    def _worker_started(self, event: dict[str, Any], agent: str) -> None:
        if event.get("resumed"):
            self.line(f"[{agent}] resuming from checkpoint (cycles completed: {event.get('cycle')})")

    def _stopped(self, event: dict[str, Any], agent: str) -> None:
        self.line(f"[{agent}] stopped at cycle {event.get('cycle')}; checkpoint: {event.get('checkpoint_id') or 'none'}")

    def _corrupt(self, event: dict[str, Any], agent: str) -> None:
        self.line(f"[{agent}] ⚠️  corrupt checkpoint skipped: {event.get('checkpoint_id')} ({event.get('error')})")

    def _exited(self, event: dict[str, Any], agent: str) -> None:
        if event.get("status") == "failed":
            reason = event.get("reason", f"exit code {event.get('exitcode')}")
            self.line(f"[{agent}] ❌ worker exited unexpectedly ({reason})")

    def _error(self, event: dict[str, Any], agent: str) -> None:
        if event.get("kind") == "resource":
            return  # the team's stop says it, once, with the fix
        self.line(f"[{agent}] ❌ {event.get('kind')}: {event.get('message')}")

    def _asked(self, event: dict[str, Any], agent: str) -> None:
        self.line(f"[{agent}] ❓ {event.get('question')}")
        self.line(f"[{agent}]    answer with: python -m supervisor answer CONFIG {agent} TEXT")

    def _answered(self, event: dict[str, Any], agent: str) -> None:
        self.line(f"[{agent}] 💬 answered: {event.get('answer')}")

    def _held(self, event: dict[str, Any], agent: str) -> None:
        self.line(f"[{agent}] ⏸️  starts once {_names(event.get('after'))} completed")

    def _released(self, event: dict[str, Any], agent: str) -> None:
        self.line(f"[{agent}] ▶️  starting: {_names(event.get('after'))} completed")

    def _not_started(self, event: dict[str, Any], agent: str) -> None:
        self.line(f"[{agent}] ⏸️  not started: {_names(event.get('after'))} did not complete")

    def _rejected(self, event: dict[str, Any], agent: str) -> None:
        self.line(f"[{agent}] ⚠️  message to {event.get('to')} dropped: {event.get('error')}")

    def _metrics(self, event: dict[str, Any], agent: str) -> None:
        self.line(f"📈 Prometheus metrics: {event.get('url')}")

    def _observing_failed(self, event: dict[str, Any], agent: str) -> None:
        """Metrics, traces or rotation could not do their job: the run goes on, and the operator should know."""
        name = event.get("event")
        what = {"traces_export_failed": f"traces cannot be exported to {event.get('endpoint')}",
                "events_not_rotated": "the event log cannot be rotated",
                "observer_failed": f"{event.get('observer')} stopped"}.get(str(name), str(name))
        self.line(f"⚠️  {what} ({event.get('error')}); the run goes on")

    _renderers: dict[str, Callable[["Console", dict[str, Any], str], None]] = {
        "supervisor_started": _started,
        "state_archived": _archived,
        "model_server_starting": _model_loading,
        "interrupt_initiated": _interrupt,
        "restart_limit_reached": _gave_up,
        "workers_killed": _killed,
        "cycle_completed": _cycle,
        "worker_started": _worker_started,
        "interrupt_completed": _stopped,
        "checkpoint_corrupt": _corrupt,
        "worker_exited": _exited,
        "worker_error": _error,
        "question_asked": _asked,
        "question_answered": _answered,
        "agent_held": _held,
        "agent_released": _released,
        "agent_not_started": _not_started,
        "message_rejected": _rejected,
        "metrics_serving": _metrics,
        "traces_export_failed": _observing_failed,
        "events_not_rotated": _observing_failed,
        "observer_failed": _observing_failed,
    }


def _names(value: Any) -> str:
    return ", ".join(str(v) for v in value) if isinstance(value, list) and value else "its `after` agents"
