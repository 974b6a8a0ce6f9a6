"""Hooks the hook tests name in their configs (`tests.hook_probe:...`): they run inside workers.

Each call is appended as one JSON line to the file named by $HOOK_LOG, so the
test can read back which hooks ran, in which order, with which payload.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any


def _write(name: str, payload: dict[str, Any]) -> None:
    with open(os.environ["HOOK_LOG"], "a") as log:
        log.write(json.dumps({"probe": name, **payload}) + "\n")


def record(payload: dict[str, Any]) -> None:
    _write("record", payload)


def first(payload: dict[str, Any]) -> None:
    _write("first", payload)


async def second(payload: dict[str, Any]) -> None:
    _write("second", payload)


def boom(payload: dict[str, Any]) -> None:
    raise RuntimeError("boom in a hook")


def slow(payload: dict[str, Any]) -> None:
    time.sleep(30)


async def slow_async(payload: dict[str, Any]) -> None:
    await asyncio.sleep(30)
