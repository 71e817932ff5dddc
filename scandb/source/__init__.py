"""Reading a scan: safe zip/folder access, `.npy` parsing without unpickling, and the
validated, typed view of a scan that ingest streams trials from."""

from .scan import DATA_KEYS, IMAGE_ID_FILES, Scan, open_scan

__all__ = ["DATA_KEYS", "IMAGE_ID_FILES", "Scan", "open_scan"]
