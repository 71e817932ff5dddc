"""Finding the DuckDB shell (PyPI's duckdb-cli) for ``scandb shell`` and the tests, and
the arguments that open a database in it the way scandb does."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .catalog.database import attach_statement


def find_duckdb_shell() -> str | None:
    """The ``duckdb`` executable beside this Python (a venv's bin/) or on PATH."""
    beside = Path(sys.executable).parent / "duckdb"
    if beside.is_file():
        return str(beside)
    return shutil.which("duckdb")


def shell_arguments(binary: str, db_path: Path, *, write: bool) -> list[str]:
    """The shell's argv: read-only by default; for writing, the file attached with scandb's
    row-group size (an ATTACH option the file does not remember: opened plainly, the shell
    writes 122,880-row groups and one CREATE TABLE grew a database by 118 MB)."""
    offline = ["-cmd", "SET autoinstall_known_extensions = false; SET autoload_known_extensions = false"]
    if not write:
        return [binary, "-readonly", *offline, str(db_path)]
    return [binary, *offline, "-cmd", attach_statement(db_path.absolute()), "-cmd", "USE scandb"]
