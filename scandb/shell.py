"""Finding the DuckDB shell (PyPI's duckdb-cli) for ``scandb shell`` and the tests, and
the arguments that open a database in it the way scandb does."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .catalog import lake as lakes
from .catalog.database import attach_statement, refuse_foreign_file
from .errors import DatabaseError


def find_duckdb_shell() -> str | None:
    """The ``duckdb`` executable beside this Python (a venv's bin/) or on PATH."""
    beside = Path(sys.executable).parent / "duckdb"
    if beside.is_file():
        return str(beside)
    return shutil.which("duckdb")


def shell_command(target: Path | str, data_path: Path | None, *, write: bool) -> list[str]:
    """The argv that opens ``target`` (a file or a lake) in the DuckDB shell, checked first:
    the shell installed, the database there and a DuckDB file (the shell would create one)."""
    binary = find_duckdb_shell()
    if binary is None:
        raise DatabaseError("the DuckDB shell is not installed; install it with: pip install duckdb-cli")
    if lakes.is_lake(target):
        return lake_shell_arguments(binary, target, data_path, write=write)
    path = Path(target)
    if not path.exists():
        raise DatabaseError(f"{path}: no database there (create one with 'scandb ingest')")
    refuse_foreign_file(path)
    return shell_arguments(binary, path, write=write)


OFFLINE = ["-cmd", "SET autoinstall_known_extensions = false; SET autoload_known_extensions = false"]


def shell_arguments(binary: str, db_path: Path, *, write: bool) -> list[str]:
    """The shell's argv: read-only by default; for writing, the file attached with scandb's
    row-group size (an ATTACH option the file does not remember: opened plainly, the shell
    writes 122,880-row groups and one CREATE TABLE grew a database by 118 MB)."""
    if not write:
        return [binary, "-readonly", *OFFLINE, str(db_path)]
    return [binary, *OFFLINE, "-cmd", attach_statement(db_path.absolute()), "-cmd", "USE scandb"]


def lake_shell_arguments(binary: str, target: str, data_path: Path | None, *, write: bool) -> list[str]:
    """The shell's argv for a lake: its extensions loaded by path, the lake attached as
    ``scandb`` (read-only unless ``write``) and used. The shell must be the DuckDB release
    the extension wheels were built for (duckdb-cli 1.5.5 with the 1.5.5 wheels)."""
    lake = lakes.parse(target, data_path)
    if lake.exists() is False:
        raise DatabaseError(f"{lake.name}: no lake there (create one with 'scandb ingest')")
    statements = lakes.open_statements(lake, read_only=not write)
    return [binary, *OFFLINE, "-cmd", "; ".join(statements)]
