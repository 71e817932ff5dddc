"""``gc``: delete the store files nothing references any more, expiring a lake's old snapshots.

Removal and replacement delete no file: a training job that started before still reads them.
``older_than`` days is how far back such a reader may be. On a lake a snapshot expires once
a newer one replaced it more than that long ago, and a file goes when no snapshot left
references it (and it is older than an ingest in another process could still be writing;
``Database.garbage_age``). In a database file a released file goes once it was released
more than that long ago (``released_files``). On a bucket, multipart uploads a killed
writer never finished go too, once they began longer ago than that age (``uploads.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..catalog import snapshots
from ..catalog.database import Database
from ..errors import DatabaseError
from ..store.base import collect_garbage, unreferenced_ages
from ..store.folder import age_cutoff
from .orphans import stores_and_references
from .uploads import abort_unfinished_uploads, unfinished_uploads
from .report import plural


@dataclass
class GcResult:
    database: str
    dry_run: bool
    expired: list[snapshots.Snapshot] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    """The snapshots left (a lake)."""
    files: list[Path] = field(default_factory=list)
    n_bytes: int = 0
    root: Path = Path()
    lake: bool = True
    """Whether the database keeps snapshots (a lake), which the summary then speaks of."""
    young: int = 0
    """Files nothing references but too new to delete (another process's ingest may be writing them)."""
    uploads: list = field(default_factory=list)
    """Unfinished multipart uploads under a bucket's data path, old enough to abort (``uploads.py``)."""
    young_uploads: int = 0
    """Unfinished uploads begun too recently to abort (another machine's ingest may be sending them)."""

    def summary(self) -> str:
        verb = ("would expire", "would delete") if self.dry_run else ("expired", "deleted")
        size = f"{self.n_bytes / 1e6:.1f} MB" if self.n_bytes >= 100_000 else f"{self.n_bytes / 1e3:.1f} kB"
        files = f"{plural(len(self.files), 'store file')} ({size})"
        if not self.lake:
            return f"{self.database}: {verb[1]} {files} no scan references"
        expired = (f"{verb[0]} {plural(len(self.expired), 'snapshot')} "
                   f"({snapshots.id_ranges([s.id for s in self.expired])})" if self.expired
                   else "no snapshot old enough to expire")
        line = (f"{self.database}: {expired}, kept {plural(len(self.kept), 'snapshot')} "
                f"({snapshots.id_ranges(self.kept)}); {verb[1]} {files} no kept snapshot references")
        if self.young:
            line += f"; kept {plural(self.young, 'newer unreferenced file')} (an ingest may be writing them)"
        if self.uploads:
            line += f"; {'would abort' if self.dry_run else 'aborted'} {plural(len(self.uploads), 'unfinished upload')}"
        if self.young_uploads:
            line += f"; kept {plural(self.young_uploads, 'newer unfinished upload')} (an ingest may be sending it)"
        return line

    def text(self) -> str:
        """The summary; a dry run also lists each snapshot and file that would go."""
        lines = [self.summary()]
        if self.dry_run:
            lines += [f"  snapshot {s.id}  {s.when}  {s.change}" for s in self.expired]
            lines += [f"  file {_relative(path, self.root)}" for path in self.files]
            lines += [f"  upload {upload.key}  (begun {_when(upload.started)})" for upload in self.uploads]
        return "\n".join(lines)


def _size(path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def gc(db: Database, older_than_days: float, *, dry_run: bool = False) -> GcResult:
    """Forget what no reader started in the last ``older_than_days`` can need (the
    catalog's ``retain``: expiring a lake's snapshots, a file's released files), then
    delete the store files nothing kept references."""
    result = GcResult(db.name, dry_run, root=db.root, lake=db.has_snapshots)
    retention = db.catalog.retain(db.conn, older_than_days, dry_run)
    result.expired, result.kept = retention.expired, retention.kept
    stores = stores_and_references(db, retention)
    cutoff = age_cutoff(db.garbage_age) if db.garbage_age > 0 else float("inf")
    for store, keys in stores:
        ages = unreferenced_ages(store, keys)  # gone since they were listed: inf, neither old nor young
        going = [store.folder.path(key) for key, modified in ages.items()
                 if modified <= cutoff and modified < float("inf")]
        result.young += sum(cutoff < modified < float("inf") for modified in ages.values())
        result.files += sorted(going)
    result.n_bytes = sum(_size(path) for path in result.files)
    medium, result.uploads, result.young_uploads = unfinished_uploads(db)
    if not dry_run:
        try:
            collect_garbage(stores, db.garbage_age)
        except OSError as exc:
            raise DatabaseError(f"{db.name}: gc could not delete {exc.filename or 'a store file'} "
                                f"({exc.strerror or exc}); 'scandb gc' again deletes it") from None
        abort_unfinished_uploads(medium, result.uploads)
    return result
