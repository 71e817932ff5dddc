"""The reader of a static scan: one image, one response row, behavior and pupil position per trial."""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pyarrow as pa

from ..errors import DatabaseError
from ..keys import ARROW_BATCH, BEHAVIOR_COLUMNS, PUPIL_COLUMNS
from ..source.npyfile import MAX_HEADER, NpyError, parse_header
from ..source.npyfile import load as load_npy
from ..store.images import read_image_file
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
            SELECT t.trial_id, {', '.join(BEHAVIOR_COLUMNS + PUPIL_COLUMNS)}, i.path,
                   coalesce(i.pack_offset, -1) AS pack_offset, coalesce(i.pack_length, -1) AS pack_length
            FROM trials t JOIN behavior b USING (scan_key, trial_id) JOIN images i USING (image_hash)
            WHERE t.scan_key = ? ORDER BY t.trial_id""", [self.scan]).fetchnumpy()
        if not np.array_equal(rows["trial_id"], np.arange(self.n_trials)):
            raise DatabaseError(f"scan {self.scan}: trials, behavior or images rows are incomplete; "
                                "run 'scandb verify'")
        return {"behavior": np.column_stack([rows[c] for c in BEHAVIOR_COLUMNS]).astype(self.dtypes["behavior"]),
                "pupil_center": np.column_stack([rows[c] for c in PUPIL_COLUMNS]).astype(self.dtypes["pupil_center"]),
                "image_paths": np.asarray(rows["path"], dtype=object),
                "pack_offsets": np.asarray(rows["pack_offset"], dtype=np.int64),
                "pack_lengths": np.asarray(rows["pack_length"], dtype=np.int64)}

    def rows(self, key: str, trial_ids: np.ndarray, frames=None) -> np.ndarray:
        """behavior or pupil_center rows of these trials, in the stored dtype."""
        return self._trials[key][trial_ids]

    def images(self, trial_ids: np.ndarray, frames=None) -> np.ndarray:
        """The trials' images, each distinct file read once, in the stored dtype."""
        trials = self._trials
        return self._static_images(trials["image_paths"][trial_ids].tolist(),
                                   trials["pack_offsets"][trial_ids].tolist(), trials["pack_lengths"][trial_ids].tolist())

    def _static_images(self, paths: list[str], offsets: list[int] | None = None,
                       lengths: list[int] | None = None) -> np.ndarray:
        """Images, each file read by one ``preadv`` straight into its row of the batch; images
        kept in packs (a store on a bucket, ``store/packs.py``; offset -1: not packed) by one
        ``read_ranges`` call for the whole batch, neighbouring images in one request.

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
        offsets = offsets if offsets is not None else [-1] * len(paths)
        lengths = lengths if lengths is not None else [-1] * len(paths)
        cache = self.image_cache
        names = [(path, offset) for path, offset in zip(paths, offsets)]
        rows = out.reshape(len(paths), -1).view(np.uint8)
        todo = []
        for row, name in enumerate(names):
            if cache is not None and name in cache:
                out[row] = cache[name]
            else:
                todo.append(row)
        packed = [row for row in todo if offsets[row] >= 0]
        loose = [row for row in todo if offsets[row] < 0]
        if packed:
            self._read_packed(packed, paths, offsets, lengths, out, rows)
        if loose:
            self.store.prefetch(dict.fromkeys(paths[row] for row in loose))
            header = self._usual_image_header(paths[loose[0]])
            scratch, beyond = bytearray(len(header or b"")), bytearray(1)
            for row in loose:
                self._read_image(paths[row], header, scratch, beyond, out, row, rows[row])
        if cache is not None:
            for row in todo:
                cache[names[row]] = out[row].copy()  # a copy: callers may change the batch they get
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

    def _read_packed(self, todo: list[int], paths: list[str], offsets: list[int], lengths: list[int],
                     out: np.ndarray, rows: np.ndarray) -> None:
        """Packed images into their rows of ``out``: each image's whole ``.npy`` file (header
        and pixels, one range: one read of a kept block, not two) into a scratch buffer, all
        ranges in one ``read_ranges`` call; then the header compared with the usual one and
        the pixels copied into the rows at once."""
        first = todo[0]
        header = self._usual_image_header(paths[first], offsets[first], lengths[first])
        pixels = rows.shape[1]
        size = (len(header) + pixels) if header is not None else 0
        usual = [] if header is None else [row for row in todo if lengths[row] == size]
        scratch = np.empty((len(usual), size), np.uint8)
        whole = memoryview(scratch.reshape(-1))
        jobs = [(paths[row], offsets[row], whole[i * size:(i + 1) * size]) for i, row in enumerate(usual)]
        got = self.store.read_ranges(jobs, parallel=False) if jobs else []
        parsed = set(todo) - set(usual)
        if usual:
            same = (scratch[:, :len(header)] == np.frombuffer(header, np.uint8)).all(axis=1).tolist()
            for row, result, ok in zip(usual, got, same):
                if result != size:
                    if isinstance(result, OSError):
                        raise self._unreadable(paths[row], result, offsets[row]) from None
                    parsed.add(row)
                elif not ok:
                    parsed.add(row)
        if usual:
            rows[usual] = scratch[:, size - pixels:]
        for row in sorted(parsed):
            out[row] = self._image_file(paths[row], offsets[row], lengths[row])

    def _unreadable(self, key: str, exc: OSError, offset: int = -1) -> DatabaseError:
        where = f" (the image at byte {offset})" if offset >= 0 else ""
        return DatabaseError(f"{self.store.path(key)}{where}: image file unreadable ({exc.strerror or exc}); "
                             "run 'scandb verify'")

    def _usual_image_header(self, key: str, offset: int = -1, length: int = -1) -> bytes | None:
        """The header bytes of this scan's images, learnt from one file (None when that file is
        not a C-ordered array of the scan's image shape and dtype: every file is then parsed)."""
        if "_image_header" not in self.__dict__:
            prefix = bytearray(MAX_HEADER + 12 if offset < 0 else min(MAX_HEADER + 12, length))
            try:
                if offset < 0:
                    del prefix[self.store.read_into(key, [prefix]):]
                else:
                    read = self.store.read_ranges([(key, offset, memoryview(prefix))], parallel=False)[0]
                    if isinstance(read, OSError):
                        raise read
                    del prefix[read:]
                found = parse_header(bytes(prefix))
            except OSError as exc:
                raise self._unreadable(key, exc, offset) from None
            except NpyError:
                found = None
            usual = found is not None and not found.fortran_order and found.shape == self.image_shape \
                and found.dtype == self.image_dtype
            self._image_header = bytes(prefix[:found.data_offset]) if usual else None
        return self._image_header

    def _image_file(self, key: str, offset: int = -1, length: int = -1) -> np.ndarray:
        """One image file parsed in full, checked against the scan's image shape."""
        path = f"{self.store.path(key)}" + (f" (the image at byte {offset})" if offset >= 0 else "")
        try:
            image = load_npy(read_image_file(self.store, key, *((offset, length) if offset >= 0 else (None, None))))
        except OSError as exc:
            raise self._unreadable(key, exc, offset) from None
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
