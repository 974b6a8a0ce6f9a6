"""Seeded hostile files in storage: checkpoints and event logs, mutated every way we could think of.

Run as a child (`python -m storage_fuzz FOLDER`) under a memory limit and a
per-case alarm; it prints one JSON summary. For each checkpoint case the store
must return a checkpoint whose fields have the writer's types, or raise
CheckpointCorrupt, and a resume must fall back to the older valid checkpoint;
for each event-log case `logs`, `status` and `report` must finish with 0 or 1,
write no raw control character, and raise nothing.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import random
import re
import resource
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

SEED = 20261129
CHECKPOINT_CASES = 320
EVENT_CASES = 200
CASE_SECONDS = 10
MEMORY_LIMIT = 1 << 30
RAW_CONTROL = [chr(c) for c in range(0x20) if chr(c) not in "\n\t\r"] + ["\x7f", "\x9b"]

Case = tuple[str, Callable[[Path], None]]


# ---- checkpoints ------------------------------------------------------------------


DEEP = re.compile(r'"__DEEP_(\d+)__"')


def encode_lines(rows: list[Any]) -> bytes:
    """JSON Lines as a writer would lay them out; a `nested()` marker becomes that many brackets, raw."""
    text = "".join(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n" for row in rows)
    text = DEEP.sub(lambda m: "[" * int(m.group(1)) + '"deep"' + "]" * int(m.group(1)), text)
    return text.encode("utf-8", "surrogatepass")


def sealed(rows: list[Any]) -> bytes:
    """A checkpoint file whose trailer is right for its body: only the content can be wrong."""
    body = encode_lines(rows)
    trailer = encode_lines([{"sha256": hashlib.sha256(body).hexdigest(), "lines": body.count(b"\n")}])
    return gzip.compress(body + trailer, mtime=0)


def nested(depth: int) -> str:
    """A value nested `depth` lists deep, once encoded (json itself would recurse on it)."""
    return f"__DEEP_{depth}__"


def hostile_value(rng: random.Random) -> Any:
    return rng.choice([
        None, True, -1, 0, 2**63, -(2**63) - 1, 1e308, "", "x" * rng.choice([1, 1000, 200_000]),
        "\x1b]52;c;QUJD\x07", "\ud800", [], {}, nested(rng.choice([10, 99, 101, 5000])), {"a": nested(50)},
        "2026-13-45T99:99:99Z", "checkpoint_00000001_00000001.jsonl.gz", ["user"], {"role": "assistant"},
    ])


def header(cycle: int = 2, count: int = 6) -> dict[str, Any]:
    """The header the writer puts on the second checkpoint of an agent, as it lays it out."""
    return {"format": "agent-supervisor.checkpoint", "version": 1, "agent": "fuzz",
            "checkpoint_id": f"checkpoint_{cycle:08d}_{cycle:08d}.jsonl.gz", "cycle": cycle, "status": "running",
            "budget_spent_usd": 0.0, "created_at": "2026-11-29T00:00:00Z", "message_count": count, "extra": {}}


def messages(cycles: int) -> list[dict[str, Any]]:
    rows = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"}]
    for k in range(1, cycles + 1):
        rows += [{"role": "user", "content": f"step {k}"}, {"role": "assistant", "content": f"cycle {k}: ok"}]
    return rows


def checkpoint_cases(rng: random.Random) -> Iterator[tuple[str, Callable[[bytes], bytes]]]:
    """(case id, a function of the valid file's bytes to the hostile file's bytes)."""
    for number in range(CHECKPOINT_CASES):
        kind = rng.choice(["flip", "truncate", "append", "zero", "header", "message", "lines", "bomb", "raw"])
        seed = rng.randrange(2**32)

        def make(valid: bytes, kind: str = kind, seed: int = seed) -> bytes:
            r = random.Random(seed)
            if kind == "flip":
                data = bytearray(valid)
                for _ in range(r.randint(1, 8)):
                    data[r.randrange(len(data))] ^= 1 << r.randrange(8)
                return bytes(data)
            if kind == "truncate":
                return valid[: r.randrange(len(valid))]
            if kind == "append":
                return valid + r.randbytes(r.randint(1, 4096))
            if kind == "zero":
                start = r.randrange(len(valid))
                return valid[:start] + bytes(r.randint(1, 64)) + valid[start + 64 :]
            if kind == "header":
                head = header()
                head[r.choice(list(head) + ["surprise"])] = hostile_value(r)
                if r.random() < 0.3:
                    del head[r.choice(list(head))]
                return sealed([head, *messages(2)])
            if kind == "message":
                rows = messages(2)
                rows[r.randrange(len(rows))] = r.choice([hostile_value(r), {"role": hostile_value(r), "content": "x"},
                                                         {"role": "assistant", "content": hostile_value(r)}])
                return sealed([header(), *rows])
            if kind == "lines":
                rows = [header(), *messages(2)]
                return sealed(rows if r.random() < 0.3 else rows[: r.randint(0, 7)])
            if kind == "bomb":
                return gzip.compress(bytes(r.choice([1, 80]) << 20), mtime=0)  # 1 or 80 MiB of zeros
            return r.randbytes(r.randint(0, 2048))

        yield f"checkpoint-{number}-{kind}", make


def check_checkpoint(folder: Path, make: Callable[[bytes], bytes]) -> str:
    from protocol.checkpoints import Checkpoint, CheckpointCorrupt, CheckpointStore

    store = CheckpointStore(folder, "fuzz", keep=10)
    store.open_for_writing()
    older = store.save(messages=messages(1), cycle=1, status="running", budget_spent_usd=0.0)
    newer = store.save(messages=messages(2), cycle=2, status="running", budget_spent_usd=0.0)
    path = store.directory / newer.checkpoint_id
    path.write_bytes(make(path.read_bytes()))
    try:
        loaded = store.load(newer.checkpoint_id)
    except CheckpointCorrupt:
        corrupt: list[str] = []
        latest = store.load_latest(on_corrupt=lambda name, error: corrupt.append(name))
        assert latest is not None and latest.checkpoint_id == older.checkpoint_id, (latest, corrupt)
        assert corrupt == [newer.checkpoint_id], corrupt
        return "refused"
    assert isinstance(loaded, Checkpoint)
    assert isinstance(loaded.cycle, int) and loaded.cycle >= 0 and isinstance(loaded.messages, list)
    assert all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in loaded.messages)
    return "loaded"


# ---- event logs ----------------------------------------------------------------------


def event_line(rng: random.Random, run: int, k: int) -> dict[str, Any]:
    return rng.choice([
        {"timestamp": f"2026-11-29T0{run}:00:{k % 60:02d}.000Z", "level": "info", "event": "cycle_completed",
         "agent_id": "fuzz", "cycle": k, "duration_ms": 5.0, "cost_usd": 0.001, "reply": f"cycle {k}: ok"},
        {"timestamp": f"2026-11-29T0{run}:00:{k % 60:02d}.500Z", "level": "info", "event": "interrupt_initiated",
         "agent_id": "team", "source": "USER", "mode": "GRACEFUL", "message": "Ctrl+C", "interrupt_id": 1, "workers": 1},
        {"timestamp": f"2026-11-29T0{run}:00:{k % 60:02d}.900Z", "level": "info", "event": "checkpoint_saved",
         "agent_id": "fuzz", "checkpoint_id": "checkpoint_00000001_00000001.jsonl.gz", "cycle": k, "bytes": 10},
    ])


def event_cases(rng: random.Random) -> Iterator[tuple[str, Callable[[], bytes]]]:
    for number in range(EVENT_CASES):
        kind = rng.choice(["field", "line", "bytes", "deep", "long", "types"])
        seed = rng.randrange(2**32)

        def make(kind: str = kind, seed: int = seed) -> bytes:
            r = random.Random(seed)
            rows: list[Any] = []
            for run in range(1, r.randint(1, 3) + 1):
                rows.append({"timestamp": f"2026-11-29T0{run}:00:00.000Z", "level": "info", "event": "supervisor_started",
                             "agent_id": "team", "team": "team", "pid": run, "agents": ["fuzz"], "resumed": []})
                rows += [event_line(r, run, k) for k in range(1, r.randint(2, 6))]
                rows.append({"timestamp": f"2026-11-29T0{run}:00:59.000Z", "level": "info", "event": "supervisor_stopped",
                             "agent_id": "team", "status": "interrupted", "exit_code": 0})
            victim = r.randrange(len(rows))
            if kind == "field":
                row = dict(rows[victim])
                row[r.choice(list(row) + ["extra"])] = hostile_value(r)
                rows[victim] = row
            elif kind == "line":
                rows[victim] = hostile_value(r)
            elif kind == "types":
                rows[victim] = {key: hostile_value(r) for key in rows[victim]}
            elif kind == "deep":
                rows[victim] = {**rows[victim], "reply": nested(r.choice([63, 65, 1000, 100_000]))}
            elif kind == "long":
                rows[victim] = {**rows[victim], "reply": "x" * r.choice([(1 << 20) - 200, (1 << 20) + 10, 3 << 20])}
            data = bytearray(encode_lines(rows))
            if kind == "bytes":
                for _ in range(r.randint(1, 12)):
                    data[r.randrange(len(data))] = r.randrange(256)
            return bytes(data)

        yield f"events-{number}-{kind}", make


CONFIG = "team: team\nstorage: state\nagents:\n  - {name: fuzz, task: t, max_cycles: 3}\n"


def check_events(folder: Path, make: Callable[[], bytes]) -> str:
    from supervisor.cli import main

    (folder / "state").mkdir(mode=0o700)
    (folder / "team.yaml").write_text(CONFIG)
    events = folder / "state" / "events.jsonl"
    events.write_bytes(make())
    os.chmod(events, 0o600)
    for argv in (["logs"], ["status"], ["report", "-o", str(folder / "report.html")], ["logs", "--json"]):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([argv[0], str(folder / "team.yaml"), *argv[1:]])
        assert code in (0, 1), (argv, code, err.getvalue()[-500:])
        said = out.getvalue() + err.getvalue()
        assert not any(c in said for c in RAW_CONTROL), (argv, [c for c in RAW_CONTROL if c in said])
        assert "Traceback" not in said, (argv, said[-500:])
    return "read"


# ---- the runner ---------------------------------------------------------------------------


def _alarm(signum: int, frame: Any) -> None:
    raise TimeoutError(f"case took more than {CASE_SECONDS}s")


def run(folder: Path) -> dict[str, Any]:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    signal.signal(signal.SIGALRM, _alarm)
    rng = random.Random(SEED)
    outcomes: dict[str, int] = {}
    failures: list[str] = []
    jobs: list[tuple[str, Callable[[Path], str]]] = []
    for case_id, make in checkpoint_cases(rng):
        jobs.append((case_id, lambda where, make=make: check_checkpoint(where, make)))
    for case_id, make_events in event_cases(rng):
        jobs.append((case_id, lambda where, make=make_events: check_events(where, make)))
    for number, (case_id, job) in enumerate(jobs):
        where = folder / str(number)
        where.mkdir(mode=0o700)
        signal.alarm(CASE_SECONDS)
        try:
            outcome = job(where)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        except BaseException as exc:  # noqa: BLE001 - every failure is reported, none stops the run
            failures.append(f"{case_id}: {type(exc).__name__}: {exc!s:.300} | {traceback.format_exc(limit=-2)[-600:]}")
        finally:
            signal.alarm(0)
    return {"cases": len(jobs), "outcomes": outcomes, "failures": failures}


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]))))
