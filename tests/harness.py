"""Drive the real supervisor as a user would: a config file, a process, signals.

`Team` writes a config into a temp folder and reads what the run leaves
behind (events, checkpoints). `Run` is one `python -m supervisor` process,
optionally on a pseudo-terminal so that Ctrl+C is a real ^C typed into a
real terminal (the kernel then sends SIGINT to the foreground group).
Waiting is always for an event in events.jsonl, bounded by a generous
timeout that only exists to turn a hang into a failure.
"""

from __future__ import annotations

import contextlib

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import psutil
import yaml

from protocol.checkpoints import Checkpoint, CheckpointStore
from workers.providers.scripted import scripted_reply

HANG = 60.0  # seconds: only ever reached when something is broken
REPO = Path(__file__).resolve().parent.parent


def stream_files(path: Path) -> list[Path]:
    """The files of an event stream that are regular files, oldest first (`path.N` ... `path.1`, `path`)."""
    numbers = sorted((int(p.name.rpartition(".")[2]) for p in path.parent.glob(path.name + ".*")
                      if p.name.rpartition(".")[2].isdigit()), reverse=True) if path.parent.is_dir() else []
    files = [path.parent / f"{path.name}.{n}" for n in numbers] + [path]
    return [f for f in files if f.is_file()]  # missing, or a device a test put there on purpose


PACKED = "packed"  # the `backend` of a team on the local tree whose agents share processes (agents_per_process)


class Team:
    def __init__(
        self,
        root: Path,
        *,
        agents: int = 3,
        latency: float = 0.2,
        max_cycles: int = 5,
        every: int = 1,
        keep: int = 20,
        graceful_timeout: float = 30,
        immediate_timeout: float = 2,
        name: str = "test-team",
        restart: Optional[str] = None,
        strategy: Optional[str] = None,
        groups: Optional[dict[str, dict[str, Any]]] = None,
        backend: str = "local",
    ) -> None:
        """`groups`: {name: {"agents": N, other group keys}}; group agents are named <group>-a, -b..."""
        self.root = root
        self.config = root / "team.yaml"
        self.storage = root / "state"
        self.names = [f"agent-{chr(ord('a') + i)}" for i in range(agents)]
        self.runs: list[Run] = []
        self.data: dict[str, Any] = {
            "team": name,
            "storage": "state",
            "llm": {"provider": "scripted", "latency": latency},
            "checkpoint": {"every": every, "keep": keep, "compress": True},
            "shutdown": {"graceful_timeout": graceful_timeout, "immediate_timeout": immediate_timeout},
            "agents": [{"name": n, "task": f"Count, as {n}.", "max_cycles": max_cycles} for n in self.names],
        }
        for group, keys in (groups or {}).items():
            keys = dict(keys)
            names = [f"{group}-{chr(ord('a') + i)}" for i in range(keys.pop("agents"))]
            self.names += names
            agents = [{"name": n, "task": f"Count, as {n}.", "max_cycles": max_cycles} for n in names]
            self.data.setdefault("groups", []).append({"name": group, **keys, "agents": agents})
        if backend == PACKED:
            self.data["agents_per_process"] = 2  # the default three agents: a pack of two, and one alone
        elif backend != "local":
            self.data["backend"] = backend
        if restart is not None:
            self.data["restart"] = restart
        if strategy is not None:
            self.data["strategy"] = strategy
        self.write()

    def write(self) -> None:
        self.config.write_text(yaml.safe_dump(self.data, sort_keys=False))

    def set_latency(self, latency: float) -> None:
        self.data["llm"]["latency"] = latency
        self.write()

    @property
    def team(self) -> str:
        return str(self.data["team"])

    @property
    def max_cycles(self) -> int:
        return int(self.data["agents"][0]["max_cycles"])

    # ---- what a run leaves behind -------------------------------------------

    def events(self, file: str = "events.jsonl") -> list[dict[str, Any]]:
        """Every event of the stream, oldest first: the rotated files `FILE.N` ... `FILE.1`, then `FILE`.

        A live run may be writing its last line as this reads: a line without
        its newline yet is not an event yet, and is left for the next look.
        """
        return [json.loads(line) for path in stream_files(self.storage / file)
                for line in _whole_lines(path.read_text()) if line.strip()]

    def store(self, agent: str) -> CheckpointStore:
        return CheckpointStore(self.storage, agent)

    def latest(self, agent: str) -> Optional[Checkpoint]:
        return self.store(agent).load_latest()

    def assert_exactly_once(self, agent: str, cycles: Optional[int] = None, *, may_be_empty: bool = False) -> Optional[Checkpoint]:
        """One assistant reply per cycle, in order, nothing lost, nothing twice.

        `may_be_empty`: an agent stopped before its first checkpoint has none, legitimately.
        """
        checkpoint = self.latest(agent)
        if checkpoint is None and may_be_empty:
            assert not self.store(agent).list(), f"{agent} has checkpoints but none is valid"
            return None
        assert checkpoint is not None, f"{agent} has no valid checkpoint"
        replies = [m["content"] for m in checkpoint.messages if m["role"] == "assistant"]
        expected = cycles if cycles is not None else checkpoint.cycle
        assert checkpoint.cycle == expected
        assert replies == [scripted_reply(k) for k in range(1, expected + 1)]
        return checkpoint

    # ---- runs ----------------------------------------------------------------

    def start(self, *extra: str, terminal: bool = False, env: Optional[dict[str, str]] = None) -> "Run":
        """Start a run; on a `terminal`, TERM=dumb (plain lines) unless `env` says otherwise."""
        run = Run(self, [sys.executable, "-m", "supervisor", str(self.config), *extra], terminal=terminal, env=env)
        self.runs.append(run)
        return run

    def cleanup(self) -> None:
        """Kill whatever a failed test left running."""
        for run in self.runs:
            if run.proc.poll() is None:
                run.kill()

    def run(self, *extra: str, timeout: float = HANG) -> "Run":
        run = self.start(*extra)
        run.wait(timeout)
        return run


class Run:
    def __init__(self, team: Team, argv: list[str], *, terminal: bool, env: Optional[dict[str, str]] = None) -> None:
        self.team = team
        self.terminal = terminal
        self._chunks: list[bytes] = []
        self._events_seen = len(team.events())
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), "TERM": "dumb", **(env or {})}
        if terminal:
            self.master, slave = os.openpty()
            self.proc = subprocess.Popen(
                argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
                preexec_fn=_take_terminal,
                env=env,
                cwd=team.root,
            )
            os.close(slave)
            self._reader = threading.Thread(target=self._drain_terminal, daemon=True)
        else:
            self.master = -1
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=team.root
            )
            self._reader = threading.Thread(target=self._drain_pipe, daemon=True)
        self._reader.start()
        self.started_at = time.monotonic()

    def _drain_terminal(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO once the last process holding the terminal is gone
                return
            if not data:
                return
            self._chunks.append(data)

    def _drain_pipe(self) -> None:
        assert self.proc.stdout is not None
        for data in iter(lambda: self.proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
            self._chunks.append(data)

    @property
    def output(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")

    @property
    def pid(self) -> int:
        return self.proc.pid

    # ---- driving -------------------------------------------------------------

    def ctrl_c(self) -> None:
        """A real ^C on the terminal when there is one, else SIGINT."""
        if self.terminal:
            os.write(self.master, b"\x03")
        else:
            os.kill(self.pid, signal.SIGINT)

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def new_events(self) -> list[dict[str, Any]]:
        """Events written by this run (the file keeps every run's)."""
        return self.team.events()[self._events_seen :]

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], Any], what: str, timeout: float = HANG) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate(self.new_events())
            if result:
                return result
            if self.proc.poll() is not None:
                result = predicate(self.new_events())
                if result:
                    return result
                raise AssertionError(f"supervisor exited ({self.proc.returncode}) before {what}:\n{self.output}")
            time.sleep(0.01)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output}")

    def wait_all_started(self) -> dict[str, int]:
        names = set(self.team.names)

        def started(events: list[dict[str, Any]]) -> dict[str, int]:
            pids = {e["agent_id"]: e["pid"] for e in events if e["event"] == "worker_started"}
            return pids if set(pids) == names else {}

        return self.wait_for(started, "every worker_started")

    def kill_worker_after(self, agent: str, checkpoints: int) -> dict[str, int]:
        """Once every worker is up and `agent` has saved `checkpoints` times, SIGKILL its worker.

        Returns the pids of the workers as first started.
        """
        pids = self.wait_all_started()
        enough = lambda ev: len(by_event(ev, "checkpoint_saved", agent)) >= checkpoints  # noqa: E731
        self.wait_for(enough, f"{agent}'s checkpoint {checkpoints}")
        psutil.Process(pids[agent]).kill()
        return pids

    def wait_cycles(self, count: int, agent: Optional[str] = None) -> None:
        def enough(events: list[dict[str, Any]]) -> bool:
            done = [e for e in events if e["event"] == "cycle_completed" and agent in (None, e["agent_id"])]
            return len(done) >= count

        self.wait_for(enough, f"{count} cycle_completed")

    def wait(self, timeout: float = HANG) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"supervisor did not exit within {timeout}s:\n{self.output}")
        self._reader.join(5)
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
        return code

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        for proc in self.descendants():
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        try:
            self.proc.kill()
            self.proc.wait(5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def _whole_lines(text: str) -> list[str]:
    """The complete lines of `text`: a last one without its newline is still being written."""
    lines = text.split("\n")
    return lines[:-1]


def cli(*args: str, cwd: Optional[Path] = None, env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess[str]:
    """`python -m supervisor ARGS` run to its end, as a user types it, on this tree's code; output captured."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    argv = [sys.executable, "-m", "supervisor", *args]
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=HANG, cwd=cwd, env=env)


PEAK_SCRIPT = """\
import sys
from supervisor.cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
with open("/proc/self/status") as status:
    print(next(line.split()[1] for line in status if line.startswith("VmHWM:")), file=sys.stderr)  # in KiB
sys.exit(code)
"""


def cli_peak(*args: str, cwd: Path, stdout: Optional[Path] = None) -> tuple[int, str, str, int]:
    """`python -m supervisor ARGS` to its end: (exit code, stdout, stderr, its own peak resident set in KiB).

    The peak is the child's VmHWM: getrusage's ru_maxrss would start from the
    test process's own peak, carried across fork and exec. `stdout`: a file to
    write it to instead of holding it (then "" is returned for it).
    """
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # `-c` puts the cwd first on the path
    with open(stdout, "w") if stdout is not None else contextlib.nullcontext() as sink:
        done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, *args], stdout=sink if sink else subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=HANG, cwd=cwd, env=env)
    *err, peak = done.stderr.splitlines()
    return done.returncode, done.stdout or "", "\n".join(err), int(peak)


def _take_terminal() -> None:
    """In the child, after setsid: make the pty our controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def gone(pids: list[int]) -> bool:
    """Every pid has exited (a zombie waiting for init to reap it counts as gone)."""
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def wait_gone(pids: list[int], timeout: float) -> float:
    """Seconds until every pid is gone; raises if they outlive `timeout`."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if gone(pids):
            return time.monotonic() - began
        time.sleep(0.005)
    alive = [p for p in pids if not gone([p])]
    raise AssertionError(f"processes {alive} still alive after {timeout}s")


def by_event(events: list[dict[str, Any]], name: str, agent: Optional[str] = None) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name and agent in (None, e.get("agent_id"))]


def fresh_python(script: str, *args: str, env: Optional[dict[str, str]] = None) -> Any:
    """Run `script` in a fresh interpreter (`-P`, the repo on its path, `env` or ours); its last line, as JSON.

    For what only a new process shows: what an import loads, what is made once per process.
    """
    done = subprocess.run([sys.executable, "-P", "-c", script, *args], capture_output=True, text=True, timeout=60,
                          cwd=REPO, env={**(os.environ if env is None else env), "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def closing_statuses(output: str, names: list[str]) -> dict[str, str]:
    """Each agent's status as the closing statistics print it: `  NAME  STATUS  cycles C/M  CHECKPOINT`."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().split("  ") if cell.strip()]
        if line.startswith("  ") and len(cells) >= 3 and cells[0] in names and cells[2].startswith("cycles "):
            rows[cells[0]] = cells[1]
    return rows


def fill_up(folder: Path) -> Path:
    """Write a file in `folder` until its file system has no room left; returns it (delete it to free the disk)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, bytes(4096))
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return filler
