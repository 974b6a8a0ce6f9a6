"""A person's terminal, scripted: a job-control shell on a pseudo-terminal.

`ShellTerminal` starts `bash -i` (no rc files) on a fresh pty, with the pty as
its controlling terminal. A command typed into it runs as the foreground job in
a process group of its own, exactly as when a person types it; `ctrl_c` writes
the byte 0x03 to the master, so the kernel's line discipline sends SIGINT to
that foreground group, as a real keyboard does. "The terminal is back" means
what the person sees: the shell's prompt printed after the job, and the pty's
foreground process group the shell's own again.

Only the standard library: the timings come from `time.perf_counter` around
reads of the master, so a look costs at most one read's wake-up.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import time
from typing import Optional

PROMPT = "@@ready@@$ "  # unlikely in any output; the shell prints it when it takes the terminal back


def _controlling_terminal() -> None:
    """In the child, after setsid: the pty becomes its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class ShellTerminal:
    """`bash -i` on a pty of `rows` x `cols`; `run` types a command, `ctrl_c` presses Ctrl+C."""

    def __init__(self, env: dict[str, str], cwd: str, rows: int = 50, cols: int = 160) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        shell_env = {**env, "PS1": PROMPT, "PS2": "", "HISTFILE": "/dev/null", "PROMPT_COMMAND": ""}
        self.shell = subprocess.Popen(
            ["bash", "--norc", "--noprofile", "-i"],
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=_controlling_terminal, env=shell_env, cwd=cwd,
        )
        os.close(slave)
        self.buffer = bytearray()
        self.wait_for(PROMPT.encode(), 10.0)
        self.type("stty -echo")  # keystrokes are not echoed back into the output we search
        self.wait_for(PROMPT.encode(), 10.0)
        self.buffer.clear()

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def ctrl_c(self) -> None:
        os.write(self.master, b"\x03")

    def foreground(self) -> int:
        """The pty's foreground process group."""
        return os.tcgetpgrp(self.master)

    def read(self, timeout: float) -> bool:
        """Read what the terminal shows within `timeout`; False when nothing came."""
        ready, _, _ = select.select([self.master], [], [], max(0.0, timeout))
        if not ready:
            return False
        try:
            data = os.read(self.master, 1 << 16)
        except OSError:
            return False
        self.buffer += data
        return bool(data)

    def wait_for(self, marker: bytes, timeout: float, start: int = 0) -> Optional[float]:
        """perf_counter() when `marker` appears in the output after `start`; None on timeout."""
        deadline = time.perf_counter() + timeout
        while self.buffer.find(marker, start) < 0:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return None
            self.read(remaining)
        return time.perf_counter()

    def job_pgid(self, timeout: float = 10.0) -> int:
        """The foreground job's process group, once the shell has handed it the terminal."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            group = self.foreground()
            if group != self.shell.pid:
                return group
            self.read(0.002)
        raise RuntimeError("the shell never gave the terminal to the job")

    def back(self, timeout: float, start: int) -> Optional[float]:
        """perf_counter() when the prompt is shown again after `start` and the shell holds the terminal."""
        seen = self.wait_for(PROMPT.encode(), timeout, start)
        if seen is None:
            return None
        deadline = time.perf_counter() + 1.0
        while self.foreground() != self.shell.pid:  # bash takes the terminal back before it prints the prompt
            if time.perf_counter() > deadline:
                return None
            time.sleep(0.0005)
        return seen

    def last_exit_code(self, timeout: float = 5.0) -> int:
        """The exit code of the job that just gave the terminal back, as the shell reports it (-1 if it did not)."""
        mark = len(self.buffer)
        self.type('echo "rc=$?"')
        self.wait_for(b"rc=", timeout, mark)
        self.wait_for(b"\n", timeout, self.buffer.find(b"rc=", mark))
        line = self.buffer[self.buffer.find(b"rc=", mark):].split(b"\n")[0]
        return int(line[3:].strip() or -1)

    def close(self) -> None:
        try:
            self.type("exit")
            self.shell.wait(2)
        except (OSError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.shell.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.shell.wait(5)
        os.close(self.master)
