"""The agent loop inside one worker: cycles, checkpoints, and interrupts.

One cycle is one call of the agent's `cycle(k)` (for the built-in chat agent,
one LLM call on the conversation), run as an asyncio task so that an IMMEDIATE
interrupt cancels it at once. A cycle's reply, the agent's state and the cycle
counter change together and reach disk together, in one atomic checkpoint:
that is what makes resume exactly-once.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

from protocol import (
    COMPLETED,
    FAILED,
    GRACEFUL,
    IMMEDIATE,
    INTERRUPTED,
    PROGRAMMATIC,
    RUNNING,
    Ack,
    Answer,
    CheckpointSaved,
    CycleDone,
    Deliver,
    Error,
    Event,
    Heartbeat,
    Interrupt,
    Message,
    Proceed,
    ProtocolError,
    Ready,
    Settled,
    SlotGrant,
    Start,
    Stopped,
    StopRequest,
)
from protocol.budget import budget_reached
from protocol.specs import AgentSpec
from protocol.tools import ToolError
from workers.agent import DEFAULT_AGENT, Agent, AgentContext, AgentLoadError, Step, Usage, load_agent_class
from protocol.checkpoints import Checkpoint, CheckpointStore, CheckpointWriteError
from workers.correspondence import Correspondence, WaitEnded
from workers.hooks import Hooks
from workers.mailbox import MailCorrupt, Mailbox
from workers.link import SupervisorLink
from workers.providers import ProviderError, make_provider
from workers.tool_calls import load_tools
from workers.slots import Slots

START_TIMEOUT = 30.0
IMMEDIATE_HOOKS_LIMIT = 0.5  # seconds for all hooks of an immediate stop together: the supervisor's deadline wins
REPLY_PREVIEW_CHARS = 500

EXIT_OK = 0
EXIT_FAILED = 3


def describe_exception(exc: BaseException) -> str:
    """One line: the exception and where it was raised, never a traceback."""
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip().replace("\n", " ")
    tail = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    return f"{detail} at {tail[0].filename}:{tail[0].lineno}" if tail else detail


@dataclass
class Conversation:
    """What a checkpoint holds: the messages, the agent's state, and how many cycles produced them."""

    cycle: int
    messages: list[dict]
    budget_spent_usd: float = 0.0
    status: str = RUNNING
    state: dict[str, Any] = field(default_factory=dict)
    mail: Optional[dict[str, Any]] = None  # the checkpoint's mail section, read by the worker's Mailbox

    @classmethod
    def fresh(cls, system_prompt: str, task: str) -> "Conversation":
        return cls(cycle=0, messages=[{"role": "system", "content": system_prompt}, {"role": "user", "content": task}])

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> "Conversation":
        return cls(
            cycle=checkpoint.cycle,
            messages=list(checkpoint.messages),
            budget_spent_usd=checkpoint.budget_spent_usd,
            status=checkpoint.status,
            state=_saved_state(checkpoint),
            mail=checkpoint.extra.get("mail"),
        )


def _saved_state(checkpoint: Checkpoint) -> dict[str, Any]:
    state = checkpoint.extra.get("state")
    return dict(state) if isinstance(state, dict) else {}


def as_step(result: Any) -> Optional[Step]:
    """A cycle's return value as a Step, or None if it is neither a str nor a well-formed Step."""
    if isinstance(result, str):
        return Step(result)
    if isinstance(result, Step) and isinstance(result.reply, str) and (result.prompt is None or isinstance(result.prompt, str)):
        return result
    return None


@dataclass
class InterruptState:
    """What the worker has been asked to do, and how often this run."""

    graceful: Optional[Interrupt] = None
    immediate: Optional[Interrupt] = None
    supervisor_lost: Optional[str] = None
    counts: dict[str, int] = field(default_factory=lambda: {GRACEFUL: 0, IMMEDIATE: 0})

    @property
    def stop_requested(self) -> bool:
        return self.graceful is not None or self.must_stop_now

    @property
    def must_stop_now(self) -> bool:
        return self.immediate is not None or self.supervisor_lost is not None

    @property
    def latest(self) -> Optional[Interrupt]:
        return self.immediate or self.graceful


class SavedCheckpoint(NamedTuple):
    """The last checkpoint this worker knows to be durable."""

    cycle: int
    status: str
    checkpoint_id: str
    durable_at: float


class AgentWorker:
    """Runs one agent's spec to completion or interruption, talking over `link`."""

    def __init__(self, sock: socket.socket, shares_process: bool = False) -> None:
        """`shares_process`: other agents run on in this process after this one (a pack): what it opened, it closes."""
        self._sock = sock
        self._shares_process = shares_process
        self.link: Optional[SupervisorLink] = None
        self.interrupts = InterruptState()
        self._started: asyncio.Future[Start] = asyncio.get_running_loop().create_future()
        self._cycle_task: Optional[asyncio.Task[Any]] = None
        self._last_saved: Optional[SavedCheckpoint] = None
        self._told_to_stop = asyncio.Event()  # set by any interrupt, or by losing the supervisor
        self._await_grants = False  # a team budget: each cycle starts once the one before is counted
        self._granted = -1  # the supervisor has counted our cycles up to this one
        self._grant = asyncio.Event()
        self._agent = ""
        self._agent_class = DEFAULT_AGENT
        self._budget: Optional[float] = None  # this agent's own, USD across runs
        self.hooks = Hooks([], self._report_hook)
        self._before_interrupt_done = False
        self._last_word_sent = False  # Stopped has gone to the supervisor: nothing the process does after counts
        self.mail: Optional[Correspondence] = None
        self.slots = Slots(self._send, self._told_to_stop)  # a capped model server's, granted by the supervisor

    # ---- incoming messages (called from the link, never blocks) -----------

    def _on_message(self, message: Message) -> None:
        if isinstance(message, Start) and not self._started.done():
            self._started.set_result(message)
        elif isinstance(message, Interrupt):
            self._on_interrupt(message)
        elif isinstance(message, Proceed):
            self._granted = max(self._granted, message.cycle)
            self._grant.set()
        elif isinstance(message, (Deliver, Settled, Answer)):
            self._on_mail(message)
        elif isinstance(message, SlotGrant):
            self.slots.on_grant(message)
        else:
            self._send(Error(kind="protocol", message=f"unexpected {message.type} message from supervisor"))

    def _on_mail(self, message: Deliver | Settled | Answer) -> None:
        mail = self.mail
        if mail is None:
            return  # before Ready the supervisor sends no mail; a stray one is dropped, never fatal
        if isinstance(message, Deliver):
            mail.on_deliver(message)
        elif isinstance(message, Settled):
            mail.on_settled(message)
        else:
            mail.on_answer(message)

    def _on_interrupt(self, interrupt: Interrupt) -> None:
        self._send(Ack(interrupt_id=interrupt.interrupt_id, received_at=time.time()))
        self.interrupts.counts[interrupt.mode] += 1
        if interrupt.mode == IMMEDIATE:
            self.interrupts.immediate = self.interrupts.immediate or interrupt
            self._cancel_cycle()
        elif self.interrupts.graceful is None:
            self.interrupts.graceful = interrupt
        self._told_to_stop.set()

    def _on_lost(self, reason: str) -> None:
        self.interrupts.supervisor_lost = reason
        self._told_to_stop.set()
        self._cancel_cycle()
        if not self._started.done():
            self._started.cancel()

    def _cancel_cycle(self) -> None:
        if self._cycle_task is not None and not self._cycle_task.done():
            self._cycle_task.cancel()

    def _send(self, message: Message) -> None:
        if self.link is not None:
            self.link.send(message)

    # ---- the run ------------------------------------------------------------

    async def run(self) -> int:
        self.link = await SupervisorLink.open(self._sock, self._on_message, self._on_lost)
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            try:
                start = await asyncio.wait_for(self._started, START_TIMEOUT)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                return EXIT_FAILED
            try:
                return await self._run_agent(start)
            except Exception as exc:  # a bug: report it in one line, keep the last durable checkpoint
                return self._fail("crash", describe_exception(exc), self._durable_cycle, 0.0)
        finally:
            heartbeat.cancel()
            if not self.leave_at_once:
                await self.link.close()

    @property
    def leave_at_once(self) -> bool:
        """Its last word is out (or the stop is immediate, or the supervisor gone): nothing is left to tidy.

        The process may then end without closing the loop, its clients and its
        tasks one by one: that teardown was half a worker's immediate stop
        (0.57 ms, times every worker of the team, on the cores the stop is
        waiting for), and a graceful stop's too. The kernel closes its sockets.
        """
        return self._done_talking and (self.link is None or self.link.flushed)

    @property
    def _done_talking(self) -> bool:
        return self._last_word_sent or self.interrupts.must_stop_now

    async def _heartbeat(self, interval: float = 1.0) -> None:
        while True:
            self._send(Heartbeat(sent_at=time.time()))
            await asyncio.sleep(interval)

    async def _run_agent(self, start: Start) -> int:
        try:
            spec = AgentSpec.from_wire(start.spec)
        except ProtocolError as exc:
            return self._fail("protocol", str(exc), 0, 0.0)
        agent = start.agent
        store = CheckpointStore(spec.storage, agent, keep=spec.checkpoint.keep, compress=spec.checkpoint.compress)
        try:
            stale = store.open_for_writing()
        except OSError as exc:
            return self._fail("storage", f"cannot use checkpoint folder {store.directory}: {exc}", 0, 0.0)
        for name in stale:  # a save interrupted by a crash left it; the checkpoint it would have been never counted
            self._send(Event(event="checkpoint_temp_removed", level="warning", fields={"file": name}))
        checkpoint = store.load_latest(on_corrupt=self._report_corrupt)
        self._agent_class = spec.agent_class or DEFAULT_AGENT
        for folder in spec.python_path:  # the config's folder: agents and hooks kept beside it
            if folder not in sys.path:
                sys.path.append(folder)
        if checkpoint is not None:
            convo = Conversation.from_checkpoint(checkpoint)
            self._last_saved = SavedCheckpoint(checkpoint.cycle, checkpoint.status, checkpoint.checkpoint_id, 0.0)
        else:
            convo = Conversation.fresh(spec.llm.system_prompt, spec.task)
        try:
            box = Mailbox.from_checkpoint(agent, frozenset(spec.peers), convo.mail)
        except MailCorrupt as exc:
            saved = checkpoint.checkpoint_id if checkpoint else "?"
            return self._fail("storage", f"checkpoint {saved}: {exc}", convo.cycle, convo.budget_spent_usd)
        self.mail = Correspondence(box, self._send, self._told_to_stop, lambda: self._checkpoint(store, convo, RUNNING))
        max_cycles = spec.max_cycles
        done = convo.cycle >= max_cycles
        self._send(
            Ready(
                agent=agent,
                pid=os.getpid(),
                cycle=convo.cycle,
                max_cycles=max_cycles,
                status=COMPLETED if done else RUNNING,
                resumed=checkpoint is not None,
                checkpoint_id=checkpoint.checkpoint_id if checkpoint else None,
                budget_spent_usd=convo.budget_spent_usd,
            )
        )
        self.mail.introduce()  # what our checkpoint holds, and our outbox once more
        if done:
            if convo.status != COMPLETED and not await self._checkpoint(store, convo, COMPLETED):
                return EXIT_FAILED
            self._report_stopped(convo, COMPLETED, reason="already complete")
            return EXIT_OK
        try:
            tools = load_tools(spec.tools)  # the config's folder is on the path by now
        except ToolError as exc:
            return self._fail("agent", str(exc), convo.cycle, convo.budget_spent_usd)
        try:
            provider = make_provider(spec.llm, on_retry=self._report_retry, slots=self.slots)
        except ProviderError as exc:
            return self._fail("provider", str(exc), convo.cycle, convo.budget_spent_usd)
        if spec.traceparent is not None:  # the W3C variable: tools and clients that read it join the run's trace
            os.environ["TRACEPARENT"] = spec.traceparent
        self._agent, self._budget = agent, spec.budget_usd
        self._await_grants = spec.await_grants
        self.hooks = Hooks(spec.hooks, self._report_hook)
        try:
            context = AgentContext(
                name=agent,
                task=spec.task,
                max_cycles=max_cycles,
                params=dict(spec.params),
                state=convo.state,
                messages=convo.messages,
                provider=provider,
                budget_spent_usd=convo.budget_spent_usd,
                mail=self.mail,
                send_to=tuple(spec.send_to),
                senders=tuple(spec.senders),
                traceparent=spec.traceparent,
                tools=tools,
                tool_timeout=spec.tool_timeout,
            )
            try:
                instance = await self._make_agent(context)
            except AgentLoadError as exc:
                return self._fail("agent", str(exc), convo.cycle, convo.budget_spent_usd)
            return await self._cycles(store, instance, context, convo, max_cycles, spec.checkpoint.every)
        finally:
            if not self._done_talking or self._shares_process:  # else the client goes with the process
                await provider.aclose()

    async def _make_agent(self, context: AgentContext) -> Agent:
        """The config's agent class, created and set up; any failure is one AgentLoadError line."""
        path = self._agent_class
        cls = load_agent_class(path)
        try:
            instance = cls()
            instance.attach(context)
            pending = instance.setup()
            if inspect.isawaitable(pending):  # `async def setup` is allowed too
                await pending
        except Exception as exc:  # noqa: BLE001 - the user's code: one line, never a traceback
            raise AgentLoadError(f"agent {path}: setup failed: {describe_exception(exc)}") from None
        return instance

    async def _ask_to_stop(self, message: str) -> None:
        """Ask the supervisor for our own graceful stop, and start no cycle until it answers.

        The stop then runs the one path every interrupt takes: logged, acked,
        checkpointed, timed and counted, and the supervisor knows not to
        restart us.
        """
        self._send(StopRequest(mode=GRACEFUL, source=PROGRAMMATIC, message=message))
        await self._told_to_stop.wait()

    async def _wait_for_grant(self, cycle: int) -> None:
        """Until the supervisor has counted our cycles up to `cycle` against the team's budget, or stops us.

        So no cycle starts after the team's budget is known to be reached: at
        most the one each agent has in flight at that moment runs beyond it.
        """
        while self._granted < cycle and not self.interrupts.stop_requested:
            self._grant.clear()
            waits = [asyncio.ensure_future(self._grant.wait()), asyncio.ensure_future(self._told_to_stop.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()

    def _over_budget(self, convo: Conversation) -> Optional[str]:
        budget = self._budget
        if budget is None or not budget_reached(convo.budget_spent_usd, budget):
            return None
        return f"agent {self._agent} budget ${budget:g} reached (spent ${convo.budget_spent_usd:.4f})"

    async def _cycles(
        self, store: CheckpointStore, agent: Agent, context: AgentContext, convo: Conversation, max_cycles: int, every: int
    ) -> int:
        while convo.cycle < max_cycles and not self.interrupts.stop_requested:
            reason = self._over_budget(convo) or context.stop_message
            if reason is not None:
                await self._ask_to_stop(reason)
                continue
            if self._await_grants and self._granted < convo.cycle:
                await self._wait_for_grant(convo.cycle)
                continue
            cycle = convo.cycle + 1
            context.cycle, context.usage, context.budget_spent_usd = cycle, Usage(), convo.budget_spent_usd
            context.exchange = []  # tool calls of a cycle that does not complete never reach the conversation
            # The cycle works on a copy: a cycle that does not complete leaves the saved state untouched.
            context.state = copy.deepcopy(convo.state)
            box = self._mailbox
            box.begin_cycle()
            self.slots.begin_cycle()
            began = time.monotonic()
            self._cycle_task = asyncio.create_task(agent.cycle(cycle))
            try:
                result = await self._cycle_task
            except asyncio.CancelledError:
                box.cycle_dropped()
                if self.interrupts.must_stop_now:
                    break  # the in-flight cycle is dropped; the last durable checkpoint stays the truth
                raise
            except WaitEnded:  # a stop ended a wait for a message, a person or a slot: there was no cycle to finish
                box.cycle_dropped()
                if self.mail is not None and self.mail.save_failed:
                    return EXIT_FAILED
                break
            except ProviderError as exc:
                box.cycle_dropped()
                return self._fail("provider", str(exc), convo.cycle, convo.budget_spent_usd)
            except Exception as exc:  # noqa: BLE001 - the agent's own code failed: one line, checkpoint intact
                return self._fail("agent", f"agent {self._agent_class} cycle {cycle}: {describe_exception(exc)}", convo.cycle, convo.budget_spent_usd)
            finally:
                self._cycle_task = None
                context.cycle = 0
            if self.interrupts.must_stop_now:
                box.cycle_dropped()
                break
            step = as_step(result)
            if step is None:
                returned = type(result).__name__
                return self._fail("agent", f"agent {self._agent_class} cycle {cycle} returned {returned}, not a str or Step", convo.cycle, convo.budget_spent_usd)
            usage = context.usage
            box.cycle_completed()
            convo.messages.extend(step.turns(context.exchange))
            convo.cycle = cycle
            convo.budget_spent_usd += usage.cost_usd
            convo.state = context.state
            self._send(
                CycleDone(
                    cycle=cycle,
                    duration_ms=(time.monotonic() - began) * 1000.0,
                    reply=step.reply[:REPLY_PREVIEW_CHARS],
                    tokens=usage.tokens,
                    cost_usd=usage.cost_usd,
                    model_ms=usage.model_ms,
                    queued_ms=self.slots.queued_ms if self.slots.used else None,
                )
            )
            finished = cycle >= max_cycles
            if self.interrupts.stop_requested and not finished:
                await self._before_interrupt(convo)
            if finished or self.interrupts.graceful is not None or cycle % every == 0:
                status = COMPLETED if finished else INTERRUPTED if self.interrupts.graceful else RUNNING
                if not await self._checkpoint(store, convo, status):
                    return EXIT_FAILED
            # After the cycle's checkpoint: a slow hook cannot cost a cycle's work.
            await self._hooks("after_cycle", cycle, reply=step.reply)

        if self.interrupts.must_stop_now:
            await self._before_interrupt(convo)
            durable = self._durable_conversation(convo)
            await self._after_interrupt(durable)
            self._report_stopped(durable, INTERRUPTED, reason=self._stop_reason())
            return EXIT_OK
        final = COMPLETED if convo.cycle >= max_cycles else INTERRUPTED
        if final == INTERRUPTED:
            await self._before_interrupt(convo)
        if self._last_saved is None or (self._last_saved.cycle, self._last_saved.status) != (convo.cycle, final):
            if not await self._checkpoint(store, convo, final):
                return EXIT_FAILED
        if final == INTERRUPTED:
            await self._after_interrupt(convo)
        self._report_stopped(convo, final, reason=self._stop_reason() if final == INTERRUPTED else "")
        return EXIT_OK

    # ---- hooks ----------------------------------------------------------------

    def _interrupt_fields(self) -> dict[str, Any]:
        latest = self.interrupts.latest
        if latest is None:
            return {"interrupt": {"mode": GRACEFUL, "source": "SYSTEM", "message": self._stop_reason()}}
        return {"interrupt": {"mode": latest.mode, "source": latest.source, "message": latest.message}}

    async def _hooks(self, point: str, cycle: int, **fields: Any) -> None:
        """The config's hooks for `point`; during an immediate stop they share IMMEDIATE_HOOKS_LIMIT."""
        if self.hooks:
            limit = IMMEDIATE_HOOKS_LIMIT if self.interrupts.must_stop_now else None
            await self.hooks.run(point, limit=limit, agent=self._agent, cycle=cycle, **fields)

    async def _before_interrupt(self, convo: Conversation) -> None:
        if not self._before_interrupt_done:
            self._before_interrupt_done = True
            await self._hooks("before_interrupt", convo.cycle, **self._interrupt_fields())

    async def _after_interrupt(self, convo: Conversation) -> None:
        saved = self._last_saved.checkpoint_id if self._last_saved else None
        await self._hooks("after_interrupt", convo.cycle, checkpoint_id=saved, **self._interrupt_fields())

    async def _checkpoint(self, store: CheckpointStore, convo: Conversation, status: str) -> bool:
        """A save between its hooks; False if it failed (the agent has then failed, its last checkpoint intact)."""
        await self._hooks("before_checkpoint", convo.cycle, status=status)
        try:
            checkpoint_id = self._save(store, convo, status)
        except (CheckpointWriteError, OSError) as exc:
            self._fail("storage", str(exc), self._durable_cycle, convo.budget_spent_usd)
            return False
        except (TypeError, ValueError) as exc:  # json refused the agent's state; nothing was written
            self._fail("agent", f"agent {self._agent_class}: state is not JSON: {exc}", self._durable_cycle, convo.budget_spent_usd)
            return False
        await self._hooks("after_checkpoint", convo.cycle, status=status, checkpoint_id=checkpoint_id)
        return True

    def _report_hook(self, event: str, fields: dict[str, Any]) -> None:
        self._send(Event(event=event, level="warning", fields=fields))

    # ---- checkpoints and reports -------------------------------------------

    @property
    def _mailbox(self) -> Mailbox:
        assert self.mail is not None, "the mailbox is made before the first cycle"
        return self.mail.box

    def _save(self, store: CheckpointStore, convo: Conversation, status: str) -> str:
        extra: dict[str, Any] = {"agent_class": self._agent_class, "state": convo.state}
        if self.mail is not None:
            mail = self.mail.box.to_checkpoint()
            if any(mail.values()):
                extra["mail"] = mail
        result = store.save(
            cycle=convo.cycle,
            status=status,
            messages=convo.messages,
            budget_spent_usd=convo.budget_spent_usd,
            extra=extra,
        )
        convo.status = status
        self._last_saved = SavedCheckpoint(convo.cycle, status, result.checkpoint_id, result.durable_at)
        self._send(
            CheckpointSaved(
                checkpoint_id=result.checkpoint_id,
                cycle=convo.cycle,
                status=status,
                bytes=result.bytes,
                duration_ms=result.duration_ms,
                durable_at=result.durable_at,
            )
        )
        if self.mail is not None:
            self.mail.after_save()  # only now may its messages leave, and its holdings count
        return result.checkpoint_id

    @property
    def _durable_cycle(self) -> int:
        """Cycles completed as far as the disk knows: the truth after an immediate stop."""
        return self._last_saved.cycle if self._last_saved else 0

    def _durable_conversation(self, convo: Conversation) -> Conversation:
        """After an immediate stop only what is on disk counts."""
        return Conversation(cycle=self._durable_cycle, messages=[], budget_spent_usd=convo.budget_spent_usd)

    def _report_retry(self, report: dict) -> None:
        self._send(Event(event="llm_retry", level="warning", fields=report))

    def _report_corrupt(self, checkpoint_id: str, reason: str) -> None:
        self._send(Event(event="checkpoint_corrupt", level="warning", fields={"checkpoint_id": checkpoint_id, "error": reason}))

    def _stop_reason(self) -> str:
        if self.interrupts.supervisor_lost:
            return self.interrupts.supervisor_lost
        latest = self.interrupts.latest
        return latest.message if latest else ""

    def _report_stopped(self, convo: Conversation, status: str, reason: str) -> None:
        latest = self.interrupts.latest
        saved_id = self._last_saved.checkpoint_id if self._last_saved else None
        durable_at = self._last_saved.durable_at if self._last_saved else None
        if self.interrupts.must_stop_now:
            durable_at = time.time()  # nothing new is written: the stop itself is the moment state is final
        counts = self.interrupts.counts
        self._send(
            Stopped(
                status=status,
                cycle=convo.cycle,
                checkpoint_id=saved_id,
                budget_spent_usd=convo.budget_spent_usd,
                interrupt_id=latest.interrupt_id if latest else None,
                durable_at=durable_at if latest else None,
                total_interrupts=counts[GRACEFUL] + counts[IMMEDIATE],
                graceful_interrupts=counts[GRACEFUL],
                immediate_interrupts=counts[IMMEDIATE],
                reason=reason,
            )
        )
        self._last_word_sent = True

    def _fail(self, kind: str, message: str, cycle: int, spent: float) -> int:
        """End the agent as failed; the last durable checkpoint is left as it is."""
        self._send(Error(kind=kind, message=message, fatal=True))
        saved_id = self._last_saved.checkpoint_id if self._last_saved else None
        self._send(Stopped(status=FAILED, cycle=cycle, checkpoint_id=saved_id, budget_spent_usd=spent, reason=message))
        self._last_word_sent = True
        return EXIT_FAILED
