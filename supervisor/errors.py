"""Errors that are the user's to fix: one line, and the exit code it maps to.

Kept free of heavy imports so the CLI can catch them without loading the
config machinery first.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem to report as one line on stderr, never as a traceback."""

    exit_code = 2


class SupervisorError(UserError):
    """A one-line error for the user, with the exit code it maps to."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
