"""The forkserver's rehearsal of a worker: the real start and immediate stop, leaving nothing behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import threading

import pytest

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


# ---- a model client's first calls (workers/providers/first_call.py) ------------------------------


def _open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _open_files() -> set[tuple[str, str]]:
    """Each descriptor with what it names (`socket:[inode]`...): a number reused for a new file counts as new."""
    named = set()
    for fd in _open_descriptors():
        try:
            named.add((fd, os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:  # closed meanwhile (the listing's own)
            pass
    return named


def _process_state() -> tuple:
    return (os.getcwd(), dict(os.environ), asyncio._get_running_loop())


def _left_behind(threads: set[threading.Thread], files: set[tuple[str, str]]) -> tuple[set, set]:
    """The threads and descriptors that are new since the snapshot.

    Only new ones count: an earlier test's server thread (a model double's connection handler)
    may end, and its socket close, while a rehearsal runs, and that is none of the rehearsal's doing.
    """
    return set(threading.enumerate()) - threads, _open_files() - files


@pytest.mark.parametrize("kind", ["ollama", "openai"])
def test_a_model_clients_first_calls_are_rehearsed_on_a_local_server_that_is_gone_after(kind):
    """Every call answered by the product's own model API; no thread, socket or loop left for the forks."""
    from protocol.specs import LLMSpec
    from workers.providers import first_call

    def spec(url: str) -> LLMSpec:
        if kind == "ollama":
            return LLMSpec(provider="ollama", host=url, model=first_call.MODEL)
        return LLMSpec(provider="openai", host=url, base_url=url + "/v1", model=first_call.MODEL, api="openai")

    state, threads, files = _process_state(), set(threading.enumerate()), _open_files()
    assert first_call.rehearse(spec, 3) == 3
    assert _process_state() == state
    assert _left_behind(threads, files) == (set(), set())


def test_a_rehearsal_the_server_refuses_ends_at_once_with_nothing_left():
    from protocol.specs import LLMSpec
    from workers.providers import first_call

    state, threads, files = _process_state(), set(threading.enumerate()), _open_files()
    assert first_call.rehearse(lambda url: LLMSpec(provider="ollama", host=url, model="no-such-model")) == 0
    assert _process_state() == state
    assert _left_behind(threads, files) == (set(), set())


PRELOADED = """
import json, os, sys, threading
from workers.providers import preload
fds = len(os.listdir("/proc/self/fd"))
preload([["ollama", "ollama"], ["openai", "openai"]])
print(json.dumps({"threads": threading.active_count(), "fds": len(os.listdir("/proc/self/fd")) - fds,
                  "loaded": [m in sys.modules for m in ("anyio._backends._asyncio", "sniffio",
                                                        "openai.resources.chat.completions.completions", "jiter")]}))
"""


@pytest.mark.e2e  # a fresh interpreter, as the forkserver is
def test_the_forkserver_preload_leaves_what_a_first_call_loads_loaded_and_no_thread_or_descriptor():
    """What the first call imports on its own is there before any worker is forked; the server is gone."""
    from harness import fresh_python

    assert fresh_python(PRELOADED) == {"threads": 1, "fds": 0, "loaded": [True, True, True, True]}


def test_a_proxy_in_the_environment_does_not_take_the_rehearsed_calls(monkeypatch):
    """HTTP_PROXY names a port nobody listens on: the calls to 127.0.0.1 still reach the local server."""
    from protocol.specs import LLMSpec
    from workers.providers import first_call

    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    state = _process_state()
    assert first_call.rehearse(lambda url: LLMSpec(provider="ollama", host=url, model=first_call.MODEL), 2) == 2
    assert _process_state() == state  # the variables are back
