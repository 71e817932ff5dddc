"""scandb: Sensorium-style recording scans in one DuckDB database.

    import scandb
    with scandb.connect("scandb.duckdb") as db:
        arrays = db.fetch("SELECT scan_key, trial_id FROM trials WHERE tier = 'test'")
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scandb")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from .errors import BadScanError, DatabaseError, ScandbError, UsageError  # noqa: E402


def __getattr__(name: str):
    """``connect`` and ``ScanDB`` load the query layer (and pandas) on first use, so the
    command line starts without them."""
    if name in ("connect", "ScanDB"):
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'scandb' has no attribute {name!r}")


__all__ = ["connect", "ScanDB", "ScandbError", "BadScanError", "DatabaseError", "UsageError", "__version__"]
