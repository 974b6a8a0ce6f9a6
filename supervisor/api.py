"""The Python API: run a team from a program, interrupt it, read its status.

    from supervisor.api import TeamRunner

    runner = TeamRunner("configs/team.yaml")      # a path, a TeamConfig, or a mapping
    runner.start()                                # in a background thread
    runner.interrupt(agent="poet", message="enough poetry")   # one agent, gracefully (also `stop`)
    runner.start_agent("poet")                    # back from its latest checkpoint
    runner.restart_agent("poet")                  # a graceful stop, then a start
    runner.reload("configs/team.yaml")            # apply what changed in the file
    print(runner.status())
    code = runner.wait()                          # the CLI's exit code

`run()` instead runs in the calling thread; in the main thread it handles
Ctrl+C and SIGTERM exactly as the CLI does. A background run leaves signals to
the program. Every interrupt requested here has source PROGRAMMATIC and goes
through the supervisor's loop, so it is logged, acked, checkpointed and counted
like a Ctrl+C. An agent asks for its own stop from inside its worker
(`workers.agent.Agent.request_stop`), not through this object.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Union

from protocol import GRACEFUL, MODES
from supervisor.config import TeamConfig, load_config
from supervisor.runtime.control import AgentsRequest, AnswerRequest, ControlQueue, InterruptRequest, ReloadRequest
from supervisor.vocabulary import NOT_STARTED

if TYPE_CHECKING:
    from supervisor.runtime.arbiter import Arbiter

EventCallback = Callable[[dict[str, Any]], None]


class TeamRunner:
    """One run of a team, owned by a program instead of a terminal."""

    def __init__(
        self,
        config: Union[TeamConfig, Mapping[str, Any], str, "os.PathLike[str]"],
        *,
        fresh: bool = False,
        quiet: bool = False,
        on_event: Optional[EventCallback] = None,
        base_dir: Union[str, "os.PathLike[str]", None] = None,
    ) -> None:
        """`config`: a file, a validated TeamConfig, or the YAML's data as a mapping
        (a relative `storage` is then taken from `base_dir`, default the working
        folder). `quiet`: no console output. `on_event`: called with each event
        as it is written, in the supervisor's thread; keep it short.
        """
        if isinstance(config, TeamConfig):
            self.config = config
        elif isinstance(config, Mapping):
            base = Path(base_dir) if base_dir is not None else Path.cwd()
            self.config = TeamConfig.from_mapping(config, source=base / "<api>", base_dir=base)
        else:
            self.config = load_config(config)
        self.fresh = fresh
        self.quiet = quiet
        self.on_event = on_event
        self.exit_code: Optional[int] = None
        self.error: Optional[BaseException] = None
        self._control = ControlQueue()
        self._arbiter: Optional["Arbiter"] = None
        self._thread: Optional[threading.Thread] = None
        self._done = threading.Event()

    # ---- running -------------------------------------------------------------

    def run(self) -> int:
        """Run in this thread to the end; returns the exit code (0, 1 or 3; 2 for a bad config)."""
        self._run(handle_signals=threading.current_thread() is threading.main_thread())
        if self.error is not None:
            raise self.error
        assert self.exit_code is not None
        return self.exit_code

    def start(self) -> "TeamRunner":
        """Run in a background thread; `wait()` for the exit code."""
        if self._thread is not None:
            raise RuntimeError("this runner has been started already")
        from supervisor.runtime.process import worker_context

        worker_context()  # from the calling thread: in the main thread, the forkserver ignores Ctrl+C
        self._thread = threading.Thread(target=self._run, kwargs={"handle_signals": False},
                                        name=f"team-{self.config.team}", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """The exit code once the run has ended; None if `timeout` ran out first."""
        if not self._done.wait(timeout):
            return None
        if self.error is not None:
            raise self.error
        return self.exit_code

    @property
    def running(self) -> bool:
        return self._arbiter is not None and not self._done.is_set()

    # ---- talking to the run ----------------------------------------------------

    def interrupt(self, agent: Optional[str] = None, *, mode: str = GRACEFUL, message: Optional[str] = None) -> None:
        """Stop one agent (the others run on, and it is not restarted) or the whole team.

        GRACEFUL lets each agent finish its cycle and checkpoint; IMMEDIATE
        cancels what is in flight. Source PROGRAMMATIC, like a budget's stop.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if agent is not None and agent not in {a.name for a in self.config.all_agents()}:
            raise ValueError(f"no agent {agent!r} in team {self.config.team!r}")
        text = message or (f"stop requested for agent {agent}" if agent else "stop requested by the program")
        self._control.put(InterruptRequest(mode=mode, message=text, agent=agent))

    stop = interrupt  # the operator's word for it

    def start_agent(self, agent: str, *, timeout: float = 10.0) -> None:
        """Start an agent that is not running (stopped, completed, or added) from its latest checkpoint.

        Returns once the loop has started it (its worker_started follows); an agent that runs is left alone.
        """
        self._check_agent(agent)
        self._ask(AgentsRequest("start", (agent,)), timeout)

    def restart_agent(self, agent: str, *, timeout: float = 10.0) -> None:
        """A graceful stop of the agent, then a start from the checkpoint it leaves; the others run on."""
        self._check_agent(agent)
        self._ask(AgentsRequest("restart", (agent,)), timeout)

    def reload(self, config: Union[TeamConfig, str, "os.PathLike[str]", None] = None, *,
               timeout: float = 10.0) -> dict[str, list[str]]:
        """Apply a changed config to the live run (default: the file this runner was made from).

        New agents start, removed ones stop gracefully, changed ones restart with
        their new settings, the rest are not touched. A config that does not
        validate, or that changes `team`, `storage` or the groups, raises
        ConfigError/UserError and changes nothing. Returns what changed.
        """
        new = config if isinstance(config, TeamConfig) else load_config(config if config is not None else self.config.source)
        added, removed, changed = self._ask(ReloadRequest(new), timeout)
        self.config = new
        return {"added": added, "removed": removed, "changed": changed}

    def answer(self, agent: str, text: str, *, timeout: float = 40.0) -> None:
        """Answer the question `agent` waits on; returns once the agent's checkpoint holds the answer.

        Raises UserError (one line) when the agent is not waiting for an answer,
        or stopped waiting before it saved this one.
        """
        self._check_agent(agent)
        self._ask(AnswerRequest(agent, str(text)), timeout)

    def _check_agent(self, agent: str) -> None:
        if agent not in {a.name for a in self.config.all_agents()}:
            raise ValueError(f"no agent {agent!r} in team {self.config.team!r}")

    def _ask(self, request: Union[AgentsRequest, ReloadRequest, AnswerRequest], timeout: float) -> Any:
        """Hand a request to the loop and wait for it to act (not for workers to be up)."""
        self._control.put(request)
        return request.done.result(timeout)

    def status(self) -> dict[str, Any]:
        """The team's status now: whether it is stopping and how, and one row per agent."""
        arbiter = self._arbiter
        if arbiter is not None:
            snapshot = arbiter.status()
        else:
            rows = [{"agent": a.name, "status": NOT_STARTED, "cycle": 0, "max_cycles": a.max_cycles,
                     "checkpoint_id": None, "budget_spent_usd": 0.0} for a in self.config.all_agents()]
            snapshot = {"team": self.config.team, "stopping": None, "agents": rows}
        return {**snapshot, "running": self.running, "exit_code": self.exit_code}

    # ---- inside ----------------------------------------------------------------

    def _run(self, handle_signals: bool) -> None:
        from supervisor.runtime.run import run_team

        from supervisor.terminal.console import Console

        console = None if self.quiet else Console()
        sinks: list[Callable[[dict[str, Any]], None]] = [console] if console is not None else []
        if self.on_event is not None:
            sinks.append(self._deliver)
        try:
            outcome = run_team(self.config, fresh=self.fresh, control=self._control, handle_signals=handle_signals,
                               sinks=sinks, on_arbiter=self._attach)
            if console is not None:
                console.finish(outcome, str(self.config.storage), str(self.config.source))
            self.exit_code = outcome.exit_code
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits, in their thread
            self.error = exc
            self.exit_code = getattr(exc, "exit_code", 3)
        finally:
            self._control.close()
            self._done.set()

    def _attach(self, arbiter: "Arbiter") -> None:
        self._arbiter = arbiter

    def _deliver(self, event: dict[str, Any]) -> None:
        """The program's callback must never break the run that calls it."""
        callback = self.on_event
        if callback is None:
            return
        try:
            callback(event)
        except Exception as exc:  # noqa: BLE001
            print(f"warning: on_event callback failed: {type(exc).__name__}: {exc}", file=sys.stderr)
