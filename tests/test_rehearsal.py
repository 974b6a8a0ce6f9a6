"""The forkserver's rehearsal of a worker: the real start and immediate stop, leaving nothing behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import threading

from workers import rehearsal


def test_each_rehearsal_runs_a_real_worker_from_start_to_its_stopped():
    assert rehearsal.rehearse(3) == 3


def test_a_rehearsal_leaves_the_process_as_it_found_it(monkeypatch):
    """The forkserver forks every worker from what is left: no thread, no file, no handler, no loop."""
    before = (threading.active_count(), os.getcwd(), list(sys.path), dict(os.environ),
              [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)], signal.set_wakeup_fd(-1))
    signal.set_wakeup_fd(before[-1])
    temp = set(os.listdir(tempfile.gettempdir()))
    assert rehearsal.rehearse(2) == 2
    after = (threading.active_count(), os.getcwd(), list(sys.path), dict(os.environ),
             [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)], signal.set_wakeup_fd(-1))
    signal.set_wakeup_fd(after[-1])
    assert after == before
    assert set(os.listdir(tempfile.gettempdir())) <= temp
    assert asyncio._get_running_loop() is None
