"""The maintenance entry points ingest and the API import (implemented in the modules
beside this one)."""

from .digests import record_digests
from .orphans import collect_orphans
from .remove import RemoveResult, remove_scan
from .report import VerifyReport
from .verify import verify

__all__ = ["RemoveResult", "VerifyReport", "collect_orphans", "record_digests", "remove_scan", "verify"]
