"""An experanto session (a folder or an uncompressed tar) -> database, in one transaction.

The session is opened and checked first (``scandb.session``: every problem a
``BadScanError`` naming the file), then written with the guarantees a scan has: its rows in
one transaction, its files staged and put in place before the commit, removed again when
it rolls back. Where each file of the session goes:

- each sequence's (and spikes') data -> ``sessions/<sha256>.npy`` in the store, bit for bit
  (a ``data.mem`` gets a `.npy` header in front), named in ``modalities.path``;
- each stimulus file -> the image store by content (a test video's repeats are one file),
  named by ``trials.image_hash``; a blank trial's image is the frame experanto draws for it
  (``interleave_value`` everywhere), one file per level and size;
- every other file (yml, json, statistics, timestamps, neuron metadata, interval rows) ->
  ``scan_files``, byte for byte (in the meta store above ``INLINE_LIMIT``).

Identity is the content digest over every file's relative name and sha256, so a tar and the
folder it unpacks to are the same session.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from .. import __version__
from ..catalog.database import Database
from ..catalog.transaction import insert_arrow, transaction
from ..errors import BadScanError, ScandbError
from ..maintenance.digests import record_digests
from ..session import gaps
from ..session.files import CHUNK, SessionFiles, open_files
from ..session.modalities import Screen, Sequence, Spikes, TimeIntervals
from ..session.parse import MAX_SMALL_NPY
from ..session.session import Session, read_session
from ..session.windows import AreaSums, WindowSums, area_sums, window_means
from ..source import npyfile
from ..store.images import ImageStore, discard
from ..store.meta import MetaStore
from ..store.sessions import SessionStore, npy_header
from .start import begin_scan_write

KIND = "experanto"
INLINE_LIMIT = 4 << 20
"""Files outside the arrays and stimuli up to this size are kept in ``scan_files.content``;
larger ones in the meta store."""
MAX_STIMULUS = 2 << 30
"""Largest stimulus file read (a 15 s 144 x 256 colour video at 30 Hz is 50 MB)."""


def is_session(path: Path) -> bool:
    """A folder with a modality folder (a subfolder holding ``meta.yml``), or a tar: what
    experanto reads. Scan zips and folders have neither."""
    if path.is_dir():
        return any(child.is_dir() and (child / "meta.yml").is_file() for child in path.iterdir())
    if path.is_file():
        if zipfile.is_zipfile(path):
            return False
        return path.suffix == ".tar" or tarfile.is_tarfile(path)
    return False


def array_member(modality) -> str | None:
    """The file holding a sequence's or spikes modality's data (as experanto picks it)."""
    mem = bool(modality.meta.get("is_mem_mapped", False))
    if isinstance(modality, Sequence):
        return f"{modality.name}/data.{'mem' if mem else 'npy'}"
    if isinstance(modality, Spikes):
        return f"{modality.name}/spikes.{'mem' if mem else 'npy'}"
    return None


def stimulus_members(session: Session) -> dict[int, str]:
    """Trial index -> the session file with its pixels (stimulus trials of the screen)."""
    screen = session.screen
    if screen is None:
        return {}
    return {t.index: f"{screen.name}/{t.data_file}" for t in screen.trials if t.data_file is not None}


def file_digests(files: SessionFiles) -> dict[str, str]:
    """sha256 of every file of the session, by relative name (one streamed read of each)."""
    digests = {}
    buffer = bytearray(CHUNK)  # one, reused: each block is hashed before the next is read
    for name in sorted(files.names()):
        digest = hashlib.sha256()
        for block in files.chunks(name, CHUNK, lambda size: buffer):
            digest.update(block)
        digests[name] = digest.hexdigest()
    return digests


def content_digest(member_digests: dict[str, str]) -> str:
    from .tables import content_digest as digest

    return digest(member_digests)


def ingest_session(db: Database, path: Path, *, replace: bool = False):
    """Put one session into the database, or explain in one line why not."""
    from .writer import IngestResult

    started = time.perf_counter()
    files = open_files(path)
    session = read_session(files, str(path))
    try:
        existing = db.conn.execute("SELECT kind, content_sha256 FROM scans WHERE scan_key = ?",
                                   [session.key]).fetchone()
        digests = None
        if existing:
            digests = file_digests(files)
            if existing[1] == content_digest(digests):
                return IngestResult(str(path), session.key, "unchanged")
            if not replace:
                what = "session" if existing[0] == KIND else f"{existing[0]} scan"
                raise BadScanError(str(path), None, f"{what} {session.key} is already in the database with "
                                                    "different content; pass --replace to swap it")
        writer = _SessionWriter(db, path, session, files)
        writer.write(replaced=bool(existing))
        n_trials, n_neurons = len(session.trials), _n_neurons(session)
        return IngestResult(str(path), session.key, "replaced" if existing else "ingested", n_trials, n_neurons,
                            time.perf_counter() - started, writer.notes)
    finally:
        session.close()


def _n_neurons(session: Session) -> int:
    responses = session.modalities.get("responses")
    return responses.n_signals if isinstance(responses, Sequence) else 0


class _SessionWriter:
    def __init__(self, db: Database, path: Path, session: Session, files: SessionFiles):
        self.db, self.conn, self.path, self.session, self.files = db, db.conn, path, session, files
        self.arrays = SessionStore(db.store)
        self.images = ImageStore(db.store)
        self.meta = MetaStore(db.store)
        self.notes: list[str] = []
        self.digests: dict[str, str] = {}
        """sha256 of every file of the session, by relative name, as it is read."""

    def write(self, replaced: bool) -> None:
        s = self.session
        try:
            with transaction(self.conn):
                begin_scan_write(self.db, s.key, replaced)
                paths = self._write_arrays()
                image_hashes, dtypes = self._write_stimuli()
                self._insert("modalities", self._modality_table(paths), "* REPLACE (meta::JSON AS meta)")
                intervals = self._interval_table()
                if intervals is not None:
                    self._insert("time_intervals", intervals)
                self._insert("neurons", self._neuron_table(), "* REPLACE (extra::JSON AS extra)")
                self._insert("trials", self._trial_table(image_hashes), "* REPLACE (extra::JSON AS extra)")
                self._insert("stimulus_trials", self._stimulus_trial_table())
                self._write_trial_means()
                self._write_area_sums()
                self._write_nan_rows()
                self._insert("scan_files", self._file_table(paths, image_hashes))
                if replaced:
                    self.conn.execute("DELETE FROM images WHERE image_hash NOT IN (SELECT image_hash FROM trials)")
                missing = set(self.files.names()) - set(self.digests)
                assert not missing, f"files neither stored nor kept: {sorted(missing)[:3]}"
                self._insert("scans", self._scan_row(dtypes))
                record_digests(self.db, s.key)
        except BaseException as exc:
            if not self.db.shared_store:
                discard(self.arrays.created, self.db.store.root)
                discard(self.images.created, self.db.store.root)
                discard(self.meta.created, self.db.store.root)
            if isinstance(exc, ScandbError) or not isinstance(exc, Exception):
                raise
            from .writer import _explain
            raise _explain(self.db, _Label(str(self.path)), exc) from exc

    def _insert(self, table: str, data: pa.Table, select: str = "*") -> None:
        insert_arrow(self.conn, table, data, select)

    # -- files ------------------------------------------------------------------------------

    def _write_arrays(self) -> dict[str, str]:
        """Each sequence's and spikes modality's data into the session store; modality name -> key.
        A sequence's trial means, area sums and NaN rows are found from the same blocks as they
        are copied, so each matrix is read once."""
        paths = {}
        self.window_sums: dict[str, WindowSums] = {}
        self.nan_rows: dict[str, gaps.NanRows] = {}
        self.area_sums: AreaSums | None = None
        for name, modality in self.session.modalities.items():
            member = array_member(modality)
            if member is None:
                continue
            header = b""
            data = modality.data if isinstance(modality, Sequence) else modality.spikes
            if member.endswith(".mem"):
                header = npy_header(data.dtype, data.shape)
            feed, size = None, CHUNK
            skip = 0
            if member.endswith(".npy"):  # the rows start after the file's own header
                head = npyfile.parse_header(self.files.head(member, npyfile.MAX_HEADER + 12))
                skip = None if head.fortran_order else head.data_offset
            if isinstance(modality, Sequence) and data.size and skip is not None:
                accumulators = [self.nan_rows.setdefault(name, gaps.NanRows())]
                if self.session.trials:
                    accumulators.append(self.window_sums.setdefault(name, WindowSums(modality, self.session.trials)))
                    if name == "responses":
                        self.area_sums = AreaSums(modality, self.session.trials, area_groups(self.session)[1])
                        accumulators.append(self.area_sums)
                feed = _RowFeeder(accumulators, data.dtype, data.shape[1], skip)
                row_bytes = data.dtype.itemsize * data.shape[1]
                size = max(1, CHUNK // row_bytes) * row_bytes if skip == 0 else CHUNK
            key, digest = self.arrays.copy(lambda take: self.files.chunks(member, size, take), header, feed)
            paths[name] = key
            self.digests[member] = digest
        return paths

    def _write_stimuli(self) -> tuple[dict[int, str], dict[int, str]]:
        """Each stimulus file into the image store (once per content), each blank's frame too;
        returns the image hash and dtype of every trial, by index."""
        hashes, dtypes = {}, {}
        screen = self.session.screen
        if screen is None:
            return hashes, dtypes
        known = {r[0] for r in self.conn.execute("SELECT image_hash FROM images").fetchall()}
        self.new_images = []
        members = stimulus_members(self.session)
        stored_by_member = self._store_stimuli(sorted(set(members.values())))
        blanks: dict[tuple, object] = {}
        for trial in screen.trials:
            member = members.get(trial.index)
            if member is None:
                level = (trial.image_size, trial.interleave_value)
                if level not in blanks:
                    raw = npyfile.dumps(np.full(trial.image_size, trial.interleave_value, dtype=np.float32))
                    blanks[level] = self.images.put(npyfile.parse_header(raw), raw)
                stored = blanks[level]
            else:
                stored = stored_by_member[member]
            if stored.image_hash not in known:
                known.add(stored.image_hash)
                self.new_images.append(stored)
            hashes[trial.index], dtypes[trial.index] = stored.image_hash, stored.dtype
        if self.new_images:
            from .tables import image_table
            self._insert("images", image_table(self.new_images))
        return hashes, dtypes

    def _store_stimuli(self, members: list[str]) -> dict:
        """Each stimulus file read once, its sha256 taken and its pixels stored by content, two
        files at a time (reads, digests and writes let go of the GIL); member -> stored image."""
        from concurrent.futures import ThreadPoolExecutor

        def store(member: str):
            raw = self.files.read(member, MAX_STIMULUS)
            digest = hashlib.sha256(raw).hexdigest()
            try:
                header = npyfile.parse_header(raw)
            except npyfile.NpyError as exc:
                raise self.files.bad(member, str(exc)) from None
            return digest, self.images.put(header, raw)

        out = {}
        with ThreadPoolExecutor(max_workers=2) as pool:
            for member, (digest, stored) in zip(members, pool.map(store, members)):
                self.digests[member] = digest
                out[member] = stored
        return out

    def _file_table(self, paths: dict[str, str], image_hashes: dict[int, str]) -> pa.Table:
        """Every other file, byte for byte (large ones in the meta store)."""
        rows = {"scan_key": [], "path": [], "dtype": [], "shape": [], "content": [], "stored_as": []}
        for name in sorted(self.files.names()):
            if name in self.digests:
                continue  # an array or a stimulus, stored above
            raw = self.files.read(name, MAX_SMALL_NPY)
            self.digests[name] = hashlib.sha256(raw).hexdigest()
            dtype = shape = None
            if name.endswith(".npy"):
                try:
                    header = npyfile.parse_header(raw)
                    dtype, shape = header.dtype.str, list(header.shape)
                except npyfile.NpyError:
                    pass  # kept as it is; experanto reads no such file (a broken one it reads was refused)
            stored = self.meta.put(raw, name) if len(raw) > INLINE_LIMIT else None
            rows["scan_key"].append(self.session.key), rows["path"].append(name)
            rows["dtype"].append(dtype), rows["shape"].append(shape)
            rows["content"].append(None if stored else raw), rows["stored_as"].append(stored)
        return pa.table({"scan_key": pa.array(rows["scan_key"], pa.string()),
                         "path": pa.array(rows["path"], pa.string()),
                         "dtype": pa.array(rows["dtype"], pa.string()),
                         "shape": pa.array(rows["shape"], pa.list_(pa.int32())),
                         "content": pa.array(rows["content"], pa.binary()),
                         "stored_as": pa.array(rows["stored_as"], pa.string())})

    # -- rows -------------------------------------------------------------------------------

    def _modality_table(self, paths: dict[str, str]) -> pa.Table:
        key = self.session.key
        rows = []
        for name, m in self.session.modalities.items():
            rate = n_samples = n_signals = dtype = shifts = None
            if isinstance(m, Sequence):
                rate, n_samples, n_signals, dtype = m.sampling_rate, m.n_samples, m.n_signals, m.dtype.str
                shifts = None if m.phase_shifts is None else [float(v) for v in m.phase_shifts]
            elif isinstance(m, Screen):
                n_samples = m.n_samples
                dtype = m.timestamps.dtype.str
            elif isinstance(m, Spikes):
                n_samples, n_signals, dtype = int(m.spikes.shape[0]), m.n_signals, m.spikes.dtype.str
            elif isinstance(m, TimeIntervals):
                n_samples, n_signals = sum(len(v) for v in m.labels.values()), len(m.labels)
            rows.append({"scan_key": key, "name": name, "kind": m.kind, "sampling_rate": rate,
                         "start_time": float(m.start_time), "end_time": float(m.end_time),
                         "n_samples": None if n_samples is None else int(n_samples),
                         "n_signals": None if n_signals is None else int(n_signals), "dtype": dtype,
                         "phase_shifts": shifts, "path": paths.get(name), "meta": _json(m.meta)})
        schema = pa.schema([("scan_key", pa.string()), ("name", pa.string()), ("kind", pa.string()),
                            ("sampling_rate", pa.float64()), ("start_time", pa.float64()),
                            ("end_time", pa.float64()), ("n_samples", pa.int64()), ("n_signals", pa.int32()),
                            ("dtype", pa.string()), ("phase_shifts", pa.list_(pa.float64())),
                            ("path", pa.string()), ("meta", pa.string())])
        return pa.Table.from_pylist(rows, schema)

    def _interval_table(self) -> pa.Table | None:
        rows = []
        for name, labels in self.session.time_intervals.items():
            for label, intervals in labels.items():
                for i, (start, end) in enumerate(intervals.tolist()):
                    rows.append({"scan_key": self.session.key, "modality": name, "label": label,
                                 "interval_idx": i, "start_time": float(start), "end_time": float(end)})
        if not rows:
            return None
        schema = pa.schema([("scan_key", pa.string()), ("modality", pa.string()), ("label", pa.string()),
                            ("interval_idx", pa.int32()), ("start_time", pa.float64()), ("end_time", pa.float64())])
        return pa.Table.from_pylist(rows, schema)

    def _neuron_table(self) -> pa.Table:
        from .tables import strings

        n = _n_neurons(self.session)
        meta = self.session.neurons()
        unit_ids = meta.get("unit_ids")
        coords = meta.get("coordinates")
        if coords is not None and (coords.ndim != 2 or coords.shape[1] < 3 or coords.dtype.kind not in "fiu"):
            raise self.files.bad("responses/meta/cell_motor_coordinates.npy",
                                 f"shape {coords.shape} {coords.dtype}; expected numbers (N, 3)")
        if unit_ids is not None and unit_ids.dtype.kind not in "iu":
            raise self.files.bad("responses/meta/unit_ids.npy", f"dtype {unit_ids.dtype}; expected integers")
        columns = {"scan_key": pa.array([self.session.key] * n, pa.string()),
                   "neuron_idx": pa.array(np.arange(n, dtype=np.int32)),
                   "unit_id": pa.array((unit_ids if unit_ids is not None else np.arange(n)).astype(np.int64)),
                   "area": strings(meta.get("area"), n), "layer": strings(meta.get("layer"), n)}
        for axis, name in enumerate("xyz"):
            columns[name] = pa.array(coords[:, axis].astype(np.float64) if coords is not None else [None] * n,
                                     pa.float64())
        others = {k: meta[k] for k in ("cell_ids", "roi_ids") if meta.get(k) is not None}
        extra = [{k: v[i].item() if hasattr(v[i], "item") else v[i] for k, v in others.items()} for i in range(n)]
        if unit_ids is None:
            for row in extra:
                row["unit_id"] = "neuron_idx (the session has no responses/meta/unit_ids.npy)"
        columns["extra"] = pa.array([_json(row) if row else None for row in extra], pa.string())
        return pa.table(columns)

    def _trial_table(self, image_hashes: dict[int, str]) -> pa.Table:
        trials = self.session.trials
        first_seen: dict[str, int] = {}
        image_ids = [first_seen.setdefault(image_hashes[t.index], len(first_seen)) for t in trials]
        n = len(trials)
        trial_idx = [t.extra.get("trial_idx") for t in trials]
        return pa.table({
            "scan_key": pa.array([self.session.key] * n, pa.string()),
            "trial_id": pa.array([t.index for t in trials], pa.int32()),
            "tier": pa.array([t.tier for t in trials], pa.string()),
            "image_id": pa.array(image_ids, pa.int64()),
            "image_class": pa.array([None] * n, pa.string()),
            "trial_idx": pa.array([v if isinstance(v, int) and not isinstance(v, bool) else None
                                   for v in trial_idx], pa.int64()),
            "image_hash": pa.array([image_hashes[t.index] for t in trials], pa.string()),
            "extra": pa.array([_json(t.extra) if t.extra else None for t in trials], pa.string()),
            "n_frames": pa.array([t.n_frames for t in trials], pa.int32()),
        })

    def _write_trial_means(self) -> None:
        """Each sequence's per-signal means over each stimulus trial (``session/windows.py``)."""
        trials = self.session.trials
        for name, modality in self.session.modalities.items():
            if not isinstance(modality, Sequence) or not trials:
                continue
            sums = getattr(self, "window_sums", {}).get(name)
            means, counts = sums.result() if sums is not None else window_means(modality, trials)
            n = len(trials)
            values = np.concatenate(means)
            flat = pa.array(values, mask=~np.isfinite(values))  # no finite sample in the window: NULL
            lists = pa.FixedSizeListArray.from_arrays(flat, modality.data.shape[1]).cast(pa.list_(pa.float64()))
            self._insert("trial_means", pa.table({
                "scan_key": pa.array([self.session.key] * n, pa.string()),
                "trial_id": pa.array([t.index for t in trials], pa.int32()),
                "modality": pa.array([name] * n, pa.string()),
                "n_samples": pa.array(counts, pa.int32()),
                "mean": lists}))

    def _write_area_sums(self) -> None:
        table = area_sum_table(self.session, None if self.area_sums is None else self.area_sums.result())
        if table is not None:
            self._insert("area_frame_responses", table)

    def _write_nan_rows(self) -> None:
        table = nan_row_table(self.session, {name: found.result() for name, found in self.nan_rows.items()})
        if table.num_rows:
            self._insert("nan_rows", table)

    def _stimulus_trial_table(self) -> pa.Table:
        trials = self.session.trials
        members = stimulus_members(self.session)
        n = len(trials)
        return pa.table({
            "scan_key": pa.array([self.session.key] * n, pa.string()),
            "trial_id": pa.array([t.index for t in trials], pa.int32()),
            "trial_key": pa.array([t.key for t in trials], pa.string()),
            "stimulus_name": pa.array([t.stimulus_name for t in trials], pa.string()),
            "stimulus_kind": pa.array([t.modality for t in trials], pa.string()),
            "stimulus_type": pa.array([None if t.stimulus_type is None else str(t.stimulus_type) for t in trials],
                                      pa.string()),
            "first_frame": pa.array([t.first_frame for t in trials], pa.int32()),
            "onset_time": pa.array([t.onset for t in trials], pa.float64()),
            "end_time": pa.array([t.end for t in trials], pa.float64()),
            "valid_trial": pa.array([t.valid for t in trials], pa.bool_()),
            "stimulus_file": pa.array([members.get(t.index) for t in trials], pa.string()),
        })

    def _scan_row(self, dtypes: dict[int, str]) -> pa.Table:
        s = self.session
        ids = _scan_ids(s)
        seqs = {name: m for name, m in s.modalities.items() if isinstance(m, Sequence)}

        def dtype_of(name: str) -> str:
            return seqs[name].dtype.str if name in seqs else ""

        stimulus_dtypes = [dtypes[i] for i in stimulus_members(s)]
        image_shape = list(s.trials[0].image_size) if s.trials else []
        size = Path(self.path).stat().st_size if Path(self.path).is_file() else \
            sum(self.files.size(n) for n in self.files.names())
        return pa.table({
            "scan_key": [s.key], "name": [s.folder_name],
            "animal_id": pa.array([ids[0]], pa.int64()), "session": pa.array([ids[1]], pa.int64()),
            "scan_idx": pa.array([ids[2]], pa.int64()), "kind": [KIND],
            "n_trials": pa.array([len(s.trials)], pa.int32()),
            "n_neurons": pa.array([_n_neurons(s)], pa.int32()),
            "image_shape": pa.array([image_shape], pa.list_(pa.int32())),
            "image_dtype": [stimulus_dtypes[0] if stimulus_dtypes else ""],
            "response_dtype": [dtype_of("responses")], "behavior_dtype": [dtype_of("treadmill")],
            "pupil_center_dtype": [dtype_of("eye_tracker")],
            "source_name": [Path(self.path).name], "source_size": pa.array([size], pa.int64()),
            "source_sha256": [content_digest(self.digests)],
            "content_sha256": [content_digest(self.digests)],
            "ingested_at": pa.array([datetime.now(timezone.utc).replace(tzinfo=None)], pa.timestamp("us")),
            "scandb_version": [__version__],
        })


class _RowFeeder:
    """Byte blocks of a sequence's file -> whole rows for its accumulators (``WindowSums``,
    ``AreaSums``, ``NanRows``): the first ``skip`` bytes (a ``.npy`` header) dropped, a row
    split across blocks carried to the next."""

    def __init__(self, accumulators: list, dtype: np.dtype, n_signals: int, skip: int):
        self.accumulators, self.dtype, self.n_signals, self.skip = accumulators, dtype, n_signals, skip
        self.row_bytes = dtype.itemsize * n_signals
        self.row = 0
        self.carry = b""

    def __call__(self, block: bytes) -> None:
        if self.skip:
            cut = min(self.skip, len(block))
            block, self.skip = block[cut:], self.skip - cut
        if self.carry:
            block, self.carry = self.carry + block, b""
        whole = len(block) // self.row_bytes * self.row_bytes
        if whole < len(block):
            self.carry = bytes(block[whole:])
        if whole:
            rows = np.frombuffer(block, dtype=self.dtype, count=whole // self.dtype.itemsize).reshape(-1, self.n_signals)
            for accumulator in self.accumulators:
                accumulator.add(self.row, rows)
            self.row += len(rows)


def area_groups(session: Session) -> tuple[list[tuple], list[np.ndarray]]:
    """The responses' (area, layer) groups in order of first neuron, and each one's columns."""
    from .tables import groups_of

    groups = groups_of(session.neurons(), _n_neurons(session))
    return [key for key, _ in groups], [columns for _, columns in groups]


def area_sum_table(session: Session, sums: list[np.ndarray] | None = None) -> pa.Table | None:
    """Per stimulus trial and (area, layer), the responses' sum at each sample of the trial's
    window (``session/windows.py``), as ``area_frame_responses`` holds for video scans; None
    without responses or trials. ``sums``: ``AreaSums.result()`` when the ingest fed it."""
    responses, trials = session.modalities.get("responses"), session.trials
    if not isinstance(responses, Sequence) or not trials:
        return None
    keys, columns = area_groups(session)
    if sums is None:
        sums = area_sums(responses, trials, columns)
    rows = [(t.index, g, c, s) for t, per_trial in zip(trials, sums) for g, c, s in zip(keys, columns, per_trial)]
    lengths = np.array([len(s) for *_, s in rows], dtype=np.int64)
    values = np.concatenate([s for *_, s in rows]) if rows else np.empty(0)
    return pa.table({
        "scan_key": pa.array([session.key] * len(rows), pa.string()),
        "trial_id": pa.array([t for t, *_ in rows], pa.int32()),
        "area": pa.array([g[0] for _, g, _, _ in rows], pa.string()),
        "layer": pa.array([g[1] for _, g, _, _ in rows], pa.string()),
        "n_neurons": pa.array([len(c) for _, _, c, _ in rows], pa.int32()),
        "response_sum": pa.LargeListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(lengths)])),
                                                      pa.array(values, pa.float64()))})


def nan_row_table(session: Session, found: dict[str, np.ndarray] | None = None) -> pa.Table:
    """Per sequence, the rows holding a NaN (``session/gaps.py``): what the nan filter of a
    training dataset needs, without reading the matrices again. ``found``: those the ingest
    found as it copied them (the others are scanned here)."""
    found = found or {}
    names, rows = [], []
    for name, modality in session.modalities.items():
        if isinstance(modality, Sequence):
            names.append(name)
            rows.append(found[name] if name in found else gaps.nan_rows(modality.data))
    return pa.table({"scan_key": pa.array([session.key] * len(names), pa.string()),
                     "modality": pa.array(names, pa.string()),
                     "rows": pa.array([r.tolist() for r in rows], pa.list_(pa.int64()))})


class _Label:
    """What ``writer._explain`` reads of a scan: its label."""

    def __init__(self, label: str):
        self.label = label


def _scan_ids(session: Session) -> tuple[int | None, int | None, int | None]:
    """animal, session and scan numbers: meta.json's scan_key, else a key of three numbers."""
    scan_key = (session.meta or {}).get("scan_key")
    if isinstance(scan_key, dict):
        values = [scan_key.get(k) for k in ("animal_id", "session", "scan_idx")]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return tuple(values)
    match = re.fullmatch(r"(\d+)-(\d+)-(\d+)", session.key)
    if match:
        return tuple(int(g) for g in match.groups())
    return (None, None, None)


def _json(value) -> str:
    return json.dumps(value, sort_keys=False, default=str)
