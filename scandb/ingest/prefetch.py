"""Reading a scan's trials in chunks ahead of the inserts: in worker processes for big scans.

A chunk's reading is inflating its members, checking each against the key's layout,
hashing them, storing its images (temp-then-rename) and turning responses into float32
rows. That work is Python-heavy (zip member objects, header checks, per-file calls), so
threads could not keep both cores busy: the GIL serialised them with the inserting thread
(BENCHMARKS.md, Numbers behind the code: reader processes). Worker processes send back
finished chunks (a 256 x 8,000 chunk pickles as ~8 MB), while the parent only inserts.

Workers are forked, not spawned: a spawned worker re-imports the caller's main script,
which breaks ``db.ingest`` called from a script without a ``__main__`` guard. A forked
worker inherits the validated scan and opens its own handle on the archive; it never
touches the parent's DuckDB connection.

Small scans are read in the calling process: starting workers costs more than they save.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from ..errors import BadScanError
from ..source import npyfile
from ..source.archive import ZipArchive
from ..source.scan import Scan
from ..store.folder import Folder
from ..store.frames import FrameStore
from ..store.images import ImageStore, discard
from ..store.matrices import RowSink
from .tables import NeuronGroups, TrialChunk, all_zero, test_tiers, valid_lengths

CHUNK_TRIALS = 256
"""Trials read and inserted per batch: bounds memory whatever the scan's size."""
CHUNK_BYTES = 32 << 20
"""At most this much trial data per chunk: a full-size dynamic trial holds ~12 MB, so its
chunks have 2 trials, where a static scan's have CHUNK_TRIALS."""
CHUNKS_AHEAD = 4
"""Chunks read ahead of the one being inserted: bounds memory to a few chunks (~40 MB)."""
WORKERS = 2
"""Reader processes: the machine measured has 2 cores; the parent mostly waits on DuckDB."""
PARENT_POLL = 0.2
"""Seconds between a worker's checks that its parent is alive, where the kernel cannot
kill it with its parent."""
MIN_BYTES_FOR_WORKERS = 64 << 20
"""Uncompressed trial data below which a scan is read in-process: forking the workers and
passing chunks through their pipes costs more than it saves on a small scan."""


def uploading(folder):
    """The medium's background uploads for a chunk (a bucket's), or nothing (a folder)."""
    start = getattr(folder, "uploading", None)
    return start() if start is not None else nullcontext()


def read_chunk(scan: Scan, store: ImageStore, groups: NeuronGroups, trials: np.ndarray,
               frames: FrameStore | None = None, matrix: RowSink | None = None) -> TrialChunk:
    """These trials read, checked, hashed, and their images stored (and, given ``frames``,
    the time-major copies of their videos; given ``matrix``, a dynamic scan's time-major
    response rows, which the chunk then does not carry); a chunk that fails removes the
    files it wrote before raising."""
    created_before = len(store.created)
    frames_before = len(frames.created) if frames is not None else 0
    try:
        with uploading(store.folder):  # a bucket uploads the chunk's images several at once
            with store.packing() if frames is None else nullcontext():  # a bucket: one object per chunk
                chunk = _read_chunk(scan, store, groups, trials, frames)
        chunk.images = [store.placed(image) for image in chunk.images]
        chunk.created = [str(p) for p in store.created[created_before:]]  # known once every upload is done
        if frames is not None:
            chunk.created += [str(p) for p in frames.created[frames_before:]]
        if matrix is not None and chunk.n_frames is not None:
            chunk.row_digests = matrix.write(chunk.trials, chunk.responses.transpose(0, 2, 1))
            chunk.responses = None
        return chunk
    except BaseException:
        discard(store.created[created_before:], store.root)
        del store.created[created_before:]
        if frames is not None:
            discard(frames.created[frames_before:], store.root)
            del frames.created[frames_before:]
        raise


def _read_chunk(scan: Scan, store: ImageStore, groups: NeuronGroups, trials: np.ndarray,
                frames: FrameStore | None = None) -> TrialChunk:
    n = len(trials)
    digests: dict[str, str] = {}
    images = []
    stimulus = scan.stimulus
    for trial in trials.tolist():
        raw = scan.read_trial_bytes(stimulus, trial)
        digests[f"data/{stimulus}/{trial}.npy"] = hashlib.sha256(raw).hexdigest()
        images.append(store.put(npyfile.parse_header(raw), raw))
        if frames is not None:
            frames.put(images[-1].image_hash, raw)
    responses = _read_key(scan, "responses", trials, digests)
    as_float32 = responses.astype(np.float32, copy=False)
    lossy = 0
    if responses.dtype != np.float32:
        lossy = int(np.count_nonzero(as_float32.astype(responses.dtype) != responses))
    non_finite = int(np.count_nonzero(~np.isfinite(as_float32)))
    created: list[str] = []  # (read_chunk fills it in)
    responses_withheld = all_zero(as_float32) & test_tiers(scan.trials["tiers"][trials])
    if scan.kind == "dynamic":
        behavior = _read_key(scan, "behavior", trials, digests).astype(np.float64)
        pupil = _read_key(scan, "pupil_center", trials, digests).astype(np.float64)
        n_frames = valid_lengths(as_float32)
        non_finite = _non_finite_in_valid_frames(as_float32, n_frames)
        area_sums = np.stack([as_float32[:, idx].sum(axis=1, dtype=np.float64) for _, idx in groups], axis=1)
        return TrialChunk(trials, images, as_float32, behavior, pupil, area_sums, non_finite, lossy, digests, created,
                          responses_withheld, all_zero(behavior) & all_zero(pupil), n_frames)
    behavior = _read_key(scan, "behavior", trials, digests).reshape(n, 3).astype(np.float64)
    pupil = _read_key(scan, "pupil_center", trials, digests).reshape(n, 2).astype(np.float64)
    area_sums = np.column_stack([as_float32[:, idx].sum(axis=1, dtype=np.float64) for _, idx in groups])
    return TrialChunk(trials, images, as_float32, behavior, pupil, area_sums, non_finite, lossy, digests, created,
                      responses_withheld, all_zero(behavior) & all_zero(pupil))


def _non_finite_in_valid_frames(responses: np.ndarray, n_frames: np.ndarray) -> int:
    """NaN/Inf response values inside trials' valid lengths (the padding after is expected)."""
    valid = np.arange(responses.shape[-1])[None, :] < n_frames[:, None]
    return int(np.count_nonzero(~np.isfinite(responses) & valid[:, None, :]))


def _read_key(scan: Scan, key: str, trials: np.ndarray, digests: dict[str, str]) -> np.ndarray:
    layout = scan.data[key]
    out = np.empty((len(trials), *layout.shape), dtype=layout.dtype)
    for row, trial in enumerate(trials.tolist()):
        raw = scan.read_trial_bytes(key, trial)
        digests[f"data/{key}/{trial}.npy"] = hashlib.sha256(raw).hexdigest()
        try:
            out[row] = npyfile.load(raw)
        except npyfile.NpyError as exc:
            raise BadScanError(scan.label, scan.member(key, trial), str(exc)) from None
    return out


def chunk_trials(scan: Scan) -> int:
    """Trials per chunk: CHUNK_TRIALS, fewer when a trial holds much data."""
    per_trial = sum(layout.nbytes for layout in scan.data.values())
    return max(1, min(CHUNK_TRIALS, CHUNK_BYTES // max(per_trial, 1)))


def chunks_in(order: np.ndarray, size: int = CHUNK_TRIALS) -> list[np.ndarray]:
    return [order[start:start + size] for start in range(0, len(order), size)]


def use_workers(scan: Scan) -> int:
    """How many reader processes this scan is worth (0: read in-process)."""
    per_trial = sum(layout.nbytes for layout in scan.data.values())
    return WORKERS if scan.n_trials * per_trial >= MIN_BYTES_FOR_WORKERS and (os.cpu_count() or 1) > 1 else 0


class Prefetcher:
    """Chunks of a scan's trials, in the order asked, read up to ``CHUNKS_AHEAD`` ahead.

    ``created`` lists every image file a chunk handed out so far wrote; after a failure,
    ``close`` waits for the workers, so no file is written after it returns.
    """

    def __init__(self, path: Path, scan: Scan, store: ImageStore, groups: NeuronGroups, workers: int,
                 matrix: RowSink | None = None):
        self.scan, self.store, self.groups = scan, store, groups
        self.frames = FrameStore(store.folder) if scan.kind == "dynamic" else None
        self.matrix = matrix if scan.kind == "dynamic" else None
        """Where a dynamic scan's response rows go, written by whoever reads them."""
        self.created: list[str] = []
        self._pool: ProcessPoolExecutor | None = None
        self._pending: deque[Future] = deque()
        if workers:
            self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                             initializer=_start_worker,
                                             initargs=(path, scan, store.folder, store.known, groups, os.getpid(),
                                                       self.matrix))

    def chunks(self, order: np.ndarray) -> Iterator[TrialChunk]:
        """The chunks, in order; with workers, the first ``CHUNKS_AHEAD`` are asked for now,
        so the workers read while the caller does other work before it wants the first."""
        todo = iter(chunks_in(order, chunk_trials(self.scan)))
        if self._pool is None:
            return (self._keep(read_chunk(self.scan, self.store, self.groups, trials, self.frames, self.matrix))
                    for trials in todo)
        for trials in islice(todo, CHUNKS_AHEAD):
            self._pending.append(self._pool.submit(_worker_chunk, trials))
        return self._handed_out(todo)

    def _handed_out(self, todo: Iterator[np.ndarray]) -> Iterator[TrialChunk]:
        for trials in todo:
            self._pending.append(self._pool.submit(_worker_chunk, trials))
            if len(self._pending) > CHUNKS_AHEAD:
                yield self._keep(_unwrap(self._pending.popleft().result()))
        while self._pending:
            yield self._keep(_unwrap(self._pending.popleft().result()))

    def _keep(self, chunk: TrialChunk) -> TrialChunk:
        self.created.extend(chunk.created)
        return chunk

    def close(self) -> None:
        """Stop the workers; files written by chunks never handed out join ``created``."""
        if self._pool is None:
            return
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None
        for future in self._pending:
            if not future.cancelled() and future.exception() is None:
                result = future.result()
                if isinstance(result, TrialChunk):
                    self.created.extend(result.created)
        self._pending.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- inside a worker process ----------------------------------------------------------------

@dataclass(frozen=True)
class _Refused:
    """A ``BadScanError`` on its way back to the parent (its constructor does not pickle)."""

    scan: str
    member: str | None
    problem: str


_worker: dict = {}


def _start_worker(path: Path, scan: Scan, store: Folder, known: frozenset[str], groups: NeuronGroups,
                  parent: int, matrix: RowSink | None) -> None:
    """Runs first in each forked worker: the scan, already validated by the parent, gets its
    own open archive (a zip's file offset must not be shared between processes)."""
    _die_with_parent(parent)
    _own_file_handle(scan.archive, path)
    _worker["scan"] = scan
    _worker["store"] = ImageStore(store, known)
    _worker["groups"] = groups
    _worker["frames"] = FrameStore(store) if scan.kind == "dynamic" else None
    _worker["matrix"] = matrix


def _worker_chunk(trials: np.ndarray) -> TrialChunk | _Refused:
    try:
        return read_chunk(_worker["scan"], _worker["store"], _worker["groups"], trials, _worker["frames"],
                          _worker["matrix"])
    except BadScanError as exc:
        return _Refused(exc.scan, exc.member, exc.problem)


def _own_file_handle(archive, path: Path) -> None:
    """Give this process's copy of the archive its own file handle, keeping the member index
    the parent built: re-opening the zip re-reads and re-checks 24,000 names (seconds of
    CPU per worker on a full-size scan; BENCHMARKS.md, Numbers behind the code: reader
    processes), while a shared handle would share the file offset
    zipfile seeks before each read."""
    if isinstance(archive, ZipArchive):
        archive._zip.fp = open(path, "rb")


def _unwrap(result: TrialChunk | _Refused) -> TrialChunk:
    if isinstance(result, _Refused):
        raise BadScanError(result.scan, result.member, result.problem)
    return result


def _die_with_parent(parent: int) -> None:
    """A killed ingest must not leave workers behind, blocked forever or writing image
    files after it: on Linux the kernel kills this worker with its parent
    (PR_SET_PDEATHSIG); elsewhere a watchdog thread notices the parent is gone."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(1)
