"""scandb: Sensorium-style recording scans in one DuckDB database.

    import scandb
    with scandb.connect("scandb.duckdb") as db:
        arrays = db.fetch("SELECT scan_key, trial_id FROM trials WHERE tier = 'test'")
"""

from .errors import BadScanError, DamageError, DatabaseError, ScandbError, UsageError


def __getattr__(name: str):
    """``connect`` and ``ScanDB`` load the query layer (and pandas) on first use, and
    ``__version__`` reads the installed metadata on first use, so the command line starts
    without them."""
    if name in ("connect", "ScanDB"):
        from . import api
        return getattr(api, name)
    if name == "__version__":
        return _installed_version()
    raise AttributeError(f"module 'scandb' has no attribute {name!r}")


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scandb")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+unknown"


__all__ = ["connect", "ScanDB", "ScandbError", "BadScanError", "DatabaseError", "DamageError", "UsageError", "__version__"]
