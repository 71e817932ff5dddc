"""Finding the DuckDB shell (PyPI's duckdb-cli) for ``scandb shell`` and the tests; the
arguments that open a database in it are its catalog's (``Catalog.shell_arguments``)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .catalog.database import catalog_for
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
    return catalog_for(target, data_path).shell_arguments(binary, write=write)
