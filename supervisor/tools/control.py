"""`stop`, `start`, `restart`, `reload` and `status --watch`: acting on a live run from another terminal.

These speak `protocol.control` over the run's `<storage>/control.sock`; the
run decides and answers, and each command returns the code in its answer:
0 done, 2 a usage error, no live run or an agent the run does not have, 1 an
agent that did not stop or start within its deadline. Every string shown
comes from the run or the config and is neutralised before it is printed.
"""

from __future__ import annotations

import argparse
import errno
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol

from protocol import GRACEFUL, IMMEDIATE, Message, ProtocolError, encode
from protocol.control import (
    REFUSED,
    SOCKET_NAME,
    Notice,
    Reload,
    Reply,
    Restart,
    Start,
    AnswerQuestion,
    Status,
    Stop,
    Watch,
    answer_decoder,
    socket_address,
)
from supervisor.tools.text import error, print_json, print_lines

ANSWER_TIMEOUT = 3600.0  # a stop waits for the run's own deadlines; this only turns a hang into an error
CONFIG_BYTES = 1024 * 1024  # more than any team's file; a bigger one is validated in full instead


class Target(Protocol):
    """What these commands need of a config: the team and where its run lives (a TeamConfig has both)."""

    @property
    def team(self) -> str: ...

    @property
    def storage(self) -> Path: ...

    @property
    def source(self) -> Path: ...


@dataclass(frozen=True)
class Located:
    team: str
    storage: Path
    source: Path


def locate(path: str) -> Target:
    """The team and storage a config file names, without validating the rest.

    `stop`, `start` and `restart` need only to find the run (which checks the
    agents' names itself), so they skip the full validation and its imports:
    a file being edited for a later `reload` still steers the run. Anything
    unexpected in those two keys is left to `load_config`, which says what is
    wrong in one line.
    """
    import yaml

    data: Any = None
    try:
        with open(path, "rb") as file:
            text = file.read(CONFIG_BYTES + 1)
        if len(text) <= CONFIG_BYTES:
            data = yaml.safe_load(text)
    except (OSError, ValueError, RecursionError, yaml.YAMLError):
        data = None
    team = data.get("team") if isinstance(data, dict) else None
    storage = data.get("storage") if isinstance(data, dict) else None
    if isinstance(team, str) and team.strip() and isinstance(storage, str) and storage.strip():
        source = Path(path)
        try:  # relative to the config file, as the run resolved it
            return Located(team, (source.absolute().parent / Path(storage).expanduser()).resolve(), source)
        except (OSError, RuntimeError, ValueError):
            pass
    from supervisor.config import load_config

    return load_config(path)


def connect(config: Target) -> socket.socket:
    """A connection to the live run on this storage, or the one-line reason there is none (exit 2).

    The run removes its socket when it ends, and one left by a killed run refuses connections.
    """
    path = config.storage / SOCKET_NAME
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with socket_address(path) as address:
            sock.connect(address)
        return sock
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR):
            raise error(f"no live run of team '{config.team}' on storage {config.storage}", REFUSED) from None
        raise error(f"cannot reach the live run on {path}: {exc.strerror or exc}", REFUSED) from None


def answers(sock: socket.socket, timeout: float = ANSWER_TIMEOUT) -> Iterator[Message]:
    """Each message the run sends, until it closes the connection."""
    decoder = answer_decoder()
    sock.settimeout(timeout)
    while True:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            raise error(f"the run did not answer within {timeout:g}s", 1) from None
        except OSError:
            data = b""
        if not data:
            return
        try:
            yield from decoder.feed(data)
        except ProtocolError as exc:
            raise error(f"the run's answer could not be read: {exc}", 1) from None


def ask(config: Target, request: Message) -> Reply:
    """One request, one answer."""
    sock = connect(config)
    try:
        sock.sendall(encode(request))
        for message in answers(sock):
            if isinstance(message, Reply):
                return message
    except OSError as exc:
        raise error(f"the run closed the connection: {exc.strerror or exc}", 1) from None
    finally:
        sock.close()
    raise error("the run ended before it answered", 1)


def live_status(config: Target) -> Optional[dict[str, Any]]:
    """The live run's own view, or None when no run answers (the caller reads the files instead)."""
    try:
        reply = ask(config, Status())
    except Exception:  # noqa: BLE001 - any failure here only means: fall back to the files
        return None
    return reply.data if reply.code == 0 else None


def watch(config: Target, sink: Callable[[dict[str, Any]], None]) -> int:
    """Feed every event of the live run to `sink` until the run ends."""
    sock = connect(config)
    try:
        sock.sendall(encode(Watch()))
        for message in answers(sock, timeout=365 * 86400.0):
            if isinstance(message, Reply) and message.code != 0:
                raise error(message.message, message.code)
            if isinstance(message, Notice):
                sink(message.event)
    finally:
        sock.close()
    return 0


# ---- the commands ------------------------------------------------------------------------


def _command_text(args: argparse.Namespace) -> str:
    """What the operator typed, for the stop's message in the event stream."""
    words = [args.command, *getattr(args, "agents", [])]
    if getattr(args, "now", False):
        words.append("--now")
    return shlex.join(words)


def _show(reply: Reply, args: argparse.Namespace, verb: str) -> int:
    if args.json:
        print_json({"code": reply.code, "message": reply.message, **reply.data})
        return reply.code
    if reply.code == REFUSED:
        raise error(reply.message, REFUSED)
    for row in reply.data.get("agents", []):
        checkpoint = row.get("checkpoint_id") or "no checkpoint yet"
        print_lines(f"{row.get('agent')}: {row.get('now') or row.get('status')}; cycles {row.get('cycle')}/"
                    f"{row.get('max_cycles')}; checkpoint {checkpoint}")
    if reply.code != 0 or reply.message not in ("", verb):
        print_lines(f"{args.command}: {reply.message}")
    return reply.code


def stop_command(config: Target, args: argparse.Namespace) -> int:
    request = Stop(agents=list(args.agents), mode=IMMEDIATE if args.now else GRACEFUL, wait=not args.no_wait,
                   command=_command_text(args))
    return _show(ask(config, request), args, "stopped")


def start_command(config: Target, args: argparse.Namespace) -> int:
    return _show(ask(config, Start(agents=list(args.agents), wait=not args.no_wait, command=_command_text(args))),
                 args, "started")


def restart_command(config: Target, args: argparse.Namespace) -> int:
    return _show(ask(config, Restart(agents=list(args.agents), wait=not args.no_wait, command=_command_text(args))),
                 args, "started")


def answer_command(config: Target, args: argparse.Namespace) -> int:
    """A person's answer to the question an agent waits on; returns once the agent has saved it."""
    reply = ask(config, AnswerQuestion(agents=[args.agent], text=args.text, command=f"answer {args.agent}"))
    return _one_line(reply, args, f"{args.agent}: answered")


def reload_command(config: Target, args: argparse.Namespace) -> int:
    """The file has validated already (the CLI loads it first); the run compares it with what it runs."""
    reply = ask(config, Reload(config=str(config.source), command=_command_text(args)))
    return _one_line(reply, args, f"reloaded {config.source}: {reply.message}")


def _one_line(reply: Reply, args: argparse.Namespace, done: str) -> int:
    """The run's answer as one JSON document, one error line, or the line `done`."""
    if args.json:
        print_json({"code": reply.code, "message": reply.message, **reply.data})
        return reply.code
    if reply.code != 0:
        raise error(reply.message, reply.code)
    print_lines(done)
    return 0
