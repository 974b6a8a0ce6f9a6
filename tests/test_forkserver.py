"""The forkserver, for real: a spawned server process, forked workers, real exit codes, a real SIGKILL."""

from __future__ import annotations

import errno
import os
import signal
import socket
import time

import psutil
import pytest

from harness import HANG, wait_gone
from supervisor.runtime.forkserver import LOST_STATUS, ForkServer, read_status
from supervisor.runtime.process import wait_ready

pytestmark = pytest.mark.e2e  # every test here starts a forkserver and real workers

ENTRY = "forkserver_entries:wait_for_word"


def start(server: ForkServer) -> tuple[socket.socket, int, int]:
    ours, theirs = socket.socketpair()
    try:
        pid, status = server.start(ENTRY, theirs, os.getpid())
    finally:
        theirs.close()
    assert ours.recv(2) == b"up"  # it runs the entry, in a process of its own
    os.set_blocking(status, False)
    return ours, pid, status


def exit_code(status: int) -> int:
    deadline = time.monotonic() + HANG
    code = read_status(status)
    while code is None and time.monotonic() < deadline:
        wait_ready((status,), timeout=deadline - time.monotonic())
        code = read_status(status)
    assert code is not None, "no exit status"
    return code


@pytest.fixture
def server():
    server = ForkServer(["forkserver_entries"])
    yield server
    server.close()
    wait_gone([server.pid], HANG)
    try:
        os.waitpid(server.pid, 0)
    except ChildProcessError:
        pass


def test_each_worker_is_forked_from_the_server_and_its_exit_code_comes_back(server):
    workers = [start(server) for _ in range(3)]
    assert {psutil.Process(pid).ppid() for _, pid, _ in workers} == {server.pid}
    assert len({pid for _, pid, _ in workers}) == 3
    (a, _, a_status), (b, _, b_status), (_, c_pid, c_status) = workers
    assert read_status(a_status) is None  # still running
    a.sendall(b"0")
    b.sendall(b"3")
    os.kill(c_pid, signal.SIGKILL)
    assert (exit_code(a_status), exit_code(b_status), exit_code(c_status)) == (0, 3, -signal.SIGKILL)


def test_an_entry_that_raises_exits_70_with_one_line_and_the_server_carries_on(capfd):
    server = ForkServer(["forkserver_entries"])  # started here, so its stderr is the captured one
    try:
        check_a_raising_entry(server, capfd)
    finally:
        server.close()


def check_a_raising_entry(server: ForkServer, capfd) -> None:
    sock, _, status = start(server)
    sock.sendall(b"r")
    assert exit_code(status) == 70
    err = capfd.readouterr().err
    assert "worker entry failed: RuntimeError: the entry broke" in err and "Traceback" not in err
    assert "\x1b" not in err and err.count("\n") == 1  # what the exception says cannot drive the terminal
    sock, _, status = start(server)
    sock.sendall(b"0")
    assert exit_code(status) == 0


def test_an_entry_that_cannot_be_found_is_an_error_reply_not_a_dead_server(server):
    ours, theirs = socket.socketpair()
    with pytest.raises(OSError, match="no_such_module"):
        server.start("no_such_module:run", theirs, os.getpid())
    theirs.close()
    ours.close()
    sock, _, status = start(server)  # the server still answers
    sock.sendall(b"0")
    assert exit_code(status) == 0


def test_a_killed_server_loses_its_workers_statuses_and_takes_its_workers_with_it(server):
    workers = [start(server) for _ in range(2)]
    os.kill(server.pid, signal.SIGKILL)
    assert [exit_code(status) for _, _, status in workers] == [LOST_STATUS, LOST_STATUS]
    wait_gone([pid for _, pid, _ in workers], HANG)  # their parent-death signal
    ours, theirs = socket.socketpair()
    with pytest.raises(ConnectionRefusedError) as refused:
        server.start(ENTRY, theirs, os.getpid())
    assert refused.value.errno == errno.ECONNREFUSED


def test_the_server_leaves_when_its_connection_closes_and_its_workers_follow(server):
    _, pid, _ = start(server)
    server.close()  # as when the supervisor dies, even by SIGKILL
    wait_gone([server.pid, pid], HANG)


def test_starts_asked_for_ahead_come_back_in_order_and_one_failure_spoils_no_other(server):
    pairs = [socket.socketpair() for _ in range(40)]  # more than the window of requests in flight
    jobs = [("no_such_module:run" if i == 7 else ENTRY, theirs, (os.getpid(),)) for i, (_, theirs) in enumerate(pairs)]
    results = list(server.start_many(jobs, window=8))
    for _, theirs in pairs:
        theirs.close()
    assert isinstance(results[7], OSError) and "no_such_module" in str(results[7])
    started = [(index, result) for index, result in enumerate(results) if index != 7]
    assert all(isinstance(result, tuple) for _, result in started)
    for index, (pid, (status,)) in started:
        ours = pairs[index][0]
        assert ours.recv(2) == b"up"  # job i's worker holds job i's pipe: the replies are in request order
        ours.sendall(str(index % 10).encode())
        os.set_blocking(status, False)
        assert exit_code(status) == index % 10


def test_a_pack_is_one_process_with_a_pipe_and_a_status_pipe_per_agent_and_nothing_else(server):
    """Agents that share a process (`agents_per_process`): each leaves with its own code, the rest with the process's."""
    pairs = [socket.socketpair() for _ in range(4)]
    lone, lone_theirs = socket.socketpair()
    jobs = [("forkserver_entries:pack_of_words", [theirs for _, theirs in pairs], (os.getpid(),)),
            (ENTRY, lone_theirs, (os.getpid(),))]
    (pid, statuses), (lone_pid, (lone_status,)) = list(server.start_many(jobs))
    for _, theirs in (*pairs, (lone, lone_theirs)):
        theirs.close()
    assert len(statuses) == 4 and pid != lone_pid and psutil.Process(pid).ppid() == server.pid
    # Its descriptors: the standard three, its four pipes and four status pipes, the listing's own; none of the server's.
    assert {ours.recv(8) for ours, _ in pairs} == {b"up 12".ljust(8)}
    for status in (*statuses, lone_status):
        os.set_blocking(status, False)
    pairs[2][0].sendall(b"3")
    assert exit_code(statuses[2]) == 3  # it left alone: its own code, while its siblings run on
    assert psutil.pid_exists(pid) and read_status(statuses[0]) is None
    pairs[0][0].sendall(b"4")
    assert exit_code(statuses[0]) == 4
    os.kill(pid, signal.SIGKILL)
    assert (exit_code(statuses[1]), exit_code(statuses[3])) == (-signal.SIGKILL, -signal.SIGKILL)
    assert read_status(lone_status) is None  # the lone worker is a process of its own
    lone.sendall(b"0")
    assert exit_code(lone_status) == 0


def test_what_the_server_is_asked_to_prepare_is_loaded_in_every_later_worker(server):
    def loaded() -> bytes:
        ours, theirs = socket.socketpair()
        server.start("forkserver_entries:has_wave", theirs, os.getpid())
        theirs.close()
        return ours.recv(1)

    assert loaded() == b"0"
    server.prepare("no_such_module_here:run")  # one that fails spoils nothing
    server.prepare("importlib:import_module", "wave")
    assert loaded() == b"1"


def test_a_prepare_does_not_wait_for_the_server_and_the_next_start_reads_its_reply_first(server, tmp_path):
    """The supervisor goes on while the server prepares; the start after it gets its own reply, and the preparation."""
    let_go = tmp_path / "let-go"
    server.prepare("forkserver_entries:hold_until", str(let_go))
    assert server.unanswered == 1 and not let_go.exists()  # returned while the server is still in the call
    let_go.touch()
    ours, theirs = socket.socketpair()
    pid, status = server.start("forkserver_entries:says_warmed", theirs, os.getpid())
    theirs.close()
    assert ours.recv(64) == b"held" and server.unanswered == 0
    os.set_blocking(status, False)
    assert exit_code(status) == 0


def test_the_servers_warm_calls_run_before_it_forks_and_one_that_fails_spoils_nothing():
    server = ForkServer(["forkserver_entries"], ["forkserver_entries:warm_up", "forkserver_entries:warm_up_and_break",
                                                 "no_such_module_here:run", "forkserver_entries:warm_up"])
    try:
        for _ in range(2):  # every worker, not only the first
            ours, theirs = socket.socketpair()
            server.start("forkserver_entries:says_warmed", theirs, os.getpid())
            theirs.close()
            assert ours.recv(64) == b"warm,warm"
            ours.close()
    finally:
        server.close()
