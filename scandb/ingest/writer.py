"""Source -> database: one scan in one transaction, bulk inserts through Arrow.

Either every row and file of a scan (images, response matrix) lands, or none does: rows
roll back with the transaction, and files this ingest created are removed again. The
rows come from ``tables.py`` (pure functions); the trials are read ahead by
``prefetch.py``; this module only decides what to do and runs the transaction.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import duckdb
import pyarrow as pa

from .. import __version__, quality
from ..catalog.database import Database
from ..catalog.transaction import damage, explain, insert_arrow, transaction, write_failure
from ..errors import BadScanError, DatabaseError, ScandbError, first_line
from ..maintenance.digests import RunningDigests, record_digests
from ..source.scan import Scan, open_scan
from ..store.bucket import refused_in_duckdb
from ..store.images import ImageStore, discard
from ..store.matrices import MatrixStore, MatrixWriter
from ..store.meta import MetaStore
from . import prefetch, tables
from .start import begin_scan_write
from .tables import Source

DUCKDB_THREADS = 1
"""DuckDB threads while ingesting: the readers use the other core, and a second DuckDB
thread made Arrow inserts slower, not faster (BENCHMARKS.md, Numbers behind the code:
DuckDB threads)."""

GATHERED = ("images", "area_responses", "behavior", "frame_behavior", "area_frame_responses")
"""Per-chunk tables of small rows, gathered over chunks and inserted once per ingest (or
per ``GATHERED_BYTES``): on a lake each insert is a Parquet file of its own (on a bucket a
PUT in series with the ingest). ``responses``, ~8 MB a chunk, is still inserted chunk by
chunk: its files are what a query on ``image_id`` skips."""
GATHERED_BYTES = 16 << 20
"""A gathered table is inserted once its rows waiting reach this size (bounded memory)."""

Progress = Callable[[int, int], None]
"""Called with the number of trials just written and the scan's total."""


@dataclass
class IngestResult:
    source: str
    scan_key: str
    status: str
    """'ingested', 'replaced', 'unchanged' or 'failed'."""
    n_trials: int = 0
    n_neurons: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    error: BadScanError | None = None
    """Why a 'failed' scan was refused."""

    def summary(self) -> str:
        if self.status == "failed":
            return f"error: {self.error}"
        if self.status == "unchanged":
            return f"{self.scan_key}: already ingested with the same content ({self.source}); nothing to do"
        line = (f"{self.scan_key}: {self.status} {self.n_trials} trials, {self.n_neurons} neurons "
                f"in {self.seconds:.1f} s")
        return line + "".join(f"; {note}" for note in self.notes)


def source_digest(path: Path) -> tuple[str, int]:
    """sha256 and size of a zip; for a folder, of every file's relative name and bytes."""
    digest = hashlib.sha256()
    if path.is_file():
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256")
        return digest.hexdigest(), path.stat().st_size
    size = 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        length = file.stat().st_size
        digest.update(f"{file.relative_to(path).as_posix()}\0{length}\0".encode())
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        size += length
    return digest.hexdigest(), size


def content_digest(scan: Scan) -> str:
    """The digest of a scan's content, read member by member (see ``tables.content_digest``);
    used when a scan already in the database arrives in another container."""
    digests = _outside_data_digests(scan)
    for key in scan.data:
        for trial in range(scan.n_trials):
            digests[f"data/{key}/{trial}.npy"] = hashlib.sha256(scan.read_trial_bytes(key, trial)).hexdigest()
    return tables.content_digest(digests)


def _outside_data_digests(scan: Scan) -> dict[str, str]:
    return {rel: hashlib.sha256(raw).hexdigest() for rel, raw in scan.files.items()}


def ingest(db: Database, path: str | Path, *, replace: bool = False, progress: Progress | None = None,
           response_matrix: bool = True, workers: int | None = None) -> IngestResult:
    """Put one scan (or experanto session) into the database, or explain in one line why not.

    ``response_matrix=False`` keeps responses in the database only: no matrix file (4 bytes
    per response value) on disk, but fetches go through SQL, an order of magnitude slower
    for a whole tier (BENCHMARKS.md, Numbers behind the code: response matrices).
    ``workers`` reader processes (default: 2 for big scans, none for small ones, see
    ``prefetch.use_workers``)."""
    started = time.perf_counter()
    path = Path(path)
    from .session import ingest_session, is_session
    if is_session(path):  # an experanto session folder or tar (scandb/ingest/session.py)
        return ingest_session(db, path, replace=replace)
    hashing = ThreadPoolExecutor(1, thread_name_prefix="scandb-digest")
    digest = hashing.submit(source_digest, path)  # hashlib releases the GIL: overlaps opening the scan
    hashing.shutdown(wait=False)
    with open_scan(path) as scan:
        sha, size = digest.result()
        existing = db.conn.execute("SELECT source_sha256, content_sha256 FROM scans WHERE scan_key = ?",
                                   [scan.key]).fetchone()
        if existing and existing[0] == sha:
            return IngestResult(str(path), scan.key, "unchanged")
        if existing and existing[1] and existing[1] == content_digest(scan):
            return IngestResult(str(path), scan.key, "unchanged")
        if existing and not replace:
            from .differences import describe
            raise BadScanError(str(path), None, f"scan {scan.key} is already in the database with different "
                                                f"content ({describe(db.conn, scan)}); pass --replace to swap it")
        source = Source(tables.source_name(scan), size, sha, None)
        n_workers = prefetch.use_workers(scan) if workers is None else workers
        writer = _ScanWriter(db, path, scan, progress, response_matrix, n_workers)
        writer.write(source, replaced=bool(existing))
        status = "replaced" if existing else "ingested"
        return IngestResult(str(path), scan.key, status, scan.n_trials, scan.n_neurons,
                            time.perf_counter() - started, writer.notes)


class _ScanWriter:
    def __init__(self, db: Database, path: Path, scan: Scan, progress: Progress | None, response_matrix: bool,
                 workers: int):
        self.db, self.conn, self.path, self.scan = db, db.conn, path, scan
        self.store = ImageStore(db.store)
        self.meta = MetaStore(db.store)
        self.progress = progress or (lambda done, total: None)
        self.notes: list[str] = []
        self.groups = tables.neuron_groups(scan)
        self.workers = workers
        self.matrix: MatrixWriter | None = None
        self.response_matrix = response_matrix
        self.created: list[str] = []
        """Image files this ingest wrote, from every reader: removed if it rolls back."""
        self.row_digests: dict[int, bytes] = {}
        """sha256 of each response matrix row its reader wrote, by trial id."""
        self.digests: RunningDigests | None = None
        """The table digests of the rows inserted so far (recorded at the end, not read back)."""
        self.known_images: frozenset[str] = frozenset()
        """Image hashes the database held before this ingest (their rows stay as they are)."""

    def write(self, source: Source, replaced: bool) -> None:
        previous = self.conn.execute("SELECT current_setting('threads'), "
                                     "current_setting('write_buffer_row_group_count')").fetchone()
        self.conn.execute(f"SET threads = {DUCKDB_THREADS}")
        self.conn.execute("SET write_buffer_row_group_count = 1")
        try:
            self._write_transaction(source, replaced)
        finally:
            try:
                self.conn.execute(f"SET threads = {int(previous[0])}")
                self.conn.execute(f"SET write_buffer_row_group_count = {int(previous[1])}")
            except duckdb.Error:  # a connection DuckDB invalidated (disk full): the real error is raised
                pass

    def _write_transaction(self, source: Source, replaced: bool) -> None:
        """The scan's rows and files; the ``scans`` row goes last, once the content digest
        of every member read is known."""
        s = self.scan
        try:
            with transaction(self.conn):
                begin_scan_write(self.db, s.key, replaced)
                self.digests = RunningDigests(self.conn, response_values=not (self.response_matrix
                                                                              or s.kind == "dynamic"))
                if self.response_matrix or s.kind == "dynamic":
                    self.matrix = MatrixStore(self.store.folder).writer(source.sha256, s.n_trials,
                                                                        *matrix_row_shape(s))
                image_hashes, member_digests, flags = self._write_trial_data(meanwhile=self._write_scan_tables)
                trials = tables.trial_table(s, image_hashes, flags)
                self._insert("trials", trials, "* REPLACE (extra::JSON AS extra)")
                self._write_quality(trials)
                source = Source(source.name, source.size, source.sha256, tables.content_digest(member_digests))
                self._insert("scans", tables.scan_row(s, source, datetime.now(timezone.utc).replace(tzinfo=None),
                                                      __version__))
                if self.matrix is not None:
                    self._insert("response_matrices", tables.response_matrix_row(s.key, self.matrix.key, s.n_trials,
                                                                                 s.n_neurons))
                if replaced:
                    self.conn.execute("DELETE FROM images WHERE image_hash NOT IN (SELECT image_hash FROM trials)")
                shared = sorted(set(image_hashes) & self.known_images)
                if shared:  # rows another scan added: part of this scan's digest of images
                    self.digests.add_rows_of(self.conn, "images", "list_contains(?, image_hash)", [shared])
                if self.matrix is not None:  # in place (on a bucket: its upload, begun once every row was
                    self.matrix.finish()      # written, done), before its digest is taken and the commit
                rows_hashed = self.row_digests and len(self.row_digests) == s.n_trials
                record_digests(self.db, s.key, [self.row_digests[t] for t in range(s.n_trials)] if rows_hashed else None,
                               self.digests.digests())
        except BaseException as exc:
            if not self.db.shared_store:
                discard(self.created, self.store.root)
                discard(self.meta.created, self.store.root)
            if self.matrix is not None:
                self.matrix.discard(final=not self.db.shared_store)
            if isinstance(exc, ScandbError) or not isinstance(exc, Exception):
                raise
            raise _explain(self.db, s, exc) from exc
        self._note_missing_meta()

    def _write_scan_tables(self) -> None:
        """The scan's neurons, statistics and kept files (rows of no trial): written while
        the readers read the first chunks."""
        s = self.scan
        self._insert("neurons", tables.neuron_table(s), "* REPLACE (extra::JSON AS extra)")
        stored = {rel: self.meta.put(s.files[rel], rel) for rel in tables.kept_as_files(s)}
        statistics = tables.statistics_table(s, stored)
        if statistics is not None:
            self._insert("statistics", statistics)
        self._insert("scan_files", tables.file_table(s, stored))

    def _write_quality(self, trials: pa.Table) -> None:
        """``neuron_quality`` from the repeat tier's rows just written: read back from the
        matrix being written (memory-mapped, one stimulus group at a time), or from the
        ``responses`` rows of a scan ingested without one; which trials those are, from
        ``trials``, the rows just inserted (not read back)."""
        s = self.scan
        if self.matrix is not None:
            rows = quality.matrix_rows(self.matrix.temporary)
        else:
            rows = quality.sql_rows(self.conn, s.key)
        self.conn.register("_trials_written", trials)
        try:
            table = quality.quality_table(self.conn, s.key, s.kind, s.n_neurons, rows, trials="_trials_written")
        finally:
            self.conn.unregister("_trials_written")
        if table is not None:
            self._insert("neuron_quality", table)

    def _insert(self, table: str, data: pa.Table, select: str = "*") -> None:
        """Insert the rows, and add them to the scan's table digests."""
        insert_arrow(self.conn, table, data, select)
        self.conn.register("_digested", data)
        try:
            self.digests.add(self.conn, table, f"SELECT {select} FROM _digested", data.column_names)
        finally:
            self.conn.unregister("_digested")

    def _write_trial_data(self, meanwhile: Callable[[], None]) -> tuple[list[str], dict[str, str],
                                                                         tables.TrialFlags]:
        """Stream every trial's image (or video), responses, behavior and pupil position, in
        image order (``meanwhile()`` runs once the readers have begun, before the first
        chunk); returns image hashes by trial, the sha256 of every member read, and what
        was learnt about each trial (valid length, withheld data)."""
        s = self.scan
        image_hashes: list[str] = [""] * s.n_trials
        flags = tables.TrialFlags.empty(s.n_trials)
        member_digests = _outside_data_digests(s)
        known = {r[0] for r in self.conn.execute("SELECT image_hash FROM images").fetchall()}
        self.known_images = frozenset(known)
        self.store.known = frozenset(known)  # a pack leaves them out
        trial_image_ids = tables.image_ids(s)
        non_finite = lossy = 0
        sink = self.matrix.sink() if self.matrix is not None and s.kind == "dynamic" else None
        reader = prefetch.Prefetcher(self.path, s, self.store, self.groups, self.workers, sink)
        gathered = _Gathered(self._insert)
        try:
            chunks = reader.chunks(tables.image_order(s))
            meanwhile()
            for chunk in chunks:
                self.created = reader.created
                new_images = []
                for trial, stored in zip(chunk.trials.tolist(), chunk.images):
                    image_hashes[trial] = stored.image_hash
                    if stored.image_hash not in known:
                        known.add(stored.image_hash)
                        new_images.append(stored)
                member_digests.update(chunk.member_digests)
                flags.update(chunk)
                non_finite += chunk.non_finite
                lossy += chunk.lossy
                if new_images:
                    gathered.add("images", tables.image_table(new_images))
                if chunk.responses is None:  # a dynamic chunk's rows, written by its reader
                    self.matrix.count(len(chunk.trials))
                    for trial, digest in zip(chunk.trials.tolist(), chunk.row_digests):
                        self.row_digests[trial] = digest
                elif self.matrix is not None:
                    self.matrix.write(chunk.trials, chunk.responses)
                if s.kind == "dynamic":
                    gathered.add("frame_behavior", tables.frame_behavior_table(s.key, chunk))
                    gathered.add("area_frame_responses", tables.area_frame_table(s.key, chunk, self.groups))
                else:
                    self._insert("responses", tables.response_table(s.key, chunk, trial_image_ids))
                    gathered.add("area_responses", tables.area_response_table(s.key, chunk, self.groups))
                    gathered.add("behavior", tables.behavior_table(s.key, chunk))
                self.progress(len(chunk.trials), s.n_trials)
            gathered.flush()
        finally:
            reader.close()
            self.created = reader.created
        if non_finite:
            where = " inside trials' valid frames" if s.kind == "dynamic" else ""
            self.notes.append(f"{non_finite} NaN/Inf response values{where} kept as they are")
        if lossy:
            self.notes.append(f"{lossy} {s.data['responses'].dtype} response values rounded to float32")
        return image_hashes, member_digests, flags

    def _note_missing_meta(self) -> None:
        missing = tables.missing_meta(self.scan)
        if missing:
            self.notes.append(f"ingested without the optional {', '.join(missing)}")


class _Gathered:
    """Rows of the ``GATHERED`` tables waiting to be inserted (``insert(table, rows)``)."""

    def __init__(self, insert: Callable[[str, pa.Table], None]):
        self._insert = insert
        self._waiting: dict[str, list[pa.Table]] = {}

    def add(self, table: str, rows: pa.Table) -> None:
        waiting = self._waiting.setdefault(table, [])
        waiting.append(rows)
        if sum(t.nbytes for t in waiting) >= GATHERED_BYTES:
            self._flush(table)

    def flush(self) -> None:
        for table in list(self._waiting):
            self._flush(table)

    def _flush(self, table: str) -> None:
        waiting = self._waiting.pop(table, [])
        if waiting:
            self._insert(table, pa.concat_tables(waiting))


def matrix_row_shape(scan: Scan) -> tuple[int, ...]:
    """A response matrix row: (n_neurons,) for a static trial; (T, n_neurons), time-major,
    for a dynamic one, so a window of frames is one contiguous read (docs/architecture.md)."""
    if scan.kind == "dynamic":
        return (scan.padded_frames, scan.n_neurons)
    return (scan.n_neurons,)


def _explain(db: Database, scan: Scan, exc: Exception) -> ScandbError:
    """An unexpected failure while writing, as one line naming the scan and the cause."""
    message = first_line(str(exc)) or type(exc).__name__
    kept = "nothing of this scan was kept"
    refused = refused_in_duckdb(str(exc))
    if refused is not None:
        return DatabaseError(f"{scan.label}: {refused}; {kept}")
    if isinstance(exc, OSError):
        return DatabaseError(f"{scan.label}: cannot write {exc.filename or db.image_dir} "
                             f"({exc.strerror or message}); {kept}")
    if damage(message):
        return explain(exc, f"{scan.label}: ingest")
    cause = write_failure(message)
    if cause:
        return DatabaseError(f"{scan.label}: cannot write {db.name} ({cause}); {kept}")
    return DatabaseError(f"{scan.label}: ingest failed and was rolled back ({type(exc).__name__}: {message})")
