"""The part of the Ray backend that runs on a node, without Ray: a real child process and its relayed bytes.

`ChildHost` is a plain class (Ray wraps it into an actor), so its relay is
tested here in this process, on a real child started by its entry point.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from harness import wait_gone
from supervisor.runtime.ray_host import ChildHost, probe_storage

pytestmark = pytest.mark.e2e
TESTS = str(Path(__file__).resolve().parent)
PATHS = [TESTS, *sys.path]


async def _first(host: ChildHost) -> tuple[list[object], object]:
    stream = host.frames()
    got = [await stream.__anext__()]
    return got, stream


def test_the_child_s_bytes_go_up_the_supervisor_s_come_down_and_its_exit_code_comes_last():
    async def scenario() -> list[object]:
        host = ChildHost()
        info = await host.start("forkserver_entries:wait_for_word", b"", PATHS, {})
        assert info["pid"] > 0
        stream = host.frames()
        items: list[object] = [await stream.__anext__()]  # b"up": the child runs, on its own pipe
        assert await host.push(b"3")  # the child exits with the code the byte names
        async for item in stream:
            items.append(item)
        return items

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == [b"up", 3]


def test_a_killed_child_reports_sigkill_and_leaves_nothing():
    async def scenario() -> tuple[int, list[object]]:
        host = ChildHost()
        info = await host.start("forkserver_entries:wait_for_word", b"", PATHS, {})
        stream = host.frames()
        assert await stream.__anext__() == b"up"
        await host.kill()
        return info["pid"], [item async for item in stream]

    pid, rest = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert rest == [-9]
    wait_gone([pid], 2)


def test_every_node_s_probe_file_lands_in_storage_and_a_symlink_is_not_followed(tmp_path):
    answer = probe_storage(str(tmp_path), "abc123")
    assert answer["error"] is None and Path(answer["path"]).read_text() == "abc123"
    target = tmp_path / "elsewhere"
    target.write_text("")
    trap = Path(str(answer["path"]).replace("abc123", "trap"))
    trap.symlink_to(target)
    refused = probe_storage(str(tmp_path), "trap")
    assert refused["error"] is not None and target.read_text() == ""
