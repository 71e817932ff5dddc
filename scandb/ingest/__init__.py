"""Scan -> database: one scan per transaction, its files written beside it."""

from .writer import IngestResult, ingest

__all__ = ["IngestResult", "ingest"]
