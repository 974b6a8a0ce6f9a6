"""`checkpoints CONFIG`: list, verify, show or prune an agent's checkpoints.

Listing shows each file's size on disk, its uncompressed size and its
compression; `--verify` checks each one and exits 1 if any is corrupt;
`--show` prints one checkpoint's state as one JSON object. `--prune` is the one
command that writes: it takes the run lock for the few milliseconds it
deletes, so it is refused while a run is live and no run can start under it.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import zlib
from typing import Any, BinaryIO, Optional

from protocol.checkpoints import MAX_CONTENT_BYTES, CheckpointCorrupt, CheckpointInfo
from supervisor.config import TeamConfig
from supervisor.storage import exclusive_run_lock
from supervisor.tools.stores import agent_names, checkpoint_store, storage_error
from supervisor.tools.text import error, print_json, print_lines, size, table, warn

_GZIP_MAGIC = b"\x1f\x8b"
_FLAG_HCRC, _FLAG_EXTRA, _FLAG_NAME, _FLAG_COMMENT = 0x02, 0x04, 0x08, 0x10


def _compression(file: BinaryIO) -> tuple[str, Optional[int]]:
    """("gzip" or "none", uncompressed size or None if the file cannot be read through).

    A store with `compress: false` still writes the gzip format, with the
    deflate data "stored" (level 0), so the first deflate block's type tells
    compressed from not. The uncompressed size is counted by reading through
    gzip, up to what a checkpoint can hold; a damaged file gives None here
    (`--verify` says what is wrong). `file` is closed on return.
    """
    with file as handle:
        head = handle.read(4096)
        if head[:2] != _GZIP_MAGIC:
            return "none", os.fstat(handle.fileno()).st_size  # not gzip at all (and so not a valid checkpoint)
        flags, pos = head[3], 10
        try:
            if flags & _FLAG_EXTRA:
                pos += 2 + int.from_bytes(head[pos : pos + 2], "little")
            for flag in (_FLAG_NAME, _FLAG_COMMENT):
                if flags & flag:
                    pos = head.index(b"\0", pos) + 1
            if flags & _FLAG_HCRC:
                pos += 2
            method = "none" if (head[pos] >> 1) & 0b11 == 0 else "gzip"  # BTYPE 00: stored, not compressed
        except (ValueError, IndexError):
            return "gzip", None
        handle.seek(0)
        total = 0
        try:
            with gzip.GzipFile(fileobj=handle, mode="rb") as unzipped:
                while True:
                    chunk = unzipped.read(1 << 16)
                    if not chunk:
                        return method, total
                    total += len(chunk)
                    if total > MAX_CONTENT_BYTES:  # more than a checkpoint can hold: a bomb, not read through
                        return method, None
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError):
            return method, None


def checkpoints_command(config: TeamConfig, args: argparse.Namespace) -> int:
    """List checkpoints (names, sizes on disk, compression), verify them, show one, or prune."""
    if args.prune is not None:
        if args.show is not None or args.verify:
            raise error("--prune cannot be combined with --show or --verify", 2)
        return _prune(config, args)
    if args.show is not None:
        if args.agent is None:
            raise error("--show needs --agent", 2)
        agent_names(config, args.agent)
        return _show(config, args.agent, args.show)
    rows: list[dict[str, Any]] = []
    try:
        for name in agent_names(config, args.agent):
            store = checkpoint_store(config, name)
            for info in store.list():
                try:
                    method, plain = _compression(store.open_raw(info.checkpoint_id))
                except FileNotFoundError:
                    continue  # removed by a live run's retention since it was listed
                except CheckpointCorrupt:
                    method, plain = "none", None  # a symlink or not a file at all: --verify says which
                row: dict[str, Any] = {
                    "agent": name,
                    "checkpoint_id": info.checkpoint_id,
                    "cycle": info.cycle,
                    "size_bytes": info.size_bytes,
                    "uncompressed_bytes": plain,
                    "compression": method,
                    "ratio": round(plain / info.size_bytes, 2) if method == "gzip" and plain and info.size_bytes else None,
                    "valid": None,
                    "error": None,
                }
                if args.verify:
                    try:
                        store.verify(info.checkpoint_id)
                        row["valid"] = True
                    except CheckpointCorrupt as exc:
                        if exc.reason == "missing":
                            continue  # removed by a live run's retention since it was listed: gone, not corrupt
                        row["valid"] = False
                        row["error"] = exc.reason
                rows.append(row)
    except OSError as exc:
        raise storage_error(config, exc) from exc
    bad = sum(1 for row in rows if row["valid"] is False)
    if args.json:
        print_json(rows)
    elif not rows:
        print_lines(f"no checkpoints yet ({config.storage})")
    else:
        headers = ["AGENT", "CHECKPOINT", "CYCLE", "SIZE", "UNCOMPRESSED", "COMPRESSION"] + (["VERDICT"] if args.verify else [])
        listing: list[list[str]] = []
        for row in rows:
            cells: list[str] = [
                str(row["agent"]),
                str(row["checkpoint_id"]),
                str(row["cycle"]),
                size(row["size_bytes"]),
                "?" if row["uncompressed_bytes"] is None else size(row["uncompressed_bytes"]),
                _describe_compression(row),
            ]
            if args.verify:
                cells.append("ok" if row["valid"] else f"corrupt: {row['error']}")
            listing.append(cells)
        print_lines(*table(headers, listing, right=frozenset({2, 3, 4})))
        on_disk = sum(row["size_bytes"] for row in rows)
        agents = len({row["agent"] for row in rows})
        print_lines(f"{len(rows)} checkpoint(s) of {agents} agent(s), {size(on_disk)} on disk")
        if args.verify:
            print_lines(f"verified {len(rows)} checkpoint(s): {bad} corrupt")
    return 1 if bad else 0


def _describe_compression(row: dict[str, Any]) -> str:
    if row["compression"] != "gzip":
        return "none"
    return f"gzip {row['ratio']:.1f}x" if row["ratio"] is not None else "gzip (unreadable)"


def _prune(config: TeamConfig, args: argparse.Namespace) -> int:
    """Delete all but the newest N checkpoints of each agent (never an agent's newest valid one)."""
    keep: int = args.prune
    names = agent_names(config, args.agent)
    removed: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    stuck: list[str] = []
    if config.storage.is_dir():
        try:
            with exclusive_run_lock(config):
                for name in names:
                    store = checkpoint_store(config, name)
                    gone = store.prune(keep)
                    removed += [_info_row(name, info) for info in gone]
                    left = store.list()
                    kept += [_info_row(name, info) for info in left]
                    if len(left) > keep:  # the newest valid one may stay below the newest N; nothing else may
                        protected = store.load_latest()
                        stuck += [
                            f"{name}/{info.checkpoint_id}"
                            for info in left[:-keep]
                            if protected is None or info.checkpoint_id != protected.checkpoint_id
                        ]
        except OSError as exc:
            raise storage_error(config, exc) from exc
    freed = sum(row["size_bytes"] for row in removed)
    if args.json:
        print_json({"keep": keep, "removed": removed, "freed_bytes": freed, "kept": kept, "not_removed": stuck})
    else:
        for name in names:
            mine = [row for row in removed if row["agent"] == name]
            still = [row for row in kept if row["agent"] == name]
            if mine:
                cycles = f"cycle {mine[0]['cycle']}" if len(mine) == 1 else f"cycles {mine[0]['cycle']}-{mine[-1]['cycle']}"
                print_lines(
                    f"{name}: removed {len(mine)} checkpoint(s) ({cycles}), {size(sum(r['size_bytes'] for r in mine))} freed;"
                    f" kept {len(still)}, newest {still[-1]['checkpoint_id']}"
                )
            else:
                print_lines(f"{name}: nothing to remove ({len(still)} checkpoint(s), keeping up to {keep})")
        print_lines(f"removed {len(removed)} checkpoint(s), {size(freed)} freed")
    if stuck:
        raise error(f"storage {config.storage}: could not delete {', '.join(stuck)}", 3)
    return 0


def _info_row(agent: str, info: CheckpointInfo) -> dict[str, Any]:
    return {"agent": agent, "checkpoint_id": info.checkpoint_id, "cycle": info.cycle, "size_bytes": info.size_bytes}


def _show(config: TeamConfig, agent: str, which: str) -> int:
    """Print one checkpoint's whole state as a single JSON object."""
    store = checkpoint_store(config, agent)
    try:
        if which == "latest":
            checkpoint = store.load_latest(
                on_corrupt=lambda cid, why: warn(f"checkpoint {cid} of agent '{agent}' is corrupt: {why}, skipped")
            )
            if checkpoint is None:
                raise error(f"agent '{agent}' has no valid checkpoint", 1)
        else:
            try:
                checkpoint = store.load(which)
            except ValueError as exc:  # not a checkpoint name at all (a typo, or a path)
                print_lines(f"error: agent '{agent}': {exc}", file=sys.stderr)
                return 1
            except CheckpointCorrupt as exc:  # reason "missing" when no such file
                print_lines(f"error: checkpoint {which} of agent '{agent}' is corrupt: {exc.reason}", file=sys.stderr)
                return 1
    except OSError as exc:
        raise storage_error(config, exc) from exc
    print_json(checkpoint.to_dict())
    return 0
