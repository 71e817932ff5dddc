"""Source -> database: one scan in one transaction, bulk inserts through Arrow.

Either every row and file of a scan (images, response matrix) lands, or none does: rows
roll back with the transaction, and files this ingest created are removed again.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import duckdb
import numpy as np
import pyarrow as pa

from .. import __version__
from ..source import npyfile
from ..catalog.database import Database
from ..errors import BadScanError, DatabaseError, ScandbError, first_line
from ..store.images import ImageStore, StoredImage
from ..maintenance.checks import collect_orphans
from ..maintenance.digests import record_digests
from ..store.matrices import MatrixWriter
from ..catalog.schema import delete_scan_rows
from ..catalog.transaction import transaction, write_failure
from ..source.scan import Scan, open_scan

CHUNK_TRIALS = 256
"""Trials read and inserted per batch: bounds memory whatever the scan's size."""
READER_THREADS = 2
"""Threads inflating and storing chunks while the main thread inserts (2 cores measured)."""
CHUNKS_AHEAD = 3
"""Chunks read ahead of the one being inserted: bounds memory to a few chunks."""
DUCKDB_THREADS = 1
"""DuckDB threads while ingesting: the reader threads use the other core, and a second
DuckDB thread made Arrow inserts slower (1.9 s vs 1.1 s for a scan's responses)."""

TRIAL_COLUMNS_USED = {"tiers", "frame_image_class", "trial_idx", "frame_trial_ts"}
NEURON_COLUMNS_USED = {"unit_ids", "area", "layer", "cell_motor_coordinates"}
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?")

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
            return f"{self.scan_key}: already ingested from this file ({self.source}); nothing to do"
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


def ingest(db: Database, path: str | Path, *, replace: bool = False, progress: Progress | None = None,
           response_matrix: bool = True) -> IngestResult:
    """Put one scan into the database, or explain in one line why not.

    ``response_matrix=False`` keeps responses in the database only: no matrix file (4 bytes
    per response value) on disk, but fetches go through SQL, ~18x slower for a whole tier
    (BENCHMARKS.md)."""
    started = time.perf_counter()
    path = Path(path)
    hashing = ThreadPoolExecutor(1, thread_name_prefix="scandb-digest")
    digest = hashing.submit(source_digest, path)  # hashlib releases the GIL: overlaps opening the scan
    hashing.shutdown(wait=False)
    with open_scan(path) as scan:
        sha, size = digest.result()
        existing = db.conn.execute("SELECT source_sha256 FROM scans WHERE scan_key = ?", [scan.key]).fetchone()
        if existing and existing[0] == sha:
            return IngestResult(str(path), scan.key, "unchanged")
        if existing and not replace:
            raise BadScanError(str(path), None, f"scan {scan.key} is already in the database from a different "
                                                "file; pass --replace to swap it")
        writer = _ScanWriter(db, scan, progress, response_matrix)
        writer.write(sha, size, replaced=bool(existing))
        status = "replaced" if existing else "ingested"
        return IngestResult(str(path), scan.key, status, scan.n_trials, scan.n_neurons,
                            time.perf_counter() - started, writer.notes)


class _ScanWriter:
    def __init__(self, db: Database, scan: Scan, progress: Progress | None, response_matrix: bool):
        self.db, self.conn, self.scan = db, db.conn, scan
        self.store = ImageStore(db.image_dir)
        self.progress = progress or (lambda done, total: None)
        self.notes: list[str] = []
        self.groups = _neuron_groups(scan)
        self.image_ids = scan.trials[scan.image_id_file].astype(np.int64)
        self.matrix: MatrixWriter | None = None
        self.response_matrix = response_matrix

    def write(self, sha: str, size: int, replaced: bool) -> None:
        previous = self.conn.execute("SELECT current_setting('threads'), "
                                     "current_setting('write_buffer_row_group_count')").fetchone()
        self.conn.execute(f"SET threads = {DUCKDB_THREADS}")
        self.conn.execute("SET write_buffer_row_group_count = 1")
        try:
            self._write_transaction(sha, size, replaced)
        finally:
            try:
                self.conn.execute(f"SET threads = {int(previous[0])}")
                self.conn.execute(f"SET write_buffer_row_group_count = {int(previous[1])}")
            except duckdb.Error:  # a connection DuckDB invalidated (disk full): the real error is raised
                pass

    def _write_transaction(self, sha: str, size: int, replaced: bool) -> None:
        try:
            with transaction(self.conn):
                if replaced:
                    delete_scan_rows(self.conn, self.scan.key)
                self._write_scan_row(sha, size)
                self._write_neurons()
                self._write_statistics()
                self._write_files()
                if self.response_matrix:
                    self.matrix = MatrixWriter(self.store.root, sha, self.scan.n_trials, self.scan.n_neurons)
                image_hashes = self._write_trial_data()
                self._write_trials(image_hashes)
                if self.matrix is not None:
                    self._write_matrix_row(self.matrix.finish())
                if replaced:
                    self.conn.execute("DELETE FROM images WHERE image_hash NOT IN (SELECT image_hash FROM trials)")
                record_digests(self.db, self.scan.key)
        except BaseException as exc:
            self.store.discard_created()
            if self.matrix is not None:
                self.matrix.discard()
            if isinstance(exc, ScandbError) or not isinstance(exc, Exception):
                raise
            raise _explain(self.db, self.scan, exc) from exc
        if replaced:
            collect_orphans(self.db)  # the replaced scan's files

    def _insert(self, table: str, data: pa.Table, select: str = "*") -> None:
        self.conn.register("_batch", data)
        try:
            self.conn.execute(f"INSERT INTO {table} BY NAME SELECT {select} FROM _batch")
        finally:
            self.conn.unregister("_batch")

    def _write_scan_row(self, sha: str, size: int) -> None:
        s, data = self.scan, self.scan.data
        row = dict(scan_key=s.key, name=s.name, animal_id=s.animal_id, session=s.session, scan_idx=s.scan_idx,
                   kind="static", n_trials=s.n_trials, n_neurons=s.n_neurons,
                   image_shape=list(data["images"].shape), image_dtype=data["images"].dtype.str,
                   response_dtype=data["responses"].dtype.str, behavior_dtype=data["behavior"].dtype.str,
                   pupil_center_dtype=data["pupil_center"].dtype.str, source_name=Path(s.label).name,
                   source_size=size, source_sha256=sha,
                   ingested_at=datetime.now(timezone.utc).replace(tzinfo=None), scandb_version=__version__)
        names = ", ".join(row)
        self.conn.execute(f"INSERT INTO scans ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values()))

    def _write_neurons(self) -> None:
        s, meta = self.scan, self.scan.neurons
        n = s.n_neurons
        coords = meta.get("cell_motor_coordinates")
        columns = {
            "scan_key": pa.array([s.key] * n),
            "neuron_idx": pa.array(np.arange(n, dtype=np.int32)),
            "unit_id": pa.array(meta["unit_ids"].astype(np.int64)),
            "area": _strings(meta.get("area"), n),
            "layer": _strings(meta.get("layer"), n),
        }
        for axis, name in enumerate("xyz"):
            columns[name] = pa.array(coords[:, axis].astype(np.float64) if coords is not None else [None] * n,
                                     pa.float64())
        columns["extra"] = _json_rows({k: v for k, v in meta.items() if k not in NEURON_COLUMNS_USED}, n)
        self._insert("neurons", pa.table(columns), "* REPLACE (extra::JSON AS extra)")

    def _write_statistics(self) -> None:
        stats = self.scan.statistics
        if not stats:
            return
        table = pa.table({
            "scan_key": [self.scan.key] * len(stats),
            "variable": [st.variable for st in stats],
            "source": [st.source for st in stats],
            "stat": [st.stat for st in stats],
            "dtype": [st.array.dtype.str for st in stats],
            "shape": pa.array([list(st.array.shape) for st in stats], pa.list_(pa.int32())),
            "data": pa.array([st.array.astype(np.float64).ravel() for st in stats], pa.list_(pa.float64())),
        })
        self._insert("statistics", table)

    def _write_files(self) -> None:
        paths, dtypes, shapes, contents = [], [], [], []
        for rel, raw in sorted(self.scan.files.items()):
            dtype = shape = None
            if rel.endswith(".npy"):
                try:
                    header = npyfile.parse_header(raw)
                except npyfile.NpyError as exc:
                    raise BadScanError(self.scan.label, self.scan.root + rel, str(exc)) from None
                dtype, shape = header.dtype.str, list(header.shape)
            paths.append(rel), dtypes.append(dtype), shapes.append(shape), contents.append(raw)
        table = pa.table({
            "scan_key": [self.scan.key] * len(paths), "path": paths, "dtype": pa.array(dtypes, pa.string()),
            "shape": pa.array(shapes, pa.list_(pa.int32())), "content": pa.array(contents, pa.binary()),
        })
        self._insert("scan_files", table)

    def _write_trial_data(self) -> list[str]:
        """Stream every trial's image, responses, behavior and pupil position; returns image
        hashes by trial.

        Trials are read in image order (then trial order), so the responses table is stored
        sorted by image and DuckDB skips other images' row groups. Reader threads inflate,
        check and store chunks of trials ahead (zlib, hashing and file writes release the
        GIL) while this thread inserts finished chunks in order.
        """
        s = self.scan
        image_hashes: list[str] = [""] * s.n_trials
        known = {r[0] for r in self.conn.execute("SELECT image_hash FROM images").fetchall()}
        non_finite = 0
        lossy = 0
        order = np.lexsort((np.arange(s.n_trials), self.image_ids)).astype(np.int32)
        chunks = [order[start:start + CHUNK_TRIALS] for start in range(0, s.n_trials, CHUNK_TRIALS)]
        pool = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="scandb-read")
        try:
            pending = deque(pool.submit(self._read_chunk, trials) for trials in chunks[:CHUNKS_AHEAD])
            upcoming = iter(chunks[CHUNKS_AHEAD:])
            while pending:
                chunk = pending.popleft().result()
                following = next(upcoming, None)
                if following is not None:
                    pending.append(pool.submit(self._read_chunk, following))
                new_images = []
                for trial, stored in zip(chunk.trials.tolist(), chunk.images):
                    image_hashes[trial] = stored.image_hash
                    if stored.image_hash not in known:
                        known.add(stored.image_hash)
                        new_images.append(stored)
                non_finite += chunk.non_finite
                lossy += chunk.lossy
                self._insert_chunk(chunk, new_images)
                self.progress(len(chunk.trials), s.n_trials)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if non_finite:
            self.notes.append(f"{non_finite} NaN/Inf response values kept as they are")
        if lossy:
            self.notes.append(f"{lossy} {s.data['responses'].dtype} response values rounded to float32")
        return image_hashes

    def _read_chunk(self, trials: np.ndarray) -> "_TrialChunk":
        """These trials read, checked and their images stored (runs in a reader thread)."""
        s = self.scan
        n = len(trials)
        images = []
        for trial in trials.tolist():
            raw = s.read_trial_bytes("images", trial)
            images.append(self.store.put(npyfile.parse_header(raw), raw))
        responses = s.read_many("responses", trials)
        as_float32 = responses.astype(np.float32, copy=False)
        lossy = 0
        if responses.dtype != np.float32:
            lossy = int(np.count_nonzero(as_float32.astype(responses.dtype) != responses))
        non_finite = int(np.count_nonzero(~np.isfinite(as_float32)))
        behavior = s.read_many("behavior", trials).reshape(n, 3).astype(np.float64)
        pupil = s.read_many("pupil_center", trials).reshape(n, 2).astype(np.float64)
        area_sums = np.column_stack([as_float32[:, idx].sum(axis=1, dtype=np.float64) for _, idx in self.groups])
        return _TrialChunk(trials, images, as_float32, behavior, pupil, area_sums, non_finite, lossy)

    def _insert_chunk(self, chunk: "_TrialChunk", new_images: list[StoredImage]) -> None:
        s = self.scan
        if new_images:
            self._insert("images", pa.table({
                "image_hash": [i.image_hash for i in new_images], "path": [i.path for i in new_images],
                "shape": pa.array([list(i.shape) for i in new_images], pa.list_(pa.int32())),
                "dtype": [i.dtype for i in new_images], "n_bytes": [i.n_bytes for i in new_images]}))
        n = len(chunk.trials)
        trial_ids = pa.array(chunk.trials)
        keys = pa.array([s.key] * n)
        if self.matrix is not None:
            self.matrix.write(chunk.trials, chunk.responses)
        offsets = pa.array(np.arange(0, n * s.n_neurons + 1, s.n_neurons, dtype=np.int64))
        self._insert("responses", pa.table({
            "scan_key": keys, "trial_id": trial_ids,
            "response": pa.LargeListArray.from_arrays(offsets, pa.array(chunk.responses.ravel())),
            "image_id": pa.array(self.image_ids[chunk.trials])}))
        self._insert("area_responses", pa.table({
            "scan_key": pa.array([s.key] * (n * len(self.groups))),
            "trial_id": pa.array(np.repeat(chunk.trials, len(self.groups))),
            "area": pa.array([area for _ in range(n) for (area, _), _ in self.groups], pa.string()),
            "layer": pa.array([layer for _ in range(n) for (_, layer), _ in self.groups], pa.string()),
            "n_neurons": pa.array(np.tile([len(idx) for _, idx in self.groups], n).astype(np.int32)),
            "response_sum": pa.array(chunk.area_sums.ravel())}))
        behavior, pupil = chunk.behavior, chunk.pupil
        self._insert("behavior", pa.table({
            "scan_key": keys, "trial_id": trial_ids,
            "pupil_dilation": behavior[:, 0], "pupil_dilation_derivative": behavior[:, 1],
            "running_speed": behavior[:, 2], "pupil_x": pupil[:, 0], "pupil_y": pupil[:, 1]}))

    def _write_matrix_row(self, path: str) -> None:
        self.conn.execute("INSERT INTO response_matrices VALUES (?, ?, ?, ?)",
                          [self.scan.key, path, self.scan.n_trials, self.scan.n_neurons])

    def _write_trials(self, image_hashes: list[str]) -> None:
        s, meta = self.scan, self.scan.trials
        n = s.n_trials
        id_file = s.image_id_file
        trial_idx = meta.get("trial_idx")
        numeric_idx = trial_idx is not None and trial_idx.dtype.kind in "iu"
        columns = {
            "scan_key": pa.array([s.key] * n),
            "trial_id": pa.array(np.arange(n, dtype=np.int32)),
            "tier": _strings(meta["tiers"], n),
            "image_id": pa.array(self.image_ids),
            "image_class": _strings(meta.get("frame_image_class"), n),
            "trial_idx": pa.array(trial_idx.astype(np.int64) if numeric_idx else [None] * n, pa.int64()),
            "trial_hash": _strings(None if numeric_idx else trial_idx, n),
            "timestamp": _timestamps(meta.get("frame_trial_ts"), n),
            "image_hash": pa.array(image_hashes),
            "extra": _json_rows({k: v for k, v in meta.items() if k not in TRIAL_COLUMNS_USED and k != id_file}, n),
        }
        self._insert("trials", pa.table(columns), "* REPLACE (extra::JSON AS extra)")


@dataclass
class _TrialChunk:
    """Consecutive trials read and checked by a reader thread, ready to insert."""

    trials: np.ndarray
    """trial ids, in the order read"""
    images: list[StoredImage]
    responses: np.ndarray
    """(len(trials), n_neurons) float32"""
    behavior: np.ndarray
    pupil: np.ndarray
    area_sums: np.ndarray
    """(len(trials), n_groups) float64: response sums per (area, layer) group"""
    non_finite: int
    lossy: int


def _neuron_groups(scan: Scan) -> list[tuple[tuple[str | None, str | None], np.ndarray]]:
    """Neuron indexes per (area, layer), for the area_responses sums."""
    n = scan.n_neurons
    areas = scan.neurons.get("area")
    layers = scan.neurons.get("layer")
    keys = list(zip(_strings(areas, n).to_pylist(), _strings(layers, n).to_pylist()))
    groups: dict[tuple, list[int]] = {}
    for idx, key in enumerate(keys):
        groups.setdefault(key, []).append(idx)
    return [(key, np.array(idx, dtype=np.int64)) for key, idx in groups.items()]


def _strings(array: np.ndarray | None, n: int) -> pa.Array:
    if array is None:
        return pa.array([None] * n, pa.string())
    return pa.array([_text(v) for v in array.tolist()], pa.string())


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _timestamps(array: np.ndarray | None, n: int) -> pa.Array:
    values = []
    for value in (array.tolist() if array is not None else [None] * n):
        match = TIMESTAMP.search(str(value)) if value is not None else None
        values.append(np.datetime64(match.group(0).replace(" ", "T"), "us") if match else None)
    return pa.array(values, pa.timestamp("us"))


def _json_value(value):
    """A meta value as JSON: NaN and infinities become null (the exact file is in scan_files)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def _json_rows(arrays: dict[str, np.ndarray], n: int) -> pa.Array:
    """One JSON object per row with every array's value for that row, by file name."""
    if not arrays:
        return pa.array([None] * n, pa.string())
    columns = {name: array.tolist() for name, array in sorted(arrays.items())}
    return pa.array([json.dumps({name: _json_value(values[i]) for name, values in columns.items()})
                     for i in range(n)], pa.string())


def _explain(db: Database, scan: Scan, exc: Exception) -> ScandbError:
    """An unexpected failure while writing, as one line naming the scan and the cause."""
    message = first_line(str(exc)) or type(exc).__name__
    kept = "nothing of this scan was kept"
    if isinstance(exc, OSError):
        return DatabaseError(f"{scan.label}: cannot write {exc.filename or db.image_dir} "
                             f"({exc.strerror or message}); {kept}")
    cause = write_failure(message)
    if cause:
        return DatabaseError(f"{scan.label}: cannot write {db.path} ({cause}); {kept}")
    return DatabaseError(f"{scan.label}: ingest failed and was rolled back ({type(exc).__name__}: {message})")
