"""Command line: `python -m supervisor CONFIG` and its sub-commands.

Every user mistake ends as one line on stderr and the contract's exit code;
a traceback here is a bug. Heavy modules are imported only by the command
that needs them, so `--help` and `import supervisor` stay fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, Optional, Sequence

COMMANDS = ("run", "status", "logs", "checkpoints", "report")
EXIT_USAGE = 2


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

    logs = sub.add_parser("logs", help="read the aggregated event stream")
    logs.add_argument("config")
    logs.add_argument("--agent", help="only this agent's events (the team name for the supervisor's own)")
    logs.add_argument("--event", help="only events of this name, e.g. interrupt_completed")
    logs.add_argument(
        "--follow", "-f", action="store_true",
        help="keep printing new events until Ctrl+C; with --json, one JSON object per line, the last one the summary",
    )
    logs.add_argument("--json", action="store_true", help="one JSON document: {events, summary}")

    checkpoints = sub.add_parser("checkpoints", help="list, verify or show checkpoints")
    checkpoints.add_argument("config")
    checkpoints.add_argument("--agent", help="only this agent")
    checkpoints.add_argument("--verify", action="store_true", help="check every checkpoint; exit 1 if any is corrupt")
    checkpoints.add_argument("--show", nargs="?", const="latest", metavar="ID", help="print one checkpoint (default: latest) as JSON")
    checkpoints.add_argument("--json", action="store_true", help="one JSON list on stdout")

    report = sub.add_parser("report", help="write the run's timeline as one self-contained HTML file")
    report.add_argument("config")
    report.add_argument("-o", "--output", help="where to write it (default: <storage>/report.html)")
    return parser


def _normalise(argv: list[str]) -> list[str]:
    """`CONFIG [--fresh]` without a command means `run CONFIG`."""
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        return ["run", *argv]
    return argv


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        from supervisor.process import worker_context

        worker_context()  # the forkserver's ~80 ms boot overlaps loading the config on the other core
    from supervisor.config import load_config

    config = load_config(args.config)
    if args.command == "run":
        from supervisor.live_view import choose_console
        from supervisor.run import run_team

        console = choose_console(config, plain=args.plain)
        return run_team(config, fresh=args.fresh, console=console, own_process=True)  # the CLI owns its process: adopt orphans
    if args.command == "report":
        from supervisor.report import report_command

        return report_command(config, args)
    from supervisor import inspect_cmds

    return inspect_cmds.COMMANDS[args.command](config, args)


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
            _exit_now(code)
        return code
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return 0  # `... | head` closed the pipe: not an error
    except KeyboardInterrupt:
        return 130  # Ctrl+C outside a run (logs --follow): quiet


def _exit_now(code: int) -> None:
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
