"""Finding the DuckDB shell (PyPI's duckdb-cli) for ``scandb shell`` and the tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def find_duckdb_shell() -> str | None:
    """The ``duckdb`` executable beside this Python (a venv's bin/) or on PATH."""
    beside = Path(sys.executable).parent / "duckdb"
    if beside.is_file():
        return str(beside)
    return shutil.which("duckdb")
