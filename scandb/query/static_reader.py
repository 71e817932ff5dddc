"""The reader of a static scan: one image, one response row, behavior and pupil position per trial."""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pyarrow as pa

from ..errors import DatabaseError
from ..keys import ARROW_BATCH, BEHAVIOR_COLUMNS, PUPIL_COLUMNS
from ..source.npyfile import MAX_HEADER, NpyError, parse_header
from ..source.npyfile import load as load_npy
from .reader import ScanReader


class StaticReader(ScanReader):
    """A static scan's trials: images by ``preadv`` into the batch, response rows from the
    memory-mapped matrix (or by ``preadv`` in DataLoader workers, or from SQL for scans
    ingested without a matrix)."""

    kind = "static"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.image_cache: dict[str, np.ndarray] | None = None
        """Images already read, by key, when the caller asked to keep them in memory."""
        self.read_rows = False
        """Read response rows with ``preadv`` instead of from the memory map (slower per
        row, but the file's pages are never mapped into this process): set in DataLoader
        workers, where every worker would otherwise count each page it touched."""

    def matrix_shape(self, n_trials: int, n_neurons: int) -> tuple[int, ...]:
        return (n_trials, n_neurons)

    @cached_property
    def _trials(self) -> dict[str, np.ndarray]:
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

    def rows(self, key: str, trial_ids: np.ndarray, frames=None) -> np.ndarray:
        """behavior or pupil_center rows of these trials, in the stored dtype."""
        return self._trials[key][trial_ids]

    def images(self, trial_ids: np.ndarray, frames=None) -> np.ndarray:
        """The trials' images, each distinct file read once, in the stored dtype."""
        return self._static_images(self._trials["image_paths"][trial_ids].tolist())

    def _static_images(self, paths: list[str]) -> np.ndarray:
        """Images, each file read by one ``preadv`` straight into its row of the batch.

        The header goes to a scratch buffer and is compared with the scan's usual header
        (its files normally share one byte for byte); a file with any other header, or of
        another length, is parsed in full. Opening files by string and skipping numpy's
        parser is what makes re-reading a train tier each epoch cheap (BENCHMARKS.md,
        DataLoader epochs), and
        nothing is memory-mapped, so a DataLoader worker holds only its batch.
        """
        out = np.empty((len(paths), *self.image_shape), self.image_dtype)
        if not paths:
            return out
        cache = self.image_cache
        self.store.prefetch(path for path in dict.fromkeys(paths) if cache is None or path not in cache)
        header = self._usual_image_header(paths[0])
        rows = out.reshape(len(paths), -1).view(np.uint8)
        scratch, beyond = bytearray(len(header or b"")), bytearray(1)
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

    def responses(self, trial_ids: np.ndarray, frames=None) -> np.ndarray:
        """Rows of the response matrix, from its file (or from SQL for scans ingested
        before response matrices existed)."""
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

    def prepare(self, keys, normalize: bool, cache_images: bool = False) -> None:
        super().prepare(keys, normalize)
        if cache_images:
            self.image_cache = {}

    def read_rows_without_mapping(self) -> None:
        """From now on read response rows by ``preadv`` (see ``read_rows``)."""
        self.read_rows = True
