"""What a person at the terminal sees, in the reference example's voice.

The console is a sink of the event stream (it sees each event as the JSONL
writer does) plus a few blocks of its own: the banner, the interrupt notices
and the statistics. It only formats; it decides nothing.
"""

from __future__ import annotations

import sys
from typing import Any, Optional, TextIO

RULE = "=" * 60


class Console:
    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream or sys.stdout

    def _print(self, *lines: str) -> None:
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
        self._print(
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
            self._print(
                "",
                f"⚠️  {reason}! Initiating graceful shutdown...",
                "   Every agent finishes its current cycle and saves a checkpoint...",
                "   Press Ctrl+C again for immediate shutdown.",
                "",
            )
        else:
            self._print("", f"🛑 {reason}! Immediate shutdown: cancelling in-flight LLM calls...", "")

    def outcome(self, status: str, interrupt: Optional[dict[str, Any]]) -> None:
        if status == "completed":
            self._print("", "✅ Team completed successfully!")
        elif status == "interrupted" and interrupt is not None:
            headline = (
                "✅ Gracefully interrupted and checkpoints saved!"
                if interrupt["mode"] == "GRACEFUL"
                else "🛑 Stopped immediately; the last durable checkpoints are kept."
            )
            self._print(
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
            self._print("", "❌ The run ended with failed agents; see the statistics and events.jsonl.")

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
        self._print(*lines)

    def line(self, text: str) -> None:
        self._print(text)

    # ---- the event sink -------------------------------------------------------

    def __call__(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        agent = event.get("agent_id", "")
        if name == "cycle_completed":
            reply = str(event.get("reply", "")).splitlines()[0:1]
            text = reply[0] if reply else ""
            self._print(f"[{agent}] CYCLE {event['cycle']}/{event.get('max_cycles', '?')}: {text}")
        elif name == "worker_started" and event.get("resumed"):
            self._print(f"[{agent}] resuming from checkpoint (cycles completed: {event['cycle']})")
        elif name == "interrupt_completed":
            self._print(f"[{agent}] stopped at cycle {event['cycle']}; checkpoint: {event.get('checkpoint_id') or 'none'}")
        elif name == "checkpoint_corrupt":
            self._print(f"[{agent}] ⚠️  corrupt checkpoint skipped: {event['checkpoint_id']} ({event['error']})")
        elif name == "worker_exited" and event.get("status") == "failed":
            self._print(f"[{agent}] ❌ worker exited unexpectedly ({event.get('reason', 'exit code ' + str(event.get('exitcode')))})")
        elif name == "worker_error":
            self._print(f"[{agent}] ❌ {event.get('kind')}: {event.get('message')}")
