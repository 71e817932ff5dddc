"""The reader of a dynamic (video) scan: windows of frames of each trial's video, responses
and behavior, read from time-major copies so a window is one contiguous read."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from ..errors import DatabaseError
from ..keys import ARROW_BATCH
from ..store.frames import FrameStore, read_windows
from .reader import ScanReader


class DynamicReader(ScanReader):
    """A dynamic scan's trials: ``(H, W, T)`` videos, ``(N, T)`` responses, ``(2, T)``
    behavior and pupil position, padded to T frames; ``frames`` picks a window (a slice for
    every row, or an ``(n, F)`` array of consecutive frame indexes, one row each)."""

    kind = "dynamic"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frames = self.image_shape[-1]
        """T, the padded frames of the scan's trials."""

    def matrix_shape(self, n_trials: int, n_neurons: int) -> tuple[int, ...]:
        return (n_trials, self.frames, n_neurons)

    @cached_property
    def _trials(self) -> dict[str, np.ndarray]:
        """Behavior and pupil position (n_trials, 2, T) from frame_behavior, video keys, valid lengths."""
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

    def n_frames(self, trial_ids: np.ndarray) -> np.ndarray:
        """Valid lengths of these trials."""
        return self._trials["n_frames"][trial_ids]

    def rows(self, key: str, trial_ids: np.ndarray, frames=slice(None)) -> np.ndarray:
        """behavior or pupil_center windows of these trials, (n, 2, F), in the stored dtype."""
        rows = self._trials[key]
        if isinstance(frames, slice):
            return np.ascontiguousarray(rows[trial_ids][..., frames])
        firsts, width = frames[:, 0].tolist(), frames.shape[1]
        out = np.empty((len(trial_ids), *rows.shape[1:-1], width), rows.dtype)
        for row, (trial, first) in enumerate(zip(np.asarray(trial_ids).tolist(), firsts)):
            out[row] = rows[trial, ..., first:first + width]
        return out

    def images(self, trial_ids: np.ndarray, frames=slice(None)) -> np.ndarray:
        """The trials' video windows, (n, H, W, F), in the stored dtype."""
        return self._videos(np.asarray(trial_ids), frames)

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

    def responses(self, trial_ids: np.ndarray, frames=slice(None)) -> np.ndarray:
        """(n, N, F) windows read from the time-major matrix, only the window's bytes: a
        transposed view of an (n, F, N) buffer, so the source layout's shape without a
        second, transposing copy (its strides are time-major; ``np.ascontiguousarray``
        gives a C-ordered copy)."""
        if isinstance(frames, slice):
            window = self._matrix[trial_ids, frames, :]
        else:  # one window per row, each a slice of consecutive frames: (n, F, N)
            window = self._read_windows(np.asarray(trial_ids), frames[:, 0], frames.shape[1])
        return window.transpose(0, 2, 1)

    def _read_windows(self, trial_ids: np.ndarray, firsts: np.ndarray, width: int) -> np.ndarray:
        """(n, F, N) windows of the time-major matrix, each one read into its rows, several
        at once (faster cold than copying out of the memory map, whose pages each cost a fault;
        BENCHMARKS.md, Numbers behind the code: read threads)."""
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

    def prepare(self, keys, normalize: bool, cache_images: bool = False) -> None:
        super().prepare(keys, normalize)
        self._withheld  # noqa: B018  (read now: the withheld flags normalisation checks)
