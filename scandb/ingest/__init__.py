"""Scan -> database: one scan per transaction, its files written beside it.

``tables`` turns a scan into Arrow tables, ``prefetch`` reads trials ahead (in worker
processes for big scans), ``writer`` runs the transaction. Loaded lazily: a reader
process imports ``prefetch`` without DuckDB.
"""

from __future__ import annotations

__all__ = ["IngestResult", "ingest"]


def __getattr__(name: str):
    if name in __all__:
        from . import writer
        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
