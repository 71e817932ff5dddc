"""``verify``: the rows and files of every scan are what ingest recorded, and agree."""

from __future__ import annotations

from ..catalog.database import Database
from . import consistency
from .digests import FILE_METHOD, MATRIX_PART, ROWS_METHOD, Digest, recorded_digests, scan_digests, table_method
from .orphans import stores_and_references
from .report import Kind, Problem, VerifyReport

TABLE_CHANGED = Kind("scan table", "changed since ingest")
MATRIX_CHANGED = Kind("response matrix", "changed since ingest")
DIGESTS_MISSING = Kind("scan", "without recorded digests")


def verify(db: Database) -> VerifyReport:
    """Check the schema revision, the recorded digests, and that rows and files agree (a
    bucket's objects as they are in it, not through the local cache)."""
    with db.reading_the_medium():
        return _verify(db)


def _verify(db: Database) -> VerifyReport:
    db.check_revision()  # a database at another revision is a DatabaseError (exit 4), not damage
    report = VerifyReport(db.name)
    report.n_scans, report.n_trials = db.conn.execute(
        "SELECT count(*), coalesce(sum(n_trials), 0) FROM scans").fetchone()
    report.add(consistency.rows_without_a_scan(db))
    report.add(consistency.row_count_problems(db))
    report.add(consistency.response_length_problems(db))
    report.add(consistency.image_row_problems(db))
    stores = stores_and_references(db)  # each store with the keys rows reference, read once
    store_problems = consistency.store_problems(db, stores)
    report.add(store_problems)
    if store_problems:  # one line says why, rather than one per file
        report.n_images = db.conn.execute("SELECT count(*) FROM images").fetchone()[0]
    else:
        file_problems, report.n_images = consistency.image_file_problems(db)
        report.add(file_problems)
        if db.snapshot is None:
            report.add(consistency.orphan_file_problems(db, stores))
        else:  # newer snapshots' files are referenced by rows this connection cannot see
            report.notes.append(f"orphan files are counted at the newest snapshot only (this is snapshot "
                                f"{db.snapshot}); verify without snapshot= to count them")
        report.add(consistency.matrix_problems(db))
        report.add(consistency.meta_file_problems(db))
        report.add(consistency.prediction_file_problems(db))
        report.add(consistency.session_array_problems(db))
    report.add(digest_problems(db, report.notes))
    return report


def digest_problems(db: Database, notes: list[str]) -> list[Problem]:
    """Each scan's rows and response matrix, hashed again and compared with the digests its
    ingest recorded; digests this DuckDB cannot reproduce go to ``notes`` instead."""
    recorded = recorded_digests(db.conn)
    method = table_method(db.conn)
    problems, incomparable = [], 0
    for (scan,) in db.conn.execute("SELECT scan_key FROM scans ORDER BY 1").fetchall():
        then = recorded.get(scan)
        if not then:
            problems.append(Problem(DIGESTS_MISSING, f"scan {scan}: no digests in scan_digests "
                                                     "(deleted, or written around scandb)"))
            continue
        now = scan_digests(db.conn, scan, db.store, method, response_values="responses" in then)
        for part in sorted(then.keys() | now.keys()):
            if part in then and then[part].method not in (method, FILE_METHOD, ROWS_METHOD):
                incomparable += 1
                continue
            problem = _compare(scan, part, then.get(part), now.get(part))
            if problem:
                problems.append(problem)
    if incomparable:
        notes.append(f"{incomparable} table digests were recorded by a DuckDB whose hash() differs from this "
                     "one's: those tables were checked for consistency only")
    return problems


def _compare(scan: str, part: str, then: Digest | None, now: Digest | None) -> Problem | None:
    if part == MATRIX_PART:
        if then is None:
            return Problem(DIGESTS_MISSING, f"scan {scan}: no digest recorded for its response matrix")
        if now is None or now.digest == then.digest:
            return None  # a missing file or row is reported by the matrix check
        return Problem(MATRIX_CHANGED, f"scan {scan}: response matrix file changed since ingest (sha256 differs)")
    if then is None:
        return Problem(DIGESTS_MISSING, f"scan {scan}: no digest recorded for its {part} rows")
    if now is None:
        return Problem(TABLE_CHANGED, f"scan {scan}: {part}: recorded at ingest, not found now")
    if now.n_rows != then.n_rows:
        change = "deleted" if now.n_rows < then.n_rows else "added"
        return Problem(TABLE_CHANGED, f"scan {scan}: {part} has {now.n_rows:,} of its rows, "
                                      f"{then.n_rows:,} at ingest (rows {change})")
    if now.digest != then.digest:
        return Problem(TABLE_CHANGED, f"scan {scan}: {part}: its {now.n_rows:,} rows changed since ingest")
    return None
