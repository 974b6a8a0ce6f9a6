"""Start a real team and read its events: what every benchmark that drives the product shares.

A benchmark measures; this module only starts and watches, the same way for
all of them. `TeamRun` writes a config into a fresh temporary folder, starts
`python -m supervisor CONFIG` in a session of its own (stdout discarded, stderr
kept for the error message if the run dies), reads events.jsonl as it grows,
and on leaving kills whatever the run left behind and removes the folder.
Waiting is on events, polled every POLL seconds: the timings come from the
events' own timestamps or from the benchmark's clock around its signals, so a
slower look costs no accuracy and steals no CPU from the run.

Importing this module writes the project's bytecode (`compile_bytecode`), so that every benchmark
measures the runs a user sees after a first one, not Python compiling the supervisor again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from supervisor.vocabulary import parse_timestamp  # noqa: E402  (needs REPO on sys.path)


def positive_ints(parser: argparse.ArgumentParser, option: str, text: str) -> list[int]:
    """A comma-separated list of positive integers from the command line, or the parser's one-line error."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        parser.error(f"{option}: expected comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        parser.error(f"{option} needs positive integers")
    return values


def add_agents_per_process(parser: argparse.ArgumentParser) -> None:
    """`--agents-per-process K`, the teams' `agents_per_process` (default 1: a process per agent)."""
    parser.add_argument("--agents-per-process", type=_positive_int, default=1, metavar="K",
                        help="the teams' agents_per_process (default 1: a process per agent; the floors stay so)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"needs a positive integer, got {text!r}")
    return value


def packing(per_process: int) -> dict[str, Any]:
    """The config keys for `per_process` agents to a process: none for 1, the default."""
    return {"agents_per_process": per_process} if per_process > 1 else {}


def packing_said(per_process: int) -> str:
    """What the line under a table adds when the teams' agents shared processes."""
    return f"; agents_per_process: {per_process}" if per_process > 1 else ""


def machine() -> str:
    """The machine a table was measured on, for the line under it: cores, Python, load average."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {load}"


def render_table(headers: list[str], rows: list[list[str]], markdown: bool, left: frozenset[int] = frozenset()) -> str:
    """A benchmark's table: Markdown for the README, or aligned text; the columns in `left` are text, the rest numbers."""
    if markdown:
        align = " | ".join("---" if i in left else "--:" for i in range(len(headers)))
        return "\n".join(["| " + " | ".join(headers) + " |", f"| {align} |", *("| " + " | ".join(row) + " |" for row in rows)])
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


def compile_bytecode() -> None:
    """Write `__pycache__` for the project's packages, as a user's first run does.

    Where PYTHONDONTWRITEBYTECODE is set (as in this project's CI and sandboxes), Python never
    writes it, so each process compiled the supervisor's modules anew: 0.62-0.69 s instead of
    0.41-0.55 s to import what a run imports (8 runs each), in every start of every benchmark.
    """
    import compileall

    for package in ("protocol", "workers", "supervisor"):
        compileall.compile_dir(str(REPO / package), quiet=1)


compile_bytecode()

POLL = 0.02  # seconds between looks at events.jsonl
STORAGE = "state"  # the team's storage, relative to its config

Event = dict[str, Any]


def timestamp(event: Event) -> float:
    """An event's ISO UTC timestamp as time.time() seconds (the same clock as the benchmark's)."""
    when = parse_timestamp(event["timestamp"])
    if when is None:
        raise ValueError(f"not a timestamp: {event['timestamp']!r}")
    return when.timestamp()


def named(events: list[Event], name: str, agent: str | None = None) -> list[Event]:
    """The events called `name`, of `agent` if given, in order."""
    return [e for e in events if e["event"] == name and agent in (None, e.get("agent_id"))]


def agents(count: int, *, task: str, max_cycles: int, name: str = "a{}") -> list[dict[str, Any]]:
    """`count` agent entries for a config, named name.format(i)."""
    return [{"name": name.format(i), "task": task, "max_cycles": max_cycles} for i in range(count)]


class EventTail:
    """Reads the new complete lines of events.jsonl as the supervisor appends them.

    A line still being written is kept back until its newline arrives, so a
    look in the middle of a write never sees half an event.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.partial = b""
        self.events: list[Event] = []

    def poll(self) -> list[Event]:
        """Read what was appended since the last look; returns the new events (all are kept in `events`)."""
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return []
        chunks = [self.partial]
        while True:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        *lines, self.partial = b"".join(chunks).split(b"\n")
        new = [json.loads(line) for line in lines if line.strip()]
        self.events.extend(new)
        return new

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class TeamRun:
    """One real `python -m supervisor` run on `config` (a config mapping without `storage`).

    Use as `with TeamRun(config, "bench-x-") as run:`; the process starts on
    entering, and leaving removes every process it started and its folder.
    """

    def __init__(self, config: dict[str, Any], prefix: str, tmp_root: str | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=prefix, dir=tmp_root))
        self.config = self.folder / "team.yaml"
        self.config.write_text(json.dumps({**config, "storage": STORAGE}, indent=1))  # JSON is valid YAML
        self.storage = self.folder / STORAGE
        self.tail = EventTail(self.storage / "events.jsonl")
        self.proc: subprocess.Popen[bytes] | None = None
        self.popen_at = 0.0  # time.time() just before the process was started
        self.known: list[psutil.Process] = []

    def __enter__(self) -> TeamRun:
        self.stderr = open(self.folder / "stderr.txt", "wb")  # closed in __exit__
        self.popen_at = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", str(self.config)],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            cwd=self.folder,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._kill_leftovers()
        finally:
            self.stderr.close()
            self.tail.close()
            shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the run has not started"
        return self.proc.pid

    @property
    def events(self) -> list[Event]:
        """Every event read so far (call `poll` to read on)."""
        return self.tail.events

    def poll(self) -> list[Event]:
        return self.tail.poll()

    def failed(self, what: str) -> RuntimeError:
        """An error naming `what` went wrong, with the end of the supervisor's stderr."""
        self.stderr.flush()
        detail = (self.folder / "stderr.txt").read_text(errors="replace").strip()[-2000:]
        return RuntimeError(f"{what}; supervisor stderr: {detail or '(empty)'}")

    def wait_for(self, predicate: Callable[[list[Event]], Any], timeout: float, what: str, poll: float = POLL) -> Any:
        """Until `predicate(events so far)` is truthy, and return it; fail fast if the supervisor died."""
        assert self.proc is not None, "the run has not started"
        deadline = time.time() + timeout
        while True:
            self.tail.poll()
            found = predicate(self.tail.events)
            if found:
                return found
            if self.proc.poll() is not None:
                raise self.failed(f"supervisor exited with code {self.proc.returncode} while waiting for {what}")
            if time.time() > deadline:
                raise self.failed(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(poll)

    def wait_started(self, count: int, timeout: float | None = None) -> list[Event]:
        """The first `count` worker_started events, once there are that many (groups' workers included)."""
        def started(events: list[Event]) -> list[Event]:
            found = named(events, "worker_started")
            return found[:count] if len(found) >= count else []

        return self.wait_for(started, 60 + 0.5 * count if timeout is None else timeout, f"{count} worker_started events")

    def wait_exit(self, timeout: float | None = None) -> int:
        """The supervisor's exit code, once it has exited on its own; then every event it wrote is read."""
        assert self.proc is not None, "the run has not started"
        code = self.proc.wait(timeout)
        self.tail.poll()
        return code

    def stop(self, signum: int, timeout: float) -> int:
        """Send `signum` to the supervisor and wait for its exit code (TimeoutExpired after `timeout`)."""
        assert self.proc is not None, "the run has not started"
        self.proc.send_signal(signum)
        return self.wait_exit(timeout)

    def process_tree(self, also: Iterable[int] = ()) -> list[int]:
        """`also`, then every process the supervisor has started (workers, forkservers).

        They are remembered, so that leaving kills them even once they are no
        longer the supervisor's children.
        """
        try:
            self.known = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            self.known = []
        return list(dict.fromkeys([*also, *(p.pid for p in self.known)]))

    def _kill_leftovers(self) -> None:
        if self.proc is None:
            return
        leftovers = list(self.known)
        try:
            leftovers += psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        for process in leftovers:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(leftovers, timeout=5)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
