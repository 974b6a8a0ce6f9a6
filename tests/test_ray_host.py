"""The part of the Ray backend that runs on a node, without Ray: a real child process and its relayed bytes.

`ChildHost` is a plain class (Ray wraps it into an actor), so its relay is
tested here in this process, on a real child started by its entry point.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import AsyncIterator

import pytest

from harness import wait_gone
from supervisor.runtime.ray_host import ChildHost, Item, probe_storage

pytestmark = pytest.mark.e2e
TESTS = str(Path(__file__).resolve().parent)
PATHS = [TESTS, *sys.path]


async def _until_exit(stream: AsyncIterator[list[Item]], child: int, items: list[Item]) -> list[Item]:
    """Take batches from the host's stream until `child`'s exit code has come; everything seen, in order."""
    while not any(c == child and isinstance(item, int) for c, item in items):
        items.extend(await stream.__anext__())
    return items


async def _both_up(first: str, second: str) -> tuple[ChildHost, AsyncIterator[list[Item]]]:
    """A host with children 1 and 2 started by these entries, once both have said they are up."""
    host = ChildHost()
    await host.start(1, first, b"", PATHS, {})
    await host.start(2, second, b"", PATHS, {})
    stream = host.frames()
    items: list[Item] = []
    while sorted(items) != [(1, b"up"), (2, b"up")]:
        items.extend(await stream.__anext__())
    return host, stream


def test_the_child_s_bytes_go_up_the_supervisor_s_come_down_and_its_exit_code_comes_last():
    async def scenario() -> list[Item]:
        host = ChildHost()
        info = await host.start(1, "forkserver_entries:wait_for_word", b"", PATHS, {})
        assert info["pid"] > 0
        stream = host.frames()
        items = [*await stream.__anext__()]  # b"up": the child runs, on its own pipe
        assert await host.push([(1, b"3")]) == []  # the child exits with the code the byte names
        return await _until_exit(stream, 1, items)

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == [(1, b"up"), (1, 3)]


def test_children_of_one_host_are_told_apart_and_one_s_end_leaves_the_other_running():
    async def scenario() -> tuple[list[Item], list[Item], int]:
        host, stream = await _both_up("forkserver_entries:wait_for_word", "forkserver_entries:wait_for_word")
        assert await host.push([(2, b"5")]) == []
        first = await _until_exit(stream, 2, [])
        still = len(host.children)
        assert await host.push([(2, b"1"), (1, b"4")]) == [2]  # 2 is gone; 1 still reads
        return first, await _until_exit(stream, 1, []), still

    first, second, still = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert first == [(2, 5)] and second == [(1, 4)] and still == 1


def test_a_child_that_does_not_read_holds_up_only_its_own_frames(monkeypatch):
    import supervisor.runtime.ray_host as ray_host

    monkeypatch.setattr(ray_host, "MAX_UNREAD", 8 * 1024 * 1024)

    async def scenario() -> tuple[list[int], list[Item], list[int]]:
        host, stream = await _both_up("forkserver_entries:deaf", "forkserver_entries:wait_for_word")
        # 4 MiB for the deaf child fill its pipe many times over; the other's Interrupt must not wait for it
        first = await asyncio.wait_for(host.push([(1, b"x" * 4 * 1024 * 1024), (2, b"7")]), 5)
        other = await asyncio.wait_for(_until_exit(stream, 2, []), 10)
        cut_off = await host.push([(1, b"y" * 5 * 1024 * 1024)])  # more than it may leave unread
        await host.kill(1)
        await _until_exit(stream, 1, [])
        return first, other, cut_off

    first, other, cut_off = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert first == [] and other == [(2, 7)] and cut_off == [1]


def test_a_killed_child_reports_sigkill_and_leaves_nothing():
    async def scenario() -> tuple[int, list[Item]]:
        host = ChildHost()
        info = await host.start(7, "forkserver_entries:wait_for_word", b"", PATHS, {})
        stream = host.frames()
        assert await stream.__anext__() == [(7, b"up")]
        await host.kill(7)
        return info["pid"], await _until_exit(stream, 7, [])

    pid, rest = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert rest == [(7, -9)]
    wait_gone([pid], 2)


def test_a_child_killed_before_its_start_is_never_started():
    async def scenario() -> None:
        host = ChildHost()
        await host.kill(3)
        await host.start(3, "forkserver_entries:wait_for_word", b"", PATHS, {})

    with pytest.raises(RuntimeError, match="killed before it started"):
        asyncio.run(asyncio.wait_for(scenario(), 60))


def test_every_node_s_probe_file_lands_in_storage_and_a_symlink_is_not_followed(tmp_path):
    answer = probe_storage(str(tmp_path), "abc123")
    assert answer["error"] is None and Path(answer["path"]).read_text() == "abc123"
    target = tmp_path / "elsewhere"
    target.write_text("")
    trap = Path(str(answer["path"]).replace("abc123", "trap"))
    trap.symlink_to(target)
    refused = probe_storage(str(tmp_path), "trap")
    assert refused["error"] is not None and target.read_text() == ""
