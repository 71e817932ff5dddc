"""Keeping a database and its image store consistent: orphan clean-up, verify, remove."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np

from ..source import npyfile
from ..catalog.database import Database
from ..errors import DatabaseError, UsageError
from ..store.images import ImageStore, image_hash
from ..store.matrices import collect_matrix_garbage, matrix_files, matrix_temporaries
from ..catalog.schema import SCAN_TABLES, delete_scan_rows
from ..catalog.transaction import explain, transaction

SHOWN_PER_CHECK = 5
"""Problems of one kind listed in a report before the rest are counted."""


def referenced_images(db: Database) -> set[str]:
    return {row[0] for row in db.conn.execute("SELECT image_hash FROM images").fetchall()}


def referenced_matrices(db: Database) -> set[str]:
    return {row[0] for row in db.conn.execute("SELECT path FROM response_matrices").fetchall()}


def collect_orphans(db: Database) -> int:
    """Remove image files and response matrices no row references (left by a writer that
    was killed)."""
    return (ImageStore(db.image_dir).collect_garbage(referenced_images(db))
            + collect_matrix_garbage(db.image_dir, referenced_matrices(db)))


# -- remove ------------------------------------------------------------------------------


@dataclass
class RemoveResult:
    scan_key: str
    n_trials: int
    files_removed: int

    def summary(self) -> str:
        return (f"{self.scan_key}: removed {_plural(self.n_trials, 'trial')} and "
                f"{_plural(self.files_removed, 'image file')} no other scan uses")


def remove_scan(db: Database, scan_key: str) -> RemoveResult:
    """Delete a scan's rows in one transaction, then the image files no other scan uses.

    DuckDB refuses to delete a parent row in the transaction that deleted the rows
    referencing it ("still referenced by a foreign key", measured on 1.5.6) and has no
    ON DELETE CASCADE; the schema therefore declares no foreign keys (see schema.py), and
    ``verify`` checks what they would have. Files are deleted only after the commit: a
    kill in between leaves orphan files, which the next ``ingest`` or ``remove`` collects.
    """
    found = db.conn.execute("SELECT n_trials FROM scans WHERE scan_key = ?", [scan_key]).fetchone()
    if found is None:
        known = [r[0] for r in db.conn.execute("SELECT scan_key FROM scans ORDER BY 1").fetchall()]
        raise UsageError(f"{db.path}: no scan {scan_key!r} (it holds: {', '.join(known) or 'nothing'})")
    collect_orphans(db)
    unused = _delete_scan_rows(db, scan_key)
    try:
        files_removed = ImageStore(db.image_dir).remove(unused)
        collect_matrix_garbage(db.image_dir, referenced_matrices(db))
    except OSError as exc:
        raise DatabaseError(f"{db.path}: removed {scan_key}, but could not delete its image files "
                            f"({exc.strerror or exc}); the next ingest deletes them") from None
    return RemoveResult(scan_key, found[0], files_removed)


def _delete_scan_rows(db: Database, scan_key: str) -> set[str]:
    """Every row of the scan, and the images no scan uses any more; returns their hashes."""
    try:
        with transaction(db.conn):
            delete_scan_rows(db.conn, scan_key)
            unused = {r[0] for r in db.conn.execute(
                "DELETE FROM images WHERE image_hash NOT IN (SELECT image_hash FROM trials) "
                "RETURNING image_hash").fetchall()}
    except duckdb.Error as exc:
        raise explain(exc, f"{db.path}: removing {scan_key}", rolled_back=True) from None
    return unused


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


# -- verify ------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    database: str
    n_scans: int = 0
    n_trials: int = 0
    n_images: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        if self.ok:
            return (f"{self.database}: ok: {_plural(self.n_scans, 'scan')}, {_plural(self.n_trials, 'trial')}, "
                    f"{_plural(self.n_images, 'image file')} checked")
        head = f"{self.database}: {_plural(len(self.problems), 'problem')}"
        return "\n".join([head] + [f"  {p}" for p in self.problems])

    def add(self, problems: list[str]) -> None:
        """Record a check's problems, listing a few and counting the rest."""
        self.problems.extend(problems[:SHOWN_PER_CHECK])
        if len(problems) > SHOWN_PER_CHECK:
            self.problems.append(f"... and {len(problems) - SHOWN_PER_CHECK} more like the above")


def verify(db: Database) -> VerifyReport:
    """Check that the rows agree with each other and with the image files on disk."""
    report = VerifyReport(str(db.path))
    try:
        db.check_revision()
    except DatabaseError as exc:
        report.problems.append(str(exc))
        return report
    report.n_scans, report.n_trials = db.conn.execute(
        "SELECT count(*), coalesce(sum(n_trials), 0) FROM scans").fetchone()
    report.add(_rows_without_a_scan(db))
    report.add(_row_count_problems(db))
    report.add(_response_length_problems(db))
    report.add(_image_row_problems(db))
    file_problems, report.n_images = _image_file_problems(db)
    report.add(file_problems)
    report.add(_orphan_file_problems(db))
    report.add(_matrix_problems(db))
    return report


def _rows_without_a_scan(db: Database) -> list[str]:
    """What foreign keys would refuse: rows naming a scan the scans table lacks."""
    problems = []
    for table in SCAN_TABLES:
        rows = db.conn.execute(f"""
            SELECT scan_key, count(*) FROM {table.name}
            WHERE scan_key NOT IN (SELECT scan_key FROM scans) GROUP BY 1 ORDER BY 1""").fetchall()
        problems += [f"{table.name}: {count} rows name scan {key}, which the scans table lacks"
                     for key, count in rows]
    return problems


def _row_count_problems(db: Database) -> list[str]:
    """Each scan has n_trials rows in trials/responses/behavior and n_neurons in neurons."""
    expected = {"trials": ("n_trials", "trial_id"), "responses": ("n_trials", "trial_id"),
                "behavior": ("n_trials", "trial_id"), "neurons": ("n_neurons", "neuron_idx")}
    problems = []
    for table, (count_column, id_column) in expected.items():
        rows = db.conn.execute(f"""
            SELECT s.scan_key, s.{count_column}, count(c.scan_key),
                   count(*) FILTER (WHERE c.{id_column} < 0 OR c.{id_column} >= s.{count_column})
            FROM scans s LEFT JOIN {table} c USING (scan_key)
            GROUP BY ALL ORDER BY 1""").fetchall()
        for key, want, have, out_of_range in rows:
            if have != want:
                problems.append(f"scan {key}: {table} has {have} rows, scans.{count_column} says {want}")
            elif out_of_range:
                problems.append(f"scan {key}: {table} has {out_of_range} rows with {id_column} outside 0..{want - 1}")
    return problems


def _response_length_problems(db: Database) -> list[str]:
    rows = db.conn.execute("""
        SELECT s.scan_key, s.n_neurons, count(*), min(len(r.response)), max(len(r.response))
        FROM scans s JOIN responses r USING (scan_key)
        WHERE len(r.response) <> s.n_neurons
        GROUP BY ALL ORDER BY 1""").fetchall()
    return [f"scan {key}: {bad} response rows hold {low}..{high} values, not n_neurons = {n}"
            for key, n, bad, low, high in rows]


def _image_row_problems(db: Database) -> list[str]:
    missing = db.conn.execute("""
        SELECT t.scan_key, count(*), any_value(t.image_hash) FROM trials t
        WHERE t.image_hash NOT IN (SELECT image_hash FROM images) GROUP BY 1 ORDER BY 1""").fetchall()
    unused = db.conn.execute(
        "SELECT image_hash FROM images WHERE image_hash NOT IN (SELECT image_hash FROM trials) ORDER BY 1"
    ).fetchall()
    return ([f"scan {key}: {count} trials name images the images table lacks (e.g. {digest})"
             for key, count, digest in missing]
            + [f"image {digest}: row no trial uses" for (digest,) in unused])


def _image_file_problems(db: Database) -> tuple[list[str], int]:
    """Every referenced image file exists and its content hashes to its name."""
    problems = []
    rows = db.conn.execute("SELECT image_hash, path, shape, dtype FROM images ORDER BY 1").fetchall()
    for digest, path, shape, dtype in rows:
        problem = _check_image_file(db.path.parent / path, digest, tuple(shape), dtype)
        if problem:
            problems.append(f"image file {path}: {problem}")
    return problems, len(rows)


def _check_image_file(path, digest: str, shape: tuple[int, ...], dtype: str) -> str | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    try:
        header = npyfile.parse_header(raw)
        npyfile.load(raw)
    except npyfile.NpyError as exc:
        return f"damaged ({exc})"
    if header.shape != shape or header.dtype.str != dtype:
        return f"holds {header.shape} {header.dtype.str}, the images row says {shape} {dtype}"
    if image_hash(header, raw) != digest:
        return "content does not match its hash (changed or damaged on disk)"
    return None


def _matrix_problems(db: Database) -> list[str]:
    """Each scan's response matrix exists, has its shape, and agrees with the SQL rows it
    mirrors (checked on the first and last trial)."""
    problems = []
    rows = db.conn.execute("SELECT s.scan_key, s.n_trials, s.n_neurons, m.path FROM scans s "
                           "LEFT JOIN response_matrices m USING (scan_key) ORDER BY 1").fetchall()
    for scan, n_trials, n_neurons, path in rows:
        if path is None:
            continue  # ingested before response matrices existed: read from SQL
        try:
            matrix = np.load(db.path.parent / path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            problems.append(f"response matrix {path} of scan {scan}: unreadable ({exc})")
            continue
        if matrix.shape != (n_trials, n_neurons) or matrix.dtype != np.float32:
            problems.append(f"response matrix {path} of scan {scan}: {matrix.shape} {matrix.dtype}, "
                            f"expected ({n_trials}, {n_neurons}) float32")
            continue
        for trial in {0, n_trials - 1}:
            stored = db.conn.execute("SELECT response FROM responses WHERE scan_key = ? AND trial_id = ?",
                                     [scan, trial]).fetchone()
            if stored is None or not np.array_equal(np.array(stored[0], np.float32), matrix[trial], equal_nan=True):
                problems.append(f"response matrix {path} of scan {scan}: trial {trial} differs from the "
                                "responses table")
    return problems


def _orphan_file_problems(db: Database) -> list[str]:
    store = ImageStore(db.image_dir)
    referenced = referenced_images(db)
    orphans = sorted(path for digest, path in store.files().items() if digest not in referenced)
    orphans += sorted(store.temporaries())
    matrices = referenced_matrices(db)
    orphans += sorted(p for rel, p in matrix_files(db.image_dir).items() if rel not in matrices)
    orphans += sorted(matrix_temporaries(db.image_dir))
    return [f"image file {path.relative_to(db.path.parent).as_posix()}: orphan (no row references it; "
            "the next 'scandb ingest' removes it)" for path in orphans]
