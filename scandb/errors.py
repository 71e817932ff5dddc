"""The exceptions users see, each mapped to a documented exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_DATABASE = 4
EXIT_DAMAGE = 5
"""Damage: `verify` found rows or files that differ from what ingest recorded, or disagree; or
the database file itself is damaged (truncated, overwritten)."""


class ScandbError(Exception):
    """Base class: a problem scandb explains in one line.

    The message names Python arguments (``wait=``); ``cli_message``, when given, is the
    same line naming the command line's options (``--wait``) instead.
    """

    exit_code = EXIT_INTERNAL

    def __init__(self, *args, cli_message: str | None = None):
        super().__init__(*args)
        self.cli_message = cli_message

    def cli_text(self) -> str:
        return self.cli_message or str(self)


class BadScanError(ScandbError):
    """The scan itself is invalid: names the scan, the member and the problem."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, scan: str, member: str | None, problem: str):
        member, problem = (printable(member) if member else member), printable(problem)
        self.scan, self.member, self.problem = scan, member, problem
        where = f"{scan}: {member}" if member else scan
        super().__init__(f"{where}: {problem}")


def printable(text: str) -> str:
    """Text from inside a scan, with newlines and terminal escapes shown as escapes: one safe line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class DatabaseError(ScandbError):
    """The database cannot be used as asked (locked, wrong revision, read-only, full)."""

    exit_code = EXIT_DATABASE


class DamageError(DatabaseError):
    """The database file itself is damaged (truncated, overwritten, zeros): restore it from a
    backup. Exit 5, as for the damage ``verify`` finds."""

    exit_code = EXIT_DAMAGE


class UsageError(ScandbError):
    """A request that does not make sense (unknown scan, bad identifier, ...)."""

    exit_code = EXIT_USAGE


def first_line(text: str) -> str:
    """The first non-empty line of an error text: messages stay one line."""
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else stripped
