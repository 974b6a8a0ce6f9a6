"""Seeded config fuzzing: mutate valid configs, load each, check the one promise.

For every case, `load_config` either returns a config whose every Start
message encodes within the frame limit, or raises ConfigError (a UserError)
with one printable line; nothing else, within a bounded time and memory.

`python -m config_fuzz FOLDER [SEED] [COUNT]` (with tests/ on the path) runs
the cases in this process under a memory limit and a per-case alarm and
prints one JSON summary; the test runs it as a child so that a case that
blew either limit fails the test instead of taking pytest down with it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import resource
import signal
import stat
import sys
import time
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any, Optional

import yaml

SEED = 20240611
COUNT = 520
CASE_SECONDS = 20.0  # a hang detector, far above any case's real time
MEMORY_BYTES = 2 * 1024**3

# ---- valid configs to start from ----------------------------------------------------

MINIMAL: dict[str, Any] = {"team": "t", "storage": "s", "agents": [{"name": "a", "task": "Count.", "max_cycles": 3}]}
FULL: dict[str, Any] = {
    "team": "research",
    "storage": "state/research",
    "llm": {"provider": "scripted", "latency": "250ms", "cost_per_reply": 0.01, "system_prompt": "Be brief.",
            "options": {"temperature": 0, "num_ctx": 4096}, "request_timeout": 120, "price_per_1k_tokens": 0.0},
    "checkpoint": {"every": 2, "keep": 5, "compress": False},
    "shutdown": {"graceful_timeout": "1m", "immediate_timeout": 2},
    "hang_timeout": "2m",
    "restart": "transient",
    "max_restarts": 3,
    "restart_window": 60,
    "strategy": "one_for_one",
    "budget_usd": 5.0,
    "timeout": "30m",
    "hooks": [{"on": "after_cycle", "call": "os.path:join", "priority": 10, "timeout": "5s"}],
    "agent": "workers.chat_agent:ChatAgent",
    "agents": [
        {"name": "counter-a", "task": "Count from 1 to 50.", "max_cycles": 10, "llm": {"latency": 1.2},
         "params": {"depth": 2, "tags": ["x", "y"], "nested": {"k": [1, 2.5, None, True]}}, "hang_timeout": "5m",
         "budget_usd": 0.5, "timeout": "10m", "restart": "permanent"},
        {"name": "counter_b", "task": "Count backwards.", "max_cycles": 3, "max_restarts": 1, "restart_window": "30s"},
    ],
    "groups": [
        {"name": "writers", "strategy": "one_for_all", "max_restarts": 5,
         "agents": [{"name": "drafter", "task": "Draft.", "max_cycles": 5}, {"name": "editor", "task": "Edit.", "max_cycles": 5}]},
    ],
}
BASES = [MINIMAL, FULL]

# ---- value pools -----------------------------------------------------------------------

CONTROL = "".join(chr(c) for c in [*range(32), 127, *range(0x80, 0xA0)]) + "\u202e\u2028\u200b\ufeff"
SPECIAL_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2, 2**31, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**40),
    0.0, -0.0, 1e-308, 1e308, -1e308, math.inf, -math.inf, math.nan, 0.5, 1e-9,
    "", " ", "\t", "\n", "0", "30s", "-5s", "250ms", "2m", "1.5h", "1e400", "nan", "inf", "yes", "on", "off", "null", "~",
    "0x10", "0o17", "1_000", "12:30:45", "2024-01-01", "2024-13-45", "http://h:99999", "ftp://x", "a:b", "os:getcwd",
    "no.such.module:fn", "workers.chat_agent:ChatAgent", "embedded", "ollama", "openai", "one_for_all", "temporary",
    "after_cycle", "before_lunch", "../../etc", "/dev/zero", "~/x", "Ä-name", "UPPER", "-lead", "a" * 65,
    [], {}, [1, [2, [3]]], {"a": {"b": {}}}, [None], {"k": None}, {"1": 1}, ["x"] * 50,
]
UNICODE_BITS = ["é", "ß", "日本語", "🚀", "\u0301", "\u202e", "\u200d", "Ａ", "\U0001f600", "ǅ", "İ", "\uffff", "\U0010ffff"]


def random_text(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return "".join(rng.choice(UNICODE_BITS) for _ in range(rng.randrange(1, 12)))
    if kind == 1:
        return "".join(rng.choice(CONTROL + "ab ") for _ in range(rng.randrange(1, 12)))
    if kind == 2:
        return rng.choice("xyz") * rng.choice([1, 100, 10_000, 200_000])
    if kind == 3:
        return "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(1, 20)))
    return rng.choice(["\x1b[31mred", "\x1b]0;title\x07", "line\nbreak", "tab\there", "nul\x00byte", "\ud800", "bell\x07"])


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if roll < 0.55 or depth > 3:
        return copy.deepcopy(rng.choice(SPECIAL_VALUES))
    if roll < 0.75:
        return random_text(rng)
    if roll < 0.85:
        return rng.randrange(-(10**rng.randrange(1, 60)), 10 ** rng.randrange(1, 60))
    if roll < 0.93:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {random_key(rng): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def random_key(rng: random.Random) -> Any:
    return rng.choice(["x", "name", "task", "on", "llm", "agents", "params", "?", "", " ", "\x1b[2J", "\u202ekey", "ключ",
                       "max_cycle", "strategy", "agent", "hooks", "source", "groups", "a" * 200])


# ---- mutations of the data -----------------------------------------------------------------


def paths(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [here]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*here, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*here, index))
    return found


def get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def put(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    get(root, path[:-1])[path[-1]] = value
    return root


def mutate_data(rng: random.Random, data: Any) -> Any:
    for _ in range(rng.randrange(1, 4)):
        targets = paths(data)
        path = rng.choice(targets)
        node = get(data, path)
        op = rng.randrange(8)
        if op == 0:  # replace with a special value
            data = put(data, path, random_value(rng))
        elif op == 1 and path:  # delete
            parent = get(data, path[:-1])
            del parent[path[-1]]
        elif op == 2 and isinstance(node, dict):  # add a key
            node[random_key(rng)] = random_value(rng)
        elif op == 3:  # nest
            value: Any = node
            for _ in range(rng.choice([1, 5, 15, 17, 40, 100])):
                value = [value] if rng.random() < 0.5 else {"k": value}
            data = put(data, path, value)
        elif op == 4 and isinstance(node, str):  # grow a string
            data = put(data, path, node * rng.choice([2, 100, 10_000, 60_000]))
        elif op == 5 and isinstance(node, list) and node:  # grow a list
            data = put(data, path, node * rng.choice([2, 50, 2000]))
        elif op == 6:  # swap the kind of value
            data = put(data, path, rng.choice([[node], {"v": node}, str(node)[:100], None]))
        elif op == 7 and isinstance(node, (int, float)) and not isinstance(node, bool):  # push a number out of range
            data = put(data, path, rng.choice([-node, node * 10**rng.randrange(1, 40), node + 0.5, -1, 0]))
    return data


def dump(data: Any, rng: random.Random) -> str:
    try:
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=rng.random() < 0.5, width=10**9)
    except yaml.YAMLError:
        return json.dumps(data, default=str)  # YAML is a superset of JSON; nan and inf come out as text


# ---- mutations of the text ------------------------------------------------------------------

ALIAS_BOMB = ('{a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"], b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], '
              'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b], d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d], '
              'f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e], g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f], h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g], '
              'i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]}')
SNIPPETS = [
    ALIAS_BOMB, "&r [*r]", "&m {x: *m}", "*undefined", "!!python/object/apply:os.system [ls]", "!!binary aGVsbG8=",
    "!!set {a, b}", "!!omap [{a: 1}]", "!!pairs [[a, 1]]", "!!timestamp 2024-02-30", "!!int x", "!!float y", "!custom 5",
    "!!str 5", "!!null x", "2024-13-45", "9" * 5000, ":".join(["59"] * 400), "0x" + "f" * 90, "1.0e+99999", "-.inf", ".nan",
    "'" + "q" * 300_000 + "'", "{blob: &big '" + "q" * 300_000 + "', copies: [" + "*big, " * 14 + "*big]}", "[" * 300 + "]" * 300, "{" * 80 + "}" * 80, '"\\ud800"', '"\\U0010ffff"', '"\\x1b[31m"',
    '"\\0"', "? [a, b]\n  : c", "{[1]: 2}", "<<: 5", "on", "yes", "~", "|\n  block\n  text", ">-\n  folded",
]


def mutate_text(rng: random.Random, text: str) -> str | bytes:
    op = rng.randrange(12)
    lines = text.splitlines(keepends=True) or [""]
    at = rng.randrange(len(text) + 1)
    if op == 0:  # a snippet as the value of some key
        line = rng.randrange(len(lines))
        key = rng.choice(["params", "x", "task", "llm", "on", "agents", "storage", "options"])
        indent = len(lines[line]) - len(lines[line].lstrip(" "))
        lines.insert(line, " " * indent + f"{key}: {rng.choice(SNIPPETS)}\n")
        return "".join(lines)
    if op == 1:  # random characters anywhere
        return text[:at] + "".join(rng.choice(CONTROL + ":-[]{}&*!|>'\"#%@` \n\t") for _ in range(rng.randrange(1, 6))) + text[at:]
    if op == 2:  # cut short
        return text[:at]
    if op == 3:  # duplicate a line
        line = rng.randrange(len(lines))
        lines.insert(line, lines[line])
        return "".join(lines)
    if op == 4:  # re-indent
        line = rng.randrange(len(lines))
        lines[line] = rng.choice(["", " ", "\t", "    "]) + lines[line]
        return "".join(lines)
    if op == 5:  # encodings
        return rng.choice([
            lambda t: "\ufeff" + t, lambda t: t.encode("utf-16"), lambda t: t.encode("utf-32"),
            lambda t: t.encode("utf-8") + b"\xff\xfe", lambda t: t.replace("\n", "\r\n"), lambda t: t.replace("\n", "\r"),
            lambda t: t.encode("utf-8")[:-1] + b"\xc3", lambda t: b"\xef\xbb\xbf" * 3 + t.encode(),
        ])(text)
    if op == 6:  # anchors and aliases across the document
        return text + "extra: &x [1, 2]\nmore: [*x, *x]\n" if rng.random() < 0.5 else "x: &top " + text.replace("\n", "\n  ")
    if op == 7:  # a merge key into an agent
        return text.replace("- name:", "- <<: " + rng.choice(["{max_cycles: 2}", "*nothing", "[{task: y}]", "5", "{name: z}"]) + "\n    name:", 1)
    if op == 8:  # bare YAML 1.1 words as keys
        return text.replace("call:", rng.choice(["on: after_cycle\n    call:", "yes: 1\n    call:", "On: x\n    call:"]), 1)
    if op == 9:  # a raw control character (the reader refuses most)
        return text[:at] + rng.choice(CONTROL) + text[at:]
    if op == 10:  # many documents, or directives
        return rng.choice(["%YAML 1.1\n---\n" + text, text + "---\n" + text, "%TAG ! tag:x,2000:\n---\n" + text, "...\n" + text])
    return text.replace("agents:", "agents: " + rng.choice(SNIPPETS[:4]) + "\nzz:", 1)


def sized_text(rng: random.Random) -> str:
    """A valid config whose Start messages land near the frame limit: one value repeated by aliases.

    The value sits in the first agent's params or in the team's system prompt
    (which every agent inherits, and a group's Start holds once per agent).
    """
    blob = "q" * rng.choice([20_000, 50_000, 100_000])
    refs = "[" + ", ".join(["*big"] * rng.randrange(0, 60)) + "]"
    in_prompt = rng.random() < 0.5
    agents = [f"{{name: a{i}, task: x, max_cycles: 1, params: {{copies: {refs}}}}}" for i in range(rng.randrange(1, 6))]
    if not in_prompt:
        agents[0] = f"{{name: a0, task: x, max_cycles: 1, params: {{blob: &big '{blob}', copies: {refs}}}}}"
    lines = ["team: t", "storage: s"] + ([f"llm: {{system_prompt: &big '{blob}'}}"] if in_prompt else [])
    if rng.random() < 0.5:
        lines += ["groups:", "  - name: g", "    agents:"] + [f"      - {a}" for a in agents]
    else:
        lines += ["agents:"] + [f"  - {a}" for a in agents]
    return "\n".join(lines) + "\n"


# ---- cases --------------------------------------------------------------------------------


Case = tuple[str, Callable[[Path], Any]]  # (id, a function that writes the case and returns what to load)


def cases(seed: int = SEED, count: int = COUNT) -> Iterator[Case]:
    """The same `count` cases for the same seed: file text, special paths, and ready-made data."""
    rng = random.Random(seed)
    for number in range(count):
        base = copy.deepcopy(rng.choice(BASES))
        family = rng.random()
        name = f"case{number:04d}"
        if family < 0.05:
            yield f"{name}-special-file", _special_file(rng.randrange(len(SPECIAL_FILES)))
        elif family < 0.10:
            yield f"{name}-size", _as_file(sized_text(rng))
        elif family < 0.15:
            yield f"{name}-mapping", _as_mapping(mutate_data(rng, base), rng)
        else:
            text = dump(mutate_data(rng, base) if family < 0.55 else base, rng)
            if family >= 0.40:
                text = mutate_text(rng, text)
            yield f"{name}-text", _as_file(text)


def _as_file(text: str | bytes) -> Callable[[Path], Any]:
    def make(folder: Path) -> Path:
        path = folder / "team.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        return path

    return make


def _as_mapping(data: Any, rng: random.Random) -> Callable[[Path], Any]:
    """Data as an embedding program could hand it over: with types YAML never makes."""
    if isinstance(data, dict) and rng.random() < 0.5:
        target = rng.choice(paths(data))
        odd = rng.choice([(1, 2), {1, 2}, b"bytes", object(), Path("p"), 1 + 2j, float("nan"), {3: "int key"}])
        data = put(data, target, odd)
    if isinstance(data, dict) and rng.random() < 0.2:
        data.setdefault("agents", [{}])
        loop: dict[str, Any] = {}
        loop["self"] = loop
        data["agents"] = [{"name": "a", "task": "x", "max_cycles": 1, "params": loop}]
    return lambda folder: ("mapping", data)


def _fifo(folder: Path) -> Path:
    path = folder / "fifo.yaml"
    os.mkfifo(path)
    return path


def _symlink_loop(folder: Path) -> Path:
    os.symlink(folder / "loop-b", folder / "loop-a")
    os.symlink(folder / "loop-a", folder / "loop-b")
    return folder / "loop-a"


def _link_to(target: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        os.symlink(target, folder / "link.yaml")
        return folder / "link.yaml"

    return make


def _named(name: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_text("team: t\nstorage: s\nagents: [{name: a, task: x, max_cycles: 0}]\n")
        return path

    return make


SPECIAL_FILES: list[Callable[[Path], Any]] = [
    _fifo, lambda f: Path("/dev/zero"), lambda f: Path("/dev/null"), lambda f: Path("/dev/urandom"), lambda f: f,
    lambda f: f / "missing.yaml", _symlink_loop, _link_to("/dev/zero"), _named("new\nline\x1b[31m.yaml"),
    _named("\u202eevil.yaml"), lambda f: Path(str(f) + "/" + "x" * 5000), lambda f: Path("/proc/self/status"),
    lambda f: Path("/proc/self/mem"), lambda f: Path(str(f) + "/nul\x00byte.yaml"),
]


def _special_file(index: int) -> Callable[[Path], Any]:
    return SPECIAL_FILES[index]


# ---- running a case -------------------------------------------------------------------------


class CaseTimeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout(f"no answer within {CASE_SECONDS:g}s")


def check_frames(config: Any) -> Optional[str]:
    """Why some Start of a loaded config could not be sent (None if every one can)."""
    from protocol import MAX_FRAME_BYTES, Start, decode_payload, encode
    from protocol.specs import AgentSpec, GroupSpec

    for agent in config.all_agents():
        frame = encode(Start(agent=agent.name, spec=config.agent_spec(agent.name, "http://127.0.0.1:65535").to_wire()))
        if len(frame) > MAX_FRAME_BYTES:
            return f"agent {agent.name}: frame of {len(frame)} bytes"
        AgentSpec.from_wire(decode_payload(frame[4:]).spec)  # type: ignore[attr-defined]
    for group in config.groups:
        frame = encode(Start(agent=group.name, spec=config.group_spec(group.name, "workers.entry:run_worker",
                                                                      "http://127.0.0.1:65535").to_wire()))
        if len(frame) > MAX_FRAME_BYTES:
            return f"group {group.name}: frame of {len(frame)} bytes"
        GroupSpec.from_wire(decode_payload(frame[4:]).spec)  # type: ignore[attr-defined]
    return None


def readings_disagree(text: str) -> Optional[str]:
    """Why LibYAML's fast path read `text` otherwise than the strict Python loader (None: they agree).

    The fast path may refuse more (the Python loader then reads the file and says why), never less,
    and what both read must be the same data.
    """
    import yaml

    from supervisor.config import loader

    if loader._CSafeLoader is None or "\t" in text:  # a tab sends a config to the Python loader only
        return None
    try:
        fast = yaml.load(text, Loader=loader._FastLoader)
    except Exception:  # noqa: BLE001 - refused by the fast path: the Python loader decides
        return None
    try:
        strict = yaml.load(text, Loader=loader._StrictLoader)
    except Exception as exc:  # noqa: BLE001
        return f"the fast path read what the strict loader refuses: {str(exc)[:200]!r}"
    return None if repr(fast) == repr(strict) else "the fast path read other data than the strict loader"


def config_text(path: Path) -> Optional[str]:
    """The text of a case that is a config file of a size the loader reads (None for the special files)."""
    from supervisor.config import loader

    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > loader.MAX_CONFIG_BYTES:
            return None
        return path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None


def run_case(make: Callable[[Path], Any], folder: Path) -> tuple[str, str]:
    """("loaded" | "refused" | "broken", detail) for one case."""
    from supervisor.config import ConfigError, TeamConfig, load_config
    from supervisor.errors import UserError

    folder.mkdir()
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    try:
        target = make(folder)
        text = config_text(target) if isinstance(target, Path) else None
        disagreement = readings_disagree(text) if text is not None else None
        if disagreement:
            return "broken", disagreement
        if isinstance(target, tuple):
            config = TeamConfig.from_mapping(target[1], source=folder / "api.yaml")
        else:
            config = load_config(target)
        problem = check_frames(config)
        return ("broken", f"loaded, but {problem}") if problem else ("loaded", "")
    except ConfigError as exc:
        text = str(exc)
        if not isinstance(exc, UserError) or "\n" in text or "\r" in text or not text.isprintable():
            return "broken", f"message not one printable line: {text[:300]!r}"
        return "refused", text[:200]
    except BaseException as exc:  # noqa: BLE001 - anything else is what the fuzzer looks for
        return "broken", f"{type(exc).__name__}: {str(exc)[:300]!r}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main(folder: str, seed: int = SEED, count: int = COUNT) -> dict[str, Any]:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    signal.signal(signal.SIGALRM, _alarm)
    sys.setrecursionlimit(2000)
    root = Path(folder)
    tally: dict[str, int] = {"loaded": 0, "refused": 0, "broken": 0}
    broken: list[str] = []
    slowest = (0.0, "")
    for number, (case_id, make) in enumerate(cases(seed, count)):
        began = time.monotonic()
        outcome, detail = run_case(make, root / f"{number:04d}")
        spent = time.monotonic() - began
        slowest = max(slowest, (spent, case_id))
        tally[outcome] += 1
        if outcome == "broken":
            broken.append(f"{case_id}: {detail}")
    return {"cases": count, **tally, "failures": broken[:50], "slowest": [round(slowest[0], 3), slowest[1]],
            "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


if __name__ == "__main__":
    args = sys.argv[1:]
    summary = main(args[0], *(int(a) for a in args[1:3]))
    print(json.dumps(summary))
