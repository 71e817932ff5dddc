"""The one line that sums up an ingest of several paths: counted by distinct scan, since a
scan passed twice (or as a zip and its unzipped folder) is one scan."""

from __future__ import annotations

STATUSES = ("ingested", "replaced", "unchanged")


def batch_line(results) -> str:
    """``N scans: a ingested, b unchanged[; k paths repeat a scan already given][; f failed: ...]``."""
    status_of: dict[str, str] = {}
    repeated = 0
    for result in results:
        if result.status == "failed":
            continue
        if result.scan_key in status_of:
            repeated += 1
            if status_of[result.scan_key] == "unchanged":  # the scan's first path may have put it in
                status_of[result.scan_key] = result.status
        else:
            status_of[result.scan_key] = result.status
    statuses = list(status_of.values())
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in STATUSES if statuses.count(s))
    failures = [f"{r.source} ({r.error.problem})" for r in results if r.status == "failed"]
    total = len(status_of) + len(failures)  # a failed path counts as a scan of its own
    line = f"{total} scan{'' if total == 1 else 's'}: {counts or 'none ingested'}"
    if repeated:
        line += f"; {repeated} path{'s' if repeated > 1 else ''} named a scan already given"
    if failures:
        line += f"; {len(failures)} failed: {'; '.join(failures)}"
    return line
