"""A validated scan as Arrow tables, one per database table: pure functions, no database.

The transaction shell (``writer.py``) inserts what these return; tests call them on a
scan directly. Column names are the database's, so every insert is ``INSERT ... BY NAME``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import BadScanError
from ..keys import TEST_TIER_MARK
from ..source import npyfile
from ..source.scan import Scan
from ..store.images import StoredImage

TRIAL_COLUMNS_USED = {"tiers", "frame_image_class", "trial_idx", "frame_trial_ts"}
NEURON_COLUMNS_USED = {"unit_ids", "area", "layer", "cell_motor_coordinates"}
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?")

NeuronGroups = list[tuple[tuple["str | None", "str | None"], np.ndarray]]
"""Neuron indexes per (area, layer): the groups ``area_responses`` sums over."""


@dataclass(frozen=True)
class Source:
    """Where a scan came from: its container's name, size and sha256, and the digest of
    its content (member names relative to the scan root, and their bytes)."""

    name: str
    size: int
    sha256: str
    content_sha256: str | None


@dataclass
class TrialChunk:
    """Trials read, checked and with their images stored: ready to become rows."""

    trials: np.ndarray
    """trial ids (int32), in the order read"""
    images: list[StoredImage]
    responses: np.ndarray | None
    """(len(trials), n_neurons) float32; None for a dynamic chunk whose reader wrote its
    rows into the response matrix itself"""
    behavior: np.ndarray
    """(len(trials), 3) float64"""
    pupil: np.ndarray
    """(len(trials), 2) float64"""
    area_sums: np.ndarray
    """(len(trials), n_groups) float64: response sums per (area, layer) group"""
    non_finite: int
    lossy: int
    member_digests: dict[str, str]
    """sha256 of each data member read, by its name relative to the scan root"""
    created: list[str]
    """image files this chunk's reader wrote (absolute paths), removed again on rollback"""
    responses_withheld: np.ndarray
    """(len(trials),) bool: a test-tier trial whose responses are all exactly zero"""
    behavior_withheld: np.ndarray
    """(len(trials),) bool: behavior and pupil position all exactly zero"""
    n_frames: np.ndarray | None = None
    """dynamic scans: (len(trials),) int32 valid lengths. responses are then (n, N, T),
    behavior and pupil (n, 2, T), area_sums (n, n_groups, T)"""
    row_digests: list[bytes] | None = None
    """sha256 of each trial's response matrix row, when the reader wrote the rows"""


@dataclass
class TrialFlags:
    """What ingest learns about each trial while reading its data, by trial id."""

    n_frames: np.ndarray
    responses_withheld: np.ndarray
    behavior_withheld: np.ndarray

    @classmethod
    def empty(cls, n: int) -> "TrialFlags":
        return cls(np.zeros(n, np.int32), np.zeros(n, bool), np.zeros(n, bool))

    def update(self, chunk: "TrialChunk") -> None:
        if chunk.n_frames is not None:
            self.n_frames[chunk.trials] = chunk.n_frames
        self.responses_withheld[chunk.trials] = chunk.responses_withheld
        self.behavior_withheld[chunk.trials] = chunk.behavior_withheld


def valid_lengths(responses: np.ndarray) -> np.ndarray:
    """Per trial of ``(n, N, T)`` responses, the first frame where every neuron is NaN (T if none)."""
    ended = np.isnan(responses).all(axis=1)
    return np.where(ended.any(axis=1), ended.argmax(axis=1), responses.shape[-1]).astype(np.int32)


def all_zero(values: np.ndarray) -> np.ndarray:
    """Per row, every value exactly zero (NaN padding aside), and at least one zero."""
    flat = values.reshape(len(values), -1)
    zero = flat == 0
    return (zero | np.isnan(flat)).all(axis=1) & zero.any(axis=1)


def test_tiers(tiers: np.ndarray) -> np.ndarray:
    return np.char.find(tiers.astype(str), TEST_TIER_MARK) >= 0


def missing_meta(scan: Scan) -> list[str]:
    """The optional meta a scan lacks, in the words of the summary's one-line note."""
    missing = [f"meta/neurons/{name}.npy" for name in ("area", "layer") if name not in scan.neurons]
    if not scan.statistics:
        missing.append("meta/statistics/")
    return missing


def scan_row(scan: Scan, source: Source, ingested_at: datetime, version: str) -> pa.Table:
    data = scan.data
    return pa.table({
        "scan_key": [scan.key], "name": [scan.name], "animal_id": pa.array([scan.animal_id], pa.int64()),
        "session": pa.array([scan.session], pa.int64()), "scan_idx": pa.array([scan.scan_idx], pa.int64()),
        "kind": [scan.kind], "n_trials": pa.array([scan.n_trials], pa.int32()),
        "n_neurons": pa.array([scan.n_neurons], pa.int32()),
        "image_shape": pa.array([list(data[scan.stimulus].shape)], pa.list_(pa.int32())),
        "image_dtype": [data[scan.stimulus].dtype.str], "response_dtype": [data["responses"].dtype.str],
        "behavior_dtype": [data["behavior"].dtype.str], "pupil_center_dtype": [data["pupil_center"].dtype.str],
        "source_name": [source.name], "source_size": pa.array([source.size], pa.int64()),
        "source_sha256": [source.sha256], "content_sha256": pa.array([source.content_sha256], pa.string()),
        "ingested_at": pa.array([ingested_at], pa.timestamp("us")),
        "scandb_version": [version],
    })


def neuron_table(scan: Scan) -> pa.Table:
    meta, n = scan.neurons, scan.n_neurons
    coords = meta.get("cell_motor_coordinates")
    columns = {
        "scan_key": pa.array([scan.key] * n),
        "neuron_idx": pa.array(np.arange(n, dtype=np.int32)),
        "unit_id": pa.array(meta["unit_ids"].astype(np.int64)),
        "area": strings(meta.get("area"), n),
        "layer": strings(meta.get("layer"), n),
    }
    for axis, name in enumerate("xyz"):
        columns[name] = pa.array(coords[:, axis].astype(np.float64) if coords is not None else [None] * n,
                                 pa.float64())
    columns["extra"] = json_rows({k: v for k, v in meta.items() if k not in NEURON_COLUMNS_USED}, n)
    return pa.table(columns)


def kept_as_files(scan: Scan) -> list[str]:
    """Members outside data/ kept as files in the store rather than as rows: a dynamic scan's
    time-resolved statistics (16 M values for a full-size mouse, which an open transaction
    would hold in memory; store/meta.py)."""
    if scan.kind != "dynamic":
        return []
    return sorted(rel for rel in scan.files if rel.startswith("meta/statistics/") and rel.endswith(".npy"))


def statistic_member(variable: str, source: str, stat: str) -> str:
    return f"meta/statistics/{variable}/{source}/{stat}.npy"


def statistics_table(scan: Scan, stored: dict[str, str] | None = None) -> pa.Table | None:
    """One row per statistic; ``stored``: members kept as files (by member path), whose
    values are then NULL here."""
    stats = scan.statistics
    if not stats:
        return None
    stored = stored or {}

    def values(st) -> np.ndarray | None:
        if statistic_member(st.variable, st.source, st.stat) in stored:
            return None
        return st.array.astype(np.float64).ravel()

    return pa.table({
        "scan_key": [scan.key] * len(stats),
        "variable": [st.variable for st in stats],
        "source": [st.source for st in stats],
        "stat": [st.stat for st in stats],
        "dtype": [st.array.dtype.str for st in stats],
        "shape": pa.array([list(st.array.shape) for st in stats], pa.list_(pa.int32())),
        "data": pa.array([values(st) for st in stats], pa.list_(pa.float64())),
    })


def file_table(scan: Scan, stored: dict[str, str] | None = None) -> pa.Table:
    """Every member outside data/, verbatim, with dtype and shape for `.npy` files;
    ``stored``: members kept as files, by member path, whose rows name the file instead."""
    stored = stored or {}
    paths, dtypes, shapes, contents = [], [], [], []
    for rel, raw in sorted(scan.files.items()):
        dtype = shape = None
        if rel.endswith(".npy"):
            try:
                header = npyfile.parse_header(raw)
            except npyfile.NpyError as exc:
                raise BadScanError(scan.label, scan.root + rel, str(exc)) from None
            dtype, shape = header.dtype.str, list(header.shape)
        paths.append(rel), dtypes.append(dtype), shapes.append(shape)
        contents.append(None if rel in stored else raw)
    return pa.table({
        "scan_key": [scan.key] * len(paths), "path": paths, "dtype": pa.array(dtypes, pa.string()),
        "shape": pa.array(shapes, pa.list_(pa.int32())), "content": pa.array(contents, pa.binary()),
        "stored_as": pa.array([stored.get(rel) for rel in paths], pa.string()),
    })


def trial_table(scan: Scan, image_hashes: list[str], flags: TrialFlags | None = None) -> pa.Table:
    """``flags``: what reading the trials found (valid lengths, withheld data); none found without."""
    meta, n = scan.trials, scan.n_trials
    flags = flags or TrialFlags.empty(n)
    id_file = scan.image_id_file
    trial_idx = meta.get("trial_idx")
    numeric_idx = trial_idx is not None and trial_idx.dtype.kind in "iu"
    return pa.table({
        "scan_key": pa.array([scan.key] * n),
        "trial_id": pa.array(np.arange(n, dtype=np.int32)),
        "tier": strings(meta["tiers"], n),
        "image_id": pa.array(image_ids(scan) if id_file else video_numbers(image_hashes)),
        "image_class": strings(meta.get("frame_image_class"), n),
        "trial_idx": pa.array(trial_idx.astype(np.int64) if numeric_idx else [None] * n, pa.int64()),
        "trial_hash": strings(None if numeric_idx else trial_idx, n),
        "timestamp": timestamps(meta.get("frame_trial_ts"), n),
        "image_hash": pa.array(image_hashes, pa.string()),
        "extra": json_rows({k: v for k, v in meta.items() if k not in TRIAL_COLUMNS_USED and k != id_file}, n),
        "n_frames": pa.array(flags.n_frames if scan.kind == "dynamic" else [None] * n, pa.int32()),
        "responses_withheld": pa.array(flags.responses_withheld), "behavior_withheld": pa.array(flags.behavior_withheld),
    })


def video_numbers(hashes: list[str]) -> np.ndarray:
    """For a dynamic scan without an id array: each distinct video numbered in trial order."""
    numbers: dict[str, int] = {}
    return np.array([numbers.setdefault(h, len(numbers)) for h in hashes], dtype=np.int64)


def frame_behavior_table(key: str, chunk: TrialChunk) -> pa.Table:
    """A dynamic chunk's behavior and pupil position, one DOUBLE[] of T values per column."""
    def lists(values: np.ndarray) -> pa.Array:
        n, frames = values.shape
        offsets = pa.array(np.arange(0, n * frames + 1, frames, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(values).ravel()))
    return pa.table({
        "scan_key": pa.array([key] * len(chunk.trials)), "trial_id": pa.array(chunk.trials),
        "pupil_dilation": lists(chunk.behavior[:, 0]), "running_speed": lists(chunk.behavior[:, 1]),
        "pupil_x": lists(chunk.pupil[:, 0]), "pupil_y": lists(chunk.pupil[:, 1])})


def area_frame_table(key: str, chunk: TrialChunk, groups: NeuronGroups) -> pa.Table:
    """Per dynamic trial and (area, layer), the response sum of each valid frame."""
    n, g = len(chunk.trials), len(groups)
    lengths = np.repeat(chunk.n_frames.astype(np.int64), g)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = np.concatenate([chunk.area_sums[t, j, :chunk.n_frames[t]] for t in range(n) for j in range(g)]) \
        if n * g else np.empty(0)
    return pa.table({**_area_group_columns(key, chunk, groups),
                     "response_sum": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float64()))})


def image_table(new_images: list[StoredImage]) -> pa.Table:
    return pa.table({
        "image_hash": pa.array([i.image_hash for i in new_images], pa.string()),
        "path": pa.array([i.path for i in new_images], pa.string()),
        "shape": pa.array([list(i.shape) for i in new_images], pa.list_(pa.int32())),
        "dtype": pa.array([i.dtype for i in new_images], pa.string()),
        "n_bytes": pa.array([i.n_bytes for i in new_images], pa.int64()),
        "pack_offset": pa.array([i.pack_offset for i in new_images], pa.int64()),
        "pack_length": pa.array([i.pack_length for i in new_images], pa.int64())})


def response_table(key: str, chunk: TrialChunk, trial_image_ids: np.ndarray) -> pa.Table:
    """A static chunk's response rows (dynamic responses live in the response matrix only)."""
    n, width = chunk.responses.shape
    offsets = pa.array(np.arange(0, n * width + 1, width, dtype=np.int64))
    return pa.table({
        "scan_key": pa.array([key] * n), "trial_id": pa.array(chunk.trials),
        "response": pa.LargeListArray.from_arrays(offsets, pa.array(chunk.responses.ravel())),
        "image_id": pa.array(trial_image_ids[chunk.trials])})


def area_response_table(key: str, chunk: TrialChunk, groups: NeuronGroups) -> pa.Table:
    return pa.table({**_area_group_columns(key, chunk, groups), "response_sum": pa.array(chunk.area_sums.ravel())})


def _area_group_columns(key: str, chunk: TrialChunk, groups: NeuronGroups) -> dict[str, pa.Array]:
    """The key columns of one row per (trial, area, layer) group of a chunk."""
    n, g = len(chunk.trials), len(groups)
    return {"scan_key": pa.array([key] * (n * g)),
            "trial_id": pa.array(np.repeat(chunk.trials, g)),
            "area": pa.array([area for _ in range(n) for (area, _), _ in groups], pa.string()),
            "layer": pa.array([layer for _ in range(n) for (_, layer), _ in groups], pa.string()),
            "n_neurons": pa.array(np.tile([len(idx) for _, idx in groups], n).astype(np.int32))}


def behavior_table(key: str, chunk: TrialChunk) -> pa.Table:
    behavior, pupil = chunk.behavior, chunk.pupil
    return pa.table({
        "scan_key": pa.array([key] * len(chunk.trials)), "trial_id": pa.array(chunk.trials),
        "pupil_dilation": behavior[:, 0], "pupil_dilation_derivative": behavior[:, 1],
        "running_speed": behavior[:, 2], "pupil_x": pupil[:, 0], "pupil_y": pupil[:, 1]})


def response_matrix_row(key: str, path: str, n_trials: int, n_neurons: int) -> pa.Table:
    return pa.table({"scan_key": [key], "path": [path], "n_trials": pa.array([n_trials], pa.int32()),
                     "n_neurons": pa.array([n_neurons], pa.int32())})


def image_ids(scan: Scan) -> np.ndarray:
    """The image id array; zeros for a dynamic scan without one (its ids come from the videos)."""
    if scan.image_id_file is None:
        return np.zeros(scan.n_trials, np.int64)
    return scan.trials[scan.image_id_file].astype(np.int64)


def image_order(scan: Scan) -> np.ndarray:
    """Trial ids sorted by image, then trial: responses stored in this order let DuckDB skip
    other images' row groups when a query filters on image_id."""
    return np.lexsort((np.arange(scan.n_trials), image_ids(scan))).astype(np.int32)


def neuron_groups(scan: Scan) -> NeuronGroups:
    return groups_of(scan.neurons, scan.n_neurons)


def groups_of(neurons: dict, n: int) -> NeuronGroups:
    """The (area, layer) groups of ``n`` neurons, in order of first neuron, from their
    ``area`` and ``layer`` arrays (either may be missing: NULL)."""
    keys = list(zip(strings(neurons.get("area"), n).to_pylist(), strings(neurons.get("layer"), n).to_pylist()))
    groups: dict[tuple, list[int]] = {}
    for idx, key in enumerate(keys):
        groups.setdefault(key, []).append(idx)
    return [(key, np.array(idx, dtype=np.int64)) for key, idx in groups.items()]


def content_digest(member_digests: dict[str, str]) -> str:
    """One sha256 over (relative name, sha256 of bytes) of every member, in name order:
    the same for a zip and for the folder it unzips to."""
    digest = hashlib.sha256()
    for name in sorted(member_digests):
        digest.update(f"{name}\0{member_digests[name]}\n".encode())
    return digest.hexdigest()


def strings(array: np.ndarray | None, n: int) -> pa.Array:
    if array is None:
        return pa.array([None] * n, pa.string())
    return pa.array([_text(v) for v in array.tolist()], pa.string())


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def timestamps(array: np.ndarray | None, n: int) -> pa.Array:
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


def json_rows(arrays: dict[str, np.ndarray], n: int) -> pa.Array:
    """One JSON object per row with every array's value for that row, by file name."""
    if not arrays:
        return pa.array([None] * n, pa.string())
    columns = {name: array.tolist() for name, array in sorted(arrays.items())}
    return pa.array([json.dumps({name: _json_value(values[i]) for name, values in columns.items()})
                     for i in range(n)], pa.string())


def source_name(scan: Scan) -> str:
    return Path(scan.label).name
