"""Command line: `python -m supervisor CONFIG` and its sub-commands.

Every user mistake ends as one line on stderr and the contract's exit code;
a traceback here is a bug. Heavy modules are imported only by the command
that needs them, so `--help` and `import supervisor` stay fast.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime, timedelta, timezone
from typing import NoReturn, Optional, Sequence

COMMANDS = ("run", "status", "logs", "checkpoints", "report", "stop", "start", "restart", "reload", "answer")
EXIT_USAGE = 2
from supervisor.vocabulary import LEVELS
_AGO_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d))+\Z")
_AGO_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_AGO_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_WHEN_HINT = "use an ISO 8601 time such as 2026-11-24T07:00:00Z, or a duration ago such as 30s, 10m, 2h, 1d"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, as the contract says
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m supervisor",
        description="Run a team of LLM agents as a supervised tree of processes.",
        epilog="`python -m supervisor CONFIG` is short for `run CONFIG`.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="run the team (resuming from checkpoints)")
    run.add_argument("config")
    run.add_argument("--fresh", action="store_true", help="archive the old state and start over")
    run.add_argument("--plain", action="store_true", help="plain lines even on a terminal (no live view)")

    status = sub.add_parser("status", help="one row per agent")
    status.add_argument("config")
    status.add_argument("--json", action="store_true", help="one JSON list on stdout")
    status.add_argument("--watch", action="store_true", help="the live table of a running team, until it ends")

    stop = sub.add_parser("stop", help="stop agents of the live run; the others run on")
    stop.add_argument("config")
    stop.add_argument("agents", nargs="+", metavar="AGENT")
    stop.add_argument("--now", action="store_true", help="IMMEDIATE: cancel the cycle in flight")
    stop.add_argument("--no-wait", action="store_true", help="return once the stop is issued")
    stop.add_argument("--json", action="store_true", help="one JSON document on stdout")

    for verb, text in (("start", "start agents of the live run from their latest checkpoints"),
                       ("restart", "a graceful stop, then a start from the checkpoint")):
        command = sub.add_parser(verb, help=text)
        command.add_argument("config")
        command.add_argument("agents", nargs="+", metavar="AGENT")
        command.add_argument("--no-wait", action="store_true", help="return once the request is taken")
        command.add_argument("--json", action="store_true", help="one JSON document on stdout")

    answer = sub.add_parser("answer", help="answer the question an agent of the live run waits on")
    answer.add_argument("config")
    answer.add_argument("agent", metavar="AGENT")
    answer.add_argument("text", metavar="TEXT")
    answer.add_argument("--json", action="store_true", help="one JSON document on stdout")

    reload = sub.add_parser("reload", help="apply the config file's changes to the live run")
    reload.add_argument("config")
    reload.add_argument("--json", action="store_true", help="one JSON document on stdout")

    logs = sub.add_parser("logs", help="read the aggregated event stream")
    logs.add_argument("config")
    logs.add_argument(
        "--agent", action="append", metavar="A",
        help="only these agents' events (repeat it or give A,B; the team name for the supervisor's own)",
    )
    logs.add_argument(
        "--event", action="append", metavar="E",
        help="only events of these names, e.g. interrupt_completed (repeat it or give E,F)",
    )
    logs.add_argument(
        "--level", type=str.lower, choices=LEVELS, metavar="LEVEL",
        help=f"only events of this level and above ({' < '.join(LEVELS)})",
    )
    logs.add_argument(
        "--since", type=parse_when, metavar="WHEN",
        help="only events at or after WHEN: an ISO 8601 time (UTC unless it says) or a duration ago: 30s, 10m, 2h, 1d",
    )
    logs.add_argument("--until", type=parse_when, metavar="WHEN", help="only events at or before WHEN (same forms as --since)")
    logs.add_argument(
        "--all-runs", action="store_true",
        help="the closing statistics cover every run in the file, not only the last one",
    )
    logs.add_argument(
        "--follow", "-f", action="store_true",
        help="keep printing new events until Ctrl+C (or --until passes); with --json, one JSON object per line, "
        "the last one the summary",
    )
    logs.add_argument("--json", action="store_true", help="one JSON document: {events, summary}")

    checkpoints = sub.add_parser("checkpoints", help="list, verify, show or prune checkpoints")
    checkpoints.add_argument("config")
    checkpoints.add_argument("--agent", help="only this agent")
    checkpoints.add_argument("--verify", action="store_true", help="check every checkpoint; exit 1 if any is corrupt")
    checkpoints.add_argument("--show", nargs="?", const="latest", metavar="ID", help="print one checkpoint (default: latest) as JSON")
    checkpoints.add_argument(
        "--prune", type=_keep_count, metavar="N",
        help="delete all but the newest N checkpoints of each agent (N >= 1; never the newest valid one; "
        "refused while a run is live)",
    )
    checkpoints.add_argument("--json", action="store_true", help="one JSON document on stdout")

    report = sub.add_parser("report", help="write the run's timeline as one self-contained HTML file")
    report.add_argument("config")
    report.add_argument("-o", "--output", help="where to write it (default: <storage>/report.html)")
    return parser


def parse_when(text: str, now: Optional[datetime] = None) -> datetime:
    """`--since`/`--until`: an ISO 8601 time (UTC when it names no zone) or a duration ago (`10m`, `1h30m`)."""
    value = text.strip()
    try:
        if _AGO_RE.match(value):
            seconds = sum(float(number) * _AGO_SECONDS[unit] for number, unit in _AGO_PART_RE.findall(value))
            return (now or datetime.now(timezone.utc)) - timedelta(seconds=seconds)
        when = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: {_WHEN_HINT}") from None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when


def _keep_count(text: str) -> int:
    """`--prune N`: how many checkpoints each agent keeps; at least 1, so its latest always survives."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of checkpoints to keep, got {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"must keep at least 1 checkpoint per agent (got {count})")
    return count


def _normalise(argv: list[str]) -> list[str]:
    """`CONFIG [--fresh]` without a command means `run CONFIG`."""
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        return ["run", *argv]
    return argv


QUICK = ("stop", "start", "restart", "answer")  # they only find the run; the run checks the rest


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in QUICK:
        from supervisor import tools
        from supervisor.tools.control import locate

        return tools.COMMANDS[args.command](locate(args.config), args)
    if args.command == "run":
        from supervisor.runtime.descriptors import raise_soft_limit
        from supervisor.runtime.process import worker_context

        raise_soft_limit()  # first: the forkserver inherits the room it needs for a big team
        worker_context()  # the forkserver's ~80 ms boot overlaps loading the config on the other core
    from supervisor.config import load_config

    config = load_config(args.config)
    if args.command != "run":  # `run` checks as it prepares the folder
        from supervisor.storage import check_storage

        check_storage(config.storage, [agent.name for agent in config.all_agents()])
    if args.command == "run":
        from supervisor.terminal.live_view import choose_console
        from supervisor.runtime.run import run_team

        console = choose_console(config, plain=args.plain)
        try:  # the CLI owns its process: it adopts orphans
            outcome = run_team(config, fresh=args.fresh, sinks=[console], own_process=True)
        finally:
            console.stop()  # the live view's last frame stays above what follows; a no-op for plain lines
        console.finish(outcome, str(config.storage), str(config.source))
        return outcome.exit_code
    from supervisor import tools

    return tools.COMMANDS[args.command](config, args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="replace")  # type: ignore[union-attr]  # emoji on a non-UTF-8 terminal must not crash
        except (AttributeError, ValueError):
            pass
    parser = build_parser()
    args = parser.parse_args(_normalise(list(sys.argv[1:] if argv is None else argv)))
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from supervisor.errors import UserError

    try:
        code = _dispatch(args)
        if args.command == "run":
            exit_now(code)
        return code
    except UserError as exc:
        from supervisor.terminal.text import neutralise

        print(f"error: {neutralise(exc)}", file=sys.stderr)  # it may quote a file name or a value from a file
        return exc.exit_code
    except BrokenPipeError:
        return 0  # `... | head` closed the pipe: not an error
    except KeyboardInterrupt:
        return 130  # Ctrl+C outside a run (logs --follow): quiet


def exit_now(code: int) -> None:
    """End a finished run without the interpreter's ~40 ms teardown.

    Everything that matters is already durable (checkpoints fsynced, the event
    log closed), so after the exit handlers and a flush there is nothing left
    for a slow module teardown to do; `docker stop` and scripts see the exit
    code that much sooner.
    """
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
