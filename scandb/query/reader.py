"""One scan's arrays, read once and kept: what every fetch of that scan needs.

A ``ScanReader`` holds a scan's response matrix memory-mapped, its per-trial behavior,
pupil position and image paths as small arrays indexed by trial id, and the statistics
its normalisation uses. After the first fetch of a scan, a batch of trials costs no SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import duckdb
import numpy as np
import pyarrow as pa

from ..catalog.database import Database
from ..errors import DatabaseError, UsageError
from ..keys import ARROW_BATCH, BEHAVIOR_COLUMNS, PUPIL_COLUMNS, STIMULUS_KEY
from ..maintenance.digests import store_folder
from ..source.npyfile import MAX_HEADER, NpyError, parse_header
from ..source.npyfile import load as load_npy
from ..store.folder import Folder
from ..store.frames import FrameStore, read_windows
from ..store.meta import stored_content
from .normalize import NEEDED, normalize


def read_statistic(conn: duckdb.DuckDBPyConnection, scan: str, variable: str, stat: str,
                   source: str = "all", store: Folder | None = None) -> np.ndarray | None:
    """One meta/statistics array with its stored dtype and shape, or None when not stored;
    from its row, or from its file in the database's ``store``."""
    row = conn.execute("""
        SELECT s.dtype, s.shape, s.data, f.stored_as FROM statistics s
        LEFT JOIN scan_files f ON f.scan_key = s.scan_key
             AND f.path = 'meta/statistics/' || s.variable || '/' || s.source || '/' || s.stat || '.npy'
        WHERE s.scan_key = ? AND s.variable = ? AND s.source = ? AND s.stat = ?""",
                       [scan, variable, source, stat]).fetchone()
    if row is None:
        return None
    dtype, shape, data, stored_as = row
    if data is not None:
        return np.array(data, dtype=np.float64).astype(dtype).reshape(shape)
    array = None
    if stored_as is not None:
        try:
            array = load_npy(stored_content(store or store_folder(conn), stored_as))
        except NpyError as exc:
            raise DatabaseError(f"{stored_as}: statistic {variable}/{source}/{stat} of scan {scan} unreadable "
                                f"({exc}); run 'scandb verify'") from None
    if array is None or array.dtype.str != dtype or list(array.shape) != list(shape):
        raise DatabaseError(f"scan {scan}: statistic {variable}/{source}/{stat} has no values or a file of "
                            f"another shape ({stored_as}); run 'scandb verify'")
    return array.copy()


IDENTITY = "ingested_at::VARCHAR || ' ' || source_sha256"
"""What differs between two ingests of one scan key (a replace): a reader of the scan's
older ingest is stale, one of the same ingest is not, whatever else was written since."""


class ScanReader:
    """Fetches rows of one scan; everything is read on first use and kept."""

    def __init__(self, database: Database, scan: str, n_trials: int, n_neurons: int,
                 image_shape: tuple[int, ...], image_dtype: str, behavior_dtype: str, pupil_dtype: str,
                 kind: str = "static"):
        self.database = database
        self.kind = kind
        self.frames = image_shape[-1] if kind == "dynamic" else None
        """T, the padded frames of a dynamic scan's trials."""
        self.scan = scan
        self.n_trials = n_trials
        self.n_neurons = n_neurons
        self.image_shape = image_shape
        self.image_dtype = np.dtype(image_dtype)
        self.dtypes = {"behavior": np.dtype(behavior_dtype), "pupil_center": np.dtype(pupil_dtype)}
        self._statistics: dict[str, dict[str, np.ndarray]] = {}
        self.identity: str | None = None
        """The scan's ingest this reader reads (see ``IDENTITY``)."""
        self.image_cache: dict[str, np.ndarray] | None = None
        """Static images already read, by path, when the caller asked to keep them in memory."""
        self.read_rows = False
        """Read static response rows with ``preadv`` instead of from the memory map (slower per
        row, but the file's pages are never mapped into this process): set in DataLoader
        workers, where every worker would otherwise count each page it touched."""

    @classmethod
    def open(cls, database: Database, scan: str) -> "ScanReader | None":
        """The reader of a scan, or None when the database holds no such scan."""
        found = database.conn.execute(
            "SELECT n_trials, n_neurons, image_shape, image_dtype, behavior_dtype, pupil_center_dtype, kind, "
            f"{IDENTITY} FROM scans WHERE scan_key = ?", [scan]).fetchone()
        if found is None:
            return None
        n_trials, n_neurons, shape, image_dtype, behavior_dtype, pupil_dtype, kind, identity = found
        reader = cls(database, scan, n_trials, n_neurons, tuple(shape), image_dtype, behavior_dtype, pupil_dtype,
                     kind)
        reader.identity = identity
        return reader

    @cached_property
    def store(self) -> Folder:
        """Where the scan's files are: every read below goes through it."""
        return self.database.store

    @property
    def stimulus(self) -> str:
        return STIMULUS_KEY[self.kind]

    # -- per-trial arrays -----------------------------------------------------------------

    @cached_property
    def _trials(self) -> dict[str, np.ndarray]:
        if self.kind == "dynamic":
            return self._dynamic_trials()
        rows = self.database.conn.execute(f"""
            SELECT t.trial_id, {', '.join(BEHAVIOR_COLUMNS + PUPIL_COLUMNS)}, i.path
            FROM trials t JOIN behavior b USING (scan_key, trial_id) JOIN images i USING (image_hash)
            WHERE t.scan_key = ? ORDER BY t.trial_id""", [self.scan]).fetchnumpy()
        if not np.array_equal(rows["trial_id"], np.arange(self.n_trials)):
            raise DatabaseError(f"scan {self.scan}: trials, behavior or images rows are incomplete; "
                                "run 'scandb verify'")
        return {"behavior": np.column_stack([rows[c] for c in BEHAVIOR_COLUMNS]).astype(self.dtypes["behavior"]),
                "pupil_center": np.column_stack([rows[c] for c in PUPIL_COLUMNS]).astype(self.dtypes["pupil_center"]),
                "image_paths": np.asarray(rows["path"], dtype=object)}

    def _dynamic_trials(self) -> dict[str, np.ndarray]:
        """Behavior and pupil position (n_trials, 2, T) from frame_behavior, video paths, valid lengths."""
        table = self.database.conn.execute("""
            SELECT t.trial_id, t.n_frames, b.pupil_dilation, b.running_speed, b.pupil_x, b.pupil_y, i.path,
                   t.image_hash
            FROM trials t JOIN frame_behavior b USING (scan_key, trial_id) JOIN images i USING (image_hash)
            WHERE t.scan_key = ? ORDER BY t.trial_id""", [self.scan]).to_arrow_reader(ARROW_BATCH).read_all()
        if not np.array_equal(table["trial_id"].to_numpy(), np.arange(self.n_trials)):
            raise DatabaseError(f"scan {self.scan}: trials, frame_behavior or images rows are incomplete; "
                                "run 'scandb verify'")

        copies = FrameStore(self.store)

        def frames(column: str) -> np.ndarray:
            values = table[column].combine_chunks().flatten().to_numpy(zero_copy_only=False)
            return values.reshape(self.n_trials, self.frames)

        return {"behavior": np.stack([frames("pupil_dilation"), frames("running_speed")], axis=1)
                .astype(self.dtypes["behavior"]),
                "pupil_center": np.stack([frames("pupil_x"), frames("pupil_y")], axis=1)
                .astype(self.dtypes["pupil_center"]),
                "image_paths": np.asarray(table["path"].to_pylist(), dtype=object),
                "copy_keys": np.asarray([copies.key(h) for h in table["image_hash"].to_pylist()], dtype=object),
                "n_frames": table["n_frames"].to_numpy()}

    @cached_property
    def _withheld(self) -> dict[str, np.ndarray]:
        """Per trial id: responses / behavior withheld (zero-filled in the released data)."""
        rows = self.database.conn.execute(
            "SELECT trial_id, coalesce(responses_withheld, false) AS r, coalesce(behavior_withheld, false) AS b "
            "FROM trials WHERE scan_key = ? ORDER BY trial_id", [self.scan]).fetchnumpy()
        responses = np.zeros(self.n_trials, bool)
        behavior = np.zeros(self.n_trials, bool)
        responses[rows["trial_id"]] = rows["r"]
        behavior[rows["trial_id"]] = rows["b"]
        return {"responses": responses, "behavior": behavior, "pupil_center": behavior}

    def refuse_withheld(self, key: str, trial_ids: np.ndarray) -> None:
        """Normalising zero-filled data would train on zeros: a UsageError naming the trials."""
        flags = self._withheld.get(key)
        if flags is None:
            return
        withheld = np.unique(trial_ids[flags[trial_ids]])
        if len(withheld):
            column = "responses_withheld" if key == "responses" else "behavior_withheld"
            raise UsageError(f"scan {self.scan}: {len(withheld)} selected trial{'s' if len(withheld) != 1 else ''} "
                             f"(e.g. trial {withheld[0]}) {'have' if len(withheld) != 1 else 'has'} withheld {key} "
                             f"(all zero in the released data; trials.{column}): leave them out "
                             f"(WHERE NOT {column}) or pass normalize=False")

    def n_frames(self, trial_ids: np.ndarray) -> np.ndarray:
        """Valid lengths of these dynamic trials."""
        return self._trials["n_frames"][trial_ids]

    def rows(self, key: str, trial_ids: np.ndarray, frames: slice = slice(None)) -> np.ndarray:
        """behavior or pupil_center rows of these trials, in the stored dtype ((n, 2, F) for a
        dynamic scan: ``frames`` picks the window)."""
        rows = self._trials[key]
        if self.kind != "dynamic":
            return rows[trial_ids]
        if isinstance(frames, slice):
            return np.ascontiguousarray(rows[trial_ids][..., frames])
        firsts, width = frames[:, 0].tolist(), frames.shape[1]
        out = np.empty((len(trial_ids), *rows.shape[1:-1], width), rows.dtype)
        for row, (trial, first) in enumerate(zip(np.asarray(trial_ids).tolist(), firsts)):
            out[row] = rows[trial, ..., first:first + width]
        return out

    def images(self, trial_ids: np.ndarray, frames: slice = slice(None)) -> np.ndarray:
        """The trials' images (or videos, ``frames`` of them), each distinct file read once,
        in the stored dtype."""
        if self.kind == "dynamic":
            return self._videos(np.asarray(trial_ids), frames)
        return self._static_images(self._trials["image_paths"][trial_ids].tolist())

    def _static_images(self, paths: list[str]) -> np.ndarray:
        """Static images, each file read by one ``preadv`` straight into its row of the batch.

        The header goes to a scratch buffer and is compared with the scan's usual header
        (its files normally share one byte for byte); a file with any other header, or of
        another length, is parsed in full. Opening files by string and skipping numpy's
        parser is what makes re-reading a train tier each epoch cheap (BENCHMARKS.md), and
        nothing is memory-mapped, so a DataLoader worker holds only its batch.
        """
        out = np.empty((len(paths), *self.image_shape), self.image_dtype)
        if not paths:
            return out
        header = self._usual_image_header(paths[0])
        rows = out.reshape(len(paths), -1).view(np.uint8)
        scratch, beyond = bytearray(len(header or b"")), bytearray(1)
        cache = self.image_cache
        for row, path in enumerate(paths):
            if cache is not None and path in cache:
                out[row] = cache[path]
                continue
            self._read_image(path, header, scratch, beyond, out, row, rows[row])
            if cache is not None:
                cache[path] = out[row].copy()  # a copy: callers may change the batch they get
        return out

    def _read_image(self, key: str, header: bytes | None, scratch: bytearray, beyond: bytearray,
                    out: np.ndarray, row: int, target: np.ndarray) -> None:
        """One image file into ``out[row]``; ``target`` is that row as bytes."""
        if header is not None:
            try:
                read = self.store.read_into(key, [scratch, target, beyond])
            except OSError as exc:
                raise self._unreadable(key, exc) from None
            if read == len(scratch) + len(target) and scratch == header:
                return
        out[row] = self._image_file(key)

    def _unreadable(self, key: str, exc: OSError) -> DatabaseError:
        return DatabaseError(f"{self.store.path(key)}: image file unreadable ({exc.strerror or exc}); "
                             "run 'scandb verify'")

    def _usual_image_header(self, key: str) -> bytes | None:
        """The header bytes of this scan's images, learnt from one file (None when that file is
        not a C-ordered array of the scan's image shape and dtype: every file is then parsed)."""
        if "_image_header" not in self.__dict__:
            prefix = bytearray(MAX_HEADER + 12)
            try:
                del prefix[self.store.read_into(key, [prefix]):]
                found = parse_header(bytes(prefix))
            except OSError as exc:
                raise self._unreadable(key, exc) from None
            except NpyError:
                found = None
            usual = found is not None and not found.fortran_order and found.shape == self.image_shape \
                and found.dtype == self.image_dtype
            self._image_header = bytes(prefix[:found.data_offset]) if usual else None
        return self._image_header

    def _image_file(self, key: str) -> np.ndarray:
        """One image file parsed in full, checked against the scan's image shape."""
        path = self.store.path(key)
        try:
            image = load_npy(self.store.read(key))
        except OSError as exc:
            raise self._unreadable(key, exc) from None
        except NpyError as exc:
            raise DatabaseError(f"{path}: image file is not the stored image ({exc}); run 'scandb verify'") from None
        if image.shape != self.image_shape:
            raise DatabaseError(f"{path}: image file holds shape {image.shape}, the scan's images are "
                                f"{self.image_shape}; run 'scandb verify'")
        return image

    def _videos(self, trial_ids: np.ndarray, frames) -> np.ndarray:
        """(n, H, W, F) video windows, each read with one ``preadv`` from its video's
        time-major copy into an (n, F, H, W) buffer, returned as a view in the source layout
        (time-major strides, as responses). A video without a copy is cut from its source file."""
        if isinstance(frames, slice):
            first, stop, _ = frames.indices(self.frames)
            firsts, width = [first] * len(trial_ids), stop - first
        else:
            firsts, width = frames[:, 0].tolist(), frames.shape[1]
        out = np.empty((len(trial_ids), width, *self.image_shape[:-1]), self.image_dtype)
        copies = self._trials["copy_keys"][trial_ids].tolist()
        try:
            missing = read_windows(self.store, copies, firsts, out, self.frames)
        except OSError as exc:
            raise DatabaseError(f"{exc.filename}: time-major video copy of scan {self.scan} unreadable "
                                f"({exc.strerror or exc}); run 'scandb verify'") from None
        if missing:
            keys = self._trials["image_paths"][trial_ids]
            for row in missing:
                video = np.load(self.store.path(keys[row]), mmap_mode="r", allow_pickle=False)
                out[row] = np.moveaxis(video[..., firsts[row]:firsts[row] + width], -1, 0)
        return out.transpose(0, 2, 3, 1)

    # -- responses ------------------------------------------------------------------------

    def responses(self, trial_ids: np.ndarray, frames: slice = slice(None)) -> np.ndarray:
        """Rows of the response matrix, from its file (or from SQL for scans ingested
        before response matrices existed). For a dynamic scan, (n, N, F) read from its
        time-major matrix, only the window's bytes: a transposed view of an (n, F, N)
        buffer, so the source layout's shape without a second, transposing copy (its
        strides are time-major; ``np.ascontiguousarray`` gives a C-ordered copy)."""
        if self.kind == "dynamic":
            if isinstance(frames, slice):
                window = self._matrix[trial_ids, frames, :]
            else:  # one window per row, each a slice of consecutive frames: (n, F, N)
                window = self._read_windows(np.asarray(trial_ids), frames[:, 0], frames.shape[1])
            return window.transpose(0, 2, 1)
        if self._matrix is not None:
            if self.read_rows and "_matrix_file" in self.__dict__:
                return self._read_rows(np.asarray(trial_ids))
            return self._matrix[trial_ids]
        conn = self.database.conn
        conn.register("_wanted", pa.table({"trial_id": pa.array(trial_ids, pa.int64()),
                                           "pos": pa.array(np.arange(len(trial_ids)))}))
        try:
            table = conn.execute(
                "SELECT r.response FROM _wanted w JOIN responses r ON r.trial_id = w.trial_id AND r.scan_key = ? "
                "ORDER BY w.pos", [self.scan]).to_arrow_reader(ARROW_BATCH).read_all()
        finally:
            conn.unregister("_wanted")
        column = table["response"].combine_chunks()
        values = column.values.to_numpy(zero_copy_only=False).astype(np.float32)
        return values.reshape(len(column), self.n_neurons).copy()

    def _read_rows(self, trial_ids: np.ndarray) -> np.ndarray:
        """Rows of the static response matrix, one ``preadv`` each into a fresh buffer: they
        come from the page cache without the file's pages being mapped into this process."""
        key, offset = self._matrix_file
        out = np.empty((len(trial_ids), self.n_neurons), np.float32)
        rows = out.view(np.uint8)
        row_bytes = rows.shape[1]
        self._read_matrix([(key, offset + trial * row_bytes, memoryview(rows[row]))
                           for row, trial in enumerate(trial_ids.tolist())], parallel=False)
        return out

    def _read_matrix(self, jobs: list[tuple[str, int, memoryview]], parallel: bool = True) -> None:
        """Byte ranges of the response matrix into their buffers; a missing or short file is
        a DatabaseError naming it."""
        for got, (key, _, buffer) in zip(self.store.read_ranges(jobs, parallel), jobs):
            if isinstance(got, OSError):
                raise DatabaseError(f"{self.store.path(key)}: response matrix of scan {self.scan} unreadable "
                                    f"({got.strerror or got}); run 'scandb verify'")
            if got != len(buffer):
                raise DatabaseError(f"{self.store.path(key)}: response matrix of scan {self.scan} is shorter "
                                    "than its shape; run 'scandb verify'")

    def _read_windows(self, trial_ids: np.ndarray, firsts: np.ndarray, width: int) -> np.ndarray:
        """(n, F, N) windows of the time-major matrix, each one read into its rows, several
        at once (faster cold than copying out of the memory map, whose pages each cost a fault)."""
        window = np.empty((len(trial_ids), width, self.n_neurons), np.float32)
        if self._matrix is None or not len(window):
            return window
        if "_matrix_file" not in self.__dict__:  # a matrix held in memory, not mapped
            for row, (trial, first) in enumerate(zip(trial_ids.tolist(), firsts.tolist())):
                window[row] = self._matrix[trial, first:first + width]
            return window
        key, offset = self._matrix_file
        frame_bytes = self.n_neurons * 4
        self._read_matrix([(key, offset + (trial * self.frames + first) * frame_bytes, memoryview(window[row]).cast("B"))
                           for row, (trial, first) in enumerate(zip(trial_ids.tolist(), firsts.tolist()))])
        return window

    @cached_property
    def _matrix(self) -> np.ndarray | None:
        """The (n_trials, n_neurons) matrix, memory-mapped read-only, or None."""
        if "_matrix_row" not in self.__dict__:
            self._matrix_row = self.database.conn.execute("SELECT path, n_trials, n_neurons FROM response_matrices "
                                                          "WHERE scan_key = ?", [self.scan]).fetchone()
        row = self._matrix_row
        if row is None:
            return None
        path = self.store.path(row[0])  # memory-mapped: the local store's fast path
        try:
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
            matrix = np.asarray(mapped)
            self._matrix_file = (row[0], mapped.offset)
        except OSError as exc:
            raise DatabaseError(f"{path}: response matrix of scan {self.scan} unreadable "
                                f"({exc.strerror or exc}); run 'scandb verify'") from None
        shape = (row[1], self.frames, row[2]) if self.kind == "dynamic" else (row[1], row[2])
        if matrix.shape != shape or matrix.dtype != np.float32:
            raise DatabaseError(f"{path}: response matrix of scan {self.scan} is {matrix.shape} "
                                f"{matrix.dtype}, expected {shape} float32; run 'scandb verify'")
        return matrix

    def __getstate__(self) -> dict:
        """A pickled reader (a DataLoader worker's copy) maps the matrix file again rather
        than carrying its contents."""
        state = self.__dict__.copy()
        if state.get("_matrix_row") is not None:
            state.pop("_matrix", None)
        return state

    def neuron_indexes(self, wanted: np.ndarray, by: str = "neuron_idx") -> np.ndarray:
        """Positions in the response rows of neurons named by ``neuron_idx`` or ``unit_id``."""
        wanted = np.asarray(wanted).astype(np.int64, copy=False).reshape(-1)
        if by == "neuron_idx":
            unknown = wanted[(wanted < 0) | (wanted >= self.n_neurons)]
            if len(unknown):
                raise UsageError(f"scan {self.scan!r} has neurons 0..{self.n_neurons - 1}; neurons= names "
                                 f"{_few(unknown)}")
            return wanted
        known = self.database.conn.execute("SELECT unit_id, neuron_idx FROM neurons WHERE scan_key = ?",
                                           [self.scan]).fetchnumpy()
        lookup = dict(zip(known["unit_id"].tolist(), known["neuron_idx"].tolist()))
        unknown = [w for w in wanted.tolist() if w not in lookup]
        if unknown:
            raise UsageError(f"scan {self.scan!r} has no neurons with unit_id {_few(unknown)}")
        return np.array([lookup[w] for w in wanted.tolist()], dtype=np.int64)

    # -- normalisation --------------------------------------------------------------------

    def normalized(self, key: str, block: np.ndarray, neurons: np.ndarray | None = None,
                   frames: slice = slice(None)) -> np.ndarray:
        """Rows of ``key`` normalised with this scan's statistics (float32); a dynamic scan's
        time-resolved statistics are cut to the same ``frames``."""
        return normalize(key, block, self._statistics_of(key), neurons, frames)

    def _statistics_of(self, key: str) -> dict[str, np.ndarray]:
        if key not in self._statistics:
            found = {stat: read_statistic(self.database.conn, self.scan, key, stat, store=self.store)
                     for stat in NEEDED[key]}
            missing = [f"meta/statistics/{key}/all/{stat}.npy" for stat, value in found.items() if value is None]
            if missing:
                raise UsageError(f"scan {self.scan}: normalize=True needs {' and '.join(missing)}, which the scan "
                                 "did not ship; pass normalize=False or ingest the scan with its statistics")
            self._statistics[key] = found
        return self._statistics[key]


def _few(values, limit: int = 5) -> str:
    values = list(values)
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


class Readers:
    """The readers of the scans fetched so far, by scan key."""

    def __init__(self, database: Database):
        self.database = database
        self._readers: dict[str, ScanReader] = {}
        self._stamp: tuple | None = None
        """The database's stamp taken before any kept reader was read (see ``follow``)."""

    def get(self, scan: str) -> ScanReader:
        """The scan's reader; an unknown scan is a UsageError naming the scans there are."""
        reader = self._readers.get(scan)
        if reader is None:
            if not self._readers:  # what a later call compares with: taken before the reader reads
                self._stamp = self.database.stamp()
            reader = ScanReader.open(self.database, scan)
            if reader is None:
                raise UsageError(f"no scan {scan!r} in the database (it holds: "
                                 f"{', '.join(self.known()) or 'nothing'})")
            self._readers[scan] = reader
        return reader

    def known(self) -> list[str]:
        return [r[0] for r in self.database.conn.execute("SELECT scan_key FROM scans ORDER BY 1").fetchall()]

    def clear(self) -> None:
        """Forget every reader: a write may have replaced a scan."""
        self._readers.clear()

    def follow(self, stamp_now: Callable[[], tuple]) -> None:
        """When the database changed since the last call (another process wrote), forget the
        readers of scans that were removed or replaced; the others stay valid. Without kept
        readers there is nothing to check (a short command never asks for the stamp)."""
        if not self._readers:
            return
        stamp = stamp_now()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        kept = list(self._readers)
        now = dict(self.database.conn.execute(f"SELECT scan_key, {IDENTITY} FROM scans WHERE scan_key IN "
                                              f"({', '.join('?' * len(kept))})", kept).fetchall())
        self._readers = {scan: reader for scan, reader in self._readers.items() if now.get(scan) == reader.identity}
