"""Reading a scan (zip or folder) into validated, typed parts; per-trial data is streamed.

Everything that can be checked without reading every trial is checked when the scan is
opened: the layout, the meta arrays and their lengths, that data files are numbered
0..n-1 with no gaps or strays, and the shape and dtype of each key's first file. Each
trial file read later is checked against that first file.

Every read is bounded before anything is inflated: a trial file by trial 0's shape, a meta
array by the number of trials or neurons, everything else by fixed caps (see ``_Bounds``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from . import npyfile
from .archive import Archive, open_archive
from ..errors import BadScanError
from ..keys import DATA_KEYS, STIMULUS_KEY, VIDEO_DATA_KEYS

IMAGE_ID_FILES = ("frame_image_id", "colorframeprojector_image_id", "image_id")
VIDEO_KEYS = ("videos",)
HEADER_SLACK = 4096
"""Bytes a `.npy` file may exceed its data size by: room for any header."""
MAX_TRIAL_BYTES = 64 << 20
"""Largest per-trial array read (64 MiB); a real one is at most 0.3 MB (a float64 image)."""
MAX_ROW_BYTES = 4096
"""Largest share of one trial or neuron in a meta array (a 1,024-character string)."""
MAX_STAT_ITEMSIZE = 8
"""Statistics hold at most one float64 per element of their variable."""
MAX_OTHER_FILE = 64 << 20
"""Largest file of no known shape read (config.json, notes): 64 MiB."""
MAX_OUTSIDE_DATA = 256 << 20
"""Largest total of every member outside data/, all held in memory at once (256 MiB)."""

NAME_PATTERN = re.compile(r"^(static|dynamic)(\d+)-(\d+)-(\d+)-(.+)$")
TRIAL_FILE = re.compile(r"^(0|[1-9]\d*)\.npy$")


@dataclass(frozen=True)
class Statistic:
    variable: str
    source: str
    stat: str
    array: np.ndarray


@dataclass(frozen=True)
class DataKey:
    """The layout shared by every per-trial file of one key (from trial 0)."""

    key: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize  # per trial read: np.prod is slow on a tuple (BENCHMARKS.md, Numbers behind the code: np.prod)


@dataclass
class Scan:
    """A validated scan: meta arrays in memory, per-trial data read on demand."""

    archive: Archive
    root: str
    name: str
    key: str
    animal_id: int | None
    session: int | None
    scan_idx: int | None
    n_trials: int
    n_neurons: int
    data: dict[str, DataKey]
    neurons: dict[str, np.ndarray]
    trials: dict[str, np.ndarray]
    statistics: list[Statistic]
    files: dict[str, bytes] = field(repr=False)
    """Every member outside data/, verbatim, by its path relative to the scan root."""
    kind: str = "static"
    """'static' (one image per trial) or 'dynamic' (a video per trial, arrays with time last)."""

    @property
    def stimulus(self) -> str:
        """The data key of the stimulus: images or videos."""
        return STIMULUS_KEY[self.kind]

    @property
    def keys(self) -> tuple[str, ...]:
        return VIDEO_DATA_KEYS if self.kind == "dynamic" else DATA_KEYS

    @property
    def padded_frames(self) -> int | None:
        """T, the frames every trial file of a dynamic scan holds (None for a static scan)."""
        return self.data["responses"].shape[-1] if self.kind == "dynamic" else None

    @property
    def label(self) -> str:
        return self.archive.label

    @property
    def image_id_file(self) -> str | None:
        """Which of the image id arrays this scan has (the first, when it has several);
        None for a dynamic scan without one."""
        return next((name for name in IMAGE_ID_FILES if name in self.trials), None)

    def member(self, key: str, trial: int) -> str:
        return f"{self.root}data/{key}/{trial}.npy"

    def read_trial_bytes(self, key: str, trial: int) -> bytes:
        """The raw `.npy` bytes of one trial file, checked against the key's layout."""
        layout = self.data[key]
        name = self.member(key, trial)
        raw = self.archive.read(name, layout.nbytes + HEADER_SLACK)
        try:
            header = npyfile.parse_header(raw)
        except npyfile.NpyError as exc:
            raise BadScanError(self.label, name, str(exc)) from None
        if header.dtype != layout.dtype or header.shape != layout.shape:
            raise BadScanError(self.label, name, f"{_describe(header.shape, header.dtype)}, but "
                               f"trial 0 of {key} is {_describe(layout.shape, layout.dtype)}")
        return raw

    def read_trial(self, key: str, trial: int) -> np.ndarray:
        raw = self.read_trial_bytes(key, trial)
        try:
            return npyfile.load(raw)
        except npyfile.NpyError as exc:
            raise BadScanError(self.label, self.member(key, trial), str(exc)) from None

    def read_trials(self, key: str, start: int, stop: int) -> np.ndarray:
        """Trials ``start..stop-1`` of one key stacked into a ``(stop-start, *shape)`` array."""
        return self.read_many(key, range(start, stop))

    def read_many(self, key: str, trials) -> np.ndarray:
        """These trials of one key, in the order given, stacked into a ``(len, *shape)`` array."""
        layout = self.data[key]
        out = np.empty((len(trials), *layout.shape), dtype=layout.dtype)
        for row, trial in enumerate(trials):
            out[row] = self.read_trial(key, int(trial))
        return out

    def close(self) -> None:
        self.archive.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _describe(shape, dtype) -> str:
    return f"shape {tuple(shape)} {np.dtype(dtype).name}"


def open_scan(path) -> Scan:
    """Open and validate a scan; the caller closes it (or uses ``with``)."""
    archive = open_archive(path)
    try:
        return _Reader(archive, Path(path)).read()
    except BaseException:
        archive.close()
        raise


class _Reader:
    def __init__(self, archive: Archive, path: Path):
        self.archive = archive
        self.path = path
        self.label = archive.label

    def bad(self, member: str | None, problem: str) -> BadScanError:
        return BadScanError(self.label, member, problem)

    def read(self) -> Scan:
        names = self.archive.names()
        root = self._find_root(names)
        rel = {n[len(root):]: n for n in names if n.startswith(root)}
        name = root.rstrip("/") or _stem(self.path)
        dynamic = name.startswith("dynamic") or any(r.startswith(f"data/{k}/") for r in rel for k in VIDEO_KEYS)
        self.kind = "dynamic" if dynamic else "static"
        self.keys = VIDEO_DATA_KEYS if dynamic else DATA_KEYS

        trial_files = self._data_layout(rel)
        self._check_numbering(root, trial_files)
        data = {key: self._data_key(root, key) for key in self.keys}
        files = self._read_files(root, rel, _Bounds(trial_files, data))
        neurons = self._meta_arrays(root, files, "meta/neurons/")
        trials = self._meta_arrays(root, files, "meta/trials/")
        statistics = self._statistics(root, files)

        n_trials = self._trial_count(root, trials, trial_files)
        n_neurons = self._check_neurons(root, data, neurons)
        self._check_trials(root, trials)
        if dynamic:
            self._check_video_shapes(root, data)
        else:
            self._check_data_shapes(root, data)

        key, animal, session, scan_idx = _identity(name, neurons)
        return Scan(self.archive, root, name, key, animal, session, scan_idx, n_trials, n_neurons,
                    data, neurons, trials, statistics, files, self.kind)

    # -- layout ---------------------------------------------------------------------------

    def _find_root(self, names: list[str]) -> str:
        folder = self.path.is_dir()
        if not names:
            raise self.bad(None, "empty folder: not a scan" if folder else "empty archive: no files")
        zips = [n for n in names if n.lower().endswith(".zip")]
        if folder and zips and not any(n.startswith(("data/", "meta/")) or "/data/" in n for n in names):
            raise self.bad(None, f"a folder holding {len(zips)} zip file{'s' if len(zips) != 1 else ''}, "
                                 "not a scan: give the scan zips themselves (e.g. "
                                 f"{PurePosixPath(self.label, zips[0])})")
        if any(n.startswith(("data/", "meta/")) for n in names):
            return ""
        tops = {n.split("/", 1)[0] for n in names if "/" in n}
        roots = sorted(t for t in tops if any(n.startswith(f"{t}/data/") for n in names))
        if len(roots) == 1:
            return roots[0] + "/"
        if len(roots) > 1:
            raise self.bad(None, f"holds several scans ({', '.join(roots)}); give one scan per archive")
        raise self.bad(None, "not a scan: no data/ folder (expected data/ and meta/, "
                             "optionally inside one top-level folder)")

    def _data_layout(self, rel: dict[str, str]) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for r, full in rel.items():
            if not r.startswith("data/"):
                continue
            parts = PurePosixPath(r).parts
            if len(parts) != 3:
                raise self.bad(full, "unexpected file in data/ (expected data/<key>/<trial>.npy)")
            key, filename = parts[1], parts[2]
            if key not in self.keys:
                raise self.bad(full, f"unknown data key {key!r}; a {self.kind} scan has {', '.join(self.keys)}")
            match = TRIAL_FILE.match(filename)
            if not match:
                raise self.bad(full, "stray file in data folder (trial files are named <i>.npy)")
            found.setdefault(key, []).append(int(match.group(1)))
        for key in self.keys:
            if key not in found:
                raise self.bad(None, f"missing data/{key}/ (a {self.kind} scan has {', '.join(self.keys)})")
        return found

    def _check_numbering(self, root: str, trial_files: dict[str, list[int]]) -> None:
        for key, numbers in trial_files.items():
            numbers.sort()
            if numbers != list(range(len(numbers))):
                missing = sorted(set(range(max(numbers) + 1)) - set(numbers))
                raise self.bad(f"{root}data/{key}/", f"trial files have gaps: missing {_few(missing)}.npy "
                                                     f"(files must be numbered 0..n-1)")

    def _read_files(self, root: str, rel: dict[str, str], bounds: "_Bounds") -> dict[str, bytes]:
        """Every member outside data/, each read no further than the scan's shapes allow."""
        outside = {r: full for r, full in rel.items() if not r.startswith("data/")}
        for r, full in outside.items():
            self.archive.check_size(full, bounds.limit(r))
        total = sum(self.archive.size(full) for full in outside.values())
        if total > MAX_OUTSIDE_DATA:
            raise self.bad(None, f"files outside data/ add up to {total} bytes, more than the "
                                 f"{MAX_OUTSIDE_DATA} scandb reads (refusing a possible zip bomb)")
        return {r: self.archive.read(full, bounds.limit(r)) for r, full in outside.items()}

    def _trial_count(self, root: str, trials: dict[str, np.ndarray],
                     trial_files: dict[str, list[int]]) -> int:
        if "tiers" not in trials:
            raise self.bad(f"{root}meta/trials/tiers.npy", "missing (every trial needs a tier)")
        n = len(trials["tiers"])
        for key, numbers in trial_files.items():
            if len(numbers) != n:
                raise self.bad(f"{root}data/{key}/", f"{len(numbers)} trial files, but meta/trials "
                                                     f"arrays have {n} trials")
        return n

    # -- meta -----------------------------------------------------------------------------

    def _load(self, member: str, raw: bytes) -> np.ndarray:
        try:
            return npyfile.load(raw)
        except npyfile.NpyError as exc:
            raise self.bad(member, str(exc)) from None

    def _meta_arrays(self, root: str, files: dict[str, bytes], prefix: str) -> dict[str, np.ndarray]:
        arrays = {}
        for r, raw in files.items():
            if r.startswith(prefix) and r.endswith(".npy") and "/" not in r[len(prefix):]:
                arrays[r[len(prefix):-4]] = self._load(root + r, raw)
        return arrays

    def _statistics(self, root: str, files: dict[str, bytes]) -> list[Statistic]:
        out = []
        for r, raw in sorted(files.items()):
            parts = PurePosixPath(r).parts
            if r.startswith("meta/statistics/") and r.endswith(".npy"):
                if len(parts) != 5:
                    raise self.bad(root + r, "unexpected statistics file (expected "
                                             "meta/statistics/<variable>/<source>/<stat>.npy)")
                array = self._load(root + r, raw)
                if array.dtype.kind not in "biuf":
                    raise self.bad(root + r, f"statistics must be numeric, found {array.dtype}")
                out.append(Statistic(parts[2], parts[3], parts[4][:-4], array))
        return out

    def _data_key(self, root: str, key: str) -> DataKey:
        member = f"{root}data/{key}/0.npy"
        raw = self.archive.read(member, MAX_TRIAL_BYTES + HEADER_SLACK)
        array = self._load(member, raw)
        if array.dtype.kind not in "biuf":
            raise self.bad(member, f"{key} must be numeric, found dtype {array.dtype}")
        return DataKey(key, array.dtype, array.shape)

    def _check_data_shapes(self, root: str, data: dict[str, DataKey]) -> None:
        for key, width in (("behavior", 3), ("pupil_center", 2)):
            shape = data[key].shape
            if shape not in ((width,), (1, width)):
                raise self.bad(f"{root}data/{key}/0.npy", f"shape {shape}, expected ({width},) or (1, {width})")
        if len(data["images"].shape) < 2:
            raise self.bad(f"{root}data/images/0.npy", f"shape {data['images'].shape} is not an image")

    def _check_video_shapes(self, root: str, data: dict[str, DataKey]) -> None:
        """videos (H, W, T), responses (N, T), behavior and pupil_center (2, T): one T."""
        frames = data["responses"].shape[-1]
        for key, rank, first in (("videos", 3, None), ("behavior", 2, 2), ("pupil_center", 2, 2)):
            shape = data[key].shape
            if len(shape) != rank or shape[-1] != frames or (first is not None and shape[0] != first):
                expected = "(height, width, T)" if key == "videos" else f"({first}, T)"
                raise self.bad(f"{root}data/{key}/0.npy", f"shape {shape}, expected {expected} with the "
                                                          f"responses' T = {frames}")
            if data[key].dtype.kind != "f":
                raise self.bad(f"{root}data/{key}/0.npy", f"{key} of a dynamic scan must be floats (NaN marks "
                                                          f"the frames after a trial's end), found {data[key].dtype}")

    def _check_neurons(self, root: str, data: dict[str, DataKey], neurons: dict[str, np.ndarray]) -> int:
        shape = data["responses"].shape
        if self.kind == "dynamic" and (len(shape) != 2 or data["responses"].dtype.kind != "f"):
            raise self.bad(f"{root}data/responses/0.npy", f"{_describe(shape, data['responses'].dtype)}, "
                                                          "expected (n_neurons, T) floats")
        if self.kind == "static" and len(shape) != 1:
            raise self.bad(f"{root}data/responses/0.npy", f"shape {shape}, expected (n_neurons,)")
        n = shape[0]
        if "unit_ids" not in neurons:
            raise self.bad(f"{root}meta/neurons/unit_ids.npy", "missing (meta/neurons must name every neuron)")
        for name, array in neurons.items():
            if array.ndim == 0 or len(array) != n:
                got = "a scalar" if array.ndim == 0 else f"length {len(array)}"
                raise self.bad(f"{root}meta/neurons/{name}.npy", f"{got}, but responses have {n} neurons")
        coords = neurons.get("cell_motor_coordinates")
        if coords is not None and (coords.ndim != 2 or coords.shape[1] != 3 or coords.dtype.kind not in "iuf"):
            raise self.bad(f"{root}meta/neurons/cell_motor_coordinates.npy",
                           f"{_describe(coords.shape, coords.dtype)}, expected ({n}, 3) numbers")
        if neurons["unit_ids"].dtype.kind not in "iu":
            raise self.bad(f"{root}meta/neurons/unit_ids.npy", f"unit ids must be integers, found {neurons['unit_ids'].dtype}")
        return n

    def _check_trials(self, root: str, trials: dict[str, np.ndarray]) -> None:
        n = len(trials["tiers"])
        for name, array in trials.items():
            if array.ndim == 0 or len(array) != n:
                got = "a scalar" if array.ndim == 0 else f"length {len(array)}"
                raise self.bad(f"{root}meta/trials/{name}.npy", f"{got}, but tiers.npy has {n} trials")
        if trials["tiers"].dtype.kind not in "US":
            raise self.bad(f"{root}meta/trials/tiers.npy", f"tiers must be strings, found {trials['tiers'].dtype}")
        image_ids = [name for name in IMAGE_ID_FILES if name in trials]
        if not image_ids and self.kind == "dynamic":
            return
        if not image_ids:
            raise self.bad(f"{root}meta/trials/", f"no image id array (one of {', '.join(IMAGE_ID_FILES)}.npy)")
        ids = trials[image_ids[0]]
        if ids.dtype.kind not in "iu" and not (ids.dtype.kind == "f" and _whole_numbers(ids)):
            raise self.bad(f"{root}meta/trials/{image_ids[0]}.npy", f"image ids must be integers, found {ids.dtype}")


class _Bounds:
    """How many bytes each member outside data/ may hold, from counts known before reading it.

    meta/trials arrays have one row per trial file, meta/neurons arrays one row per
    response element, statistics at most one float64 per element of the largest trial
    array: a member declaring more is refused before a byte of it is inflated.
    """

    def __init__(self, trial_files: dict[str, list[int]], data: dict[str, DataKey]):
        self.n_trials = max(len(numbers) for numbers in trial_files.values())
        self.n_neurons = int(data["responses"].shape[0]) if data["responses"].shape else 1
        self.max_elements = max(int(np.prod(d.shape, dtype=np.int64)) for d in data.values())

    def limit(self, rel: str) -> int:
        if rel.startswith("meta/trials/"):
            return HEADER_SLACK + self.n_trials * MAX_ROW_BYTES
        if rel.startswith("meta/neurons/"):
            return HEADER_SLACK + self.n_neurons * MAX_ROW_BYTES
        if rel.startswith("meta/statistics/"):
            return HEADER_SLACK + self.max_elements * MAX_STAT_ITEMSIZE
        return MAX_OTHER_FILE


def _whole_numbers(values: np.ndarray) -> bool:
    """Floats that convert to int64 exactly (no NaN, no infinities, nothing past 2**53)."""
    with np.errstate(invalid="ignore"):
        return bool(np.all(np.isfinite(values) & (np.abs(values) <= 2 ** 53) & (np.mod(values, 1) == 0)))


def _few(items: list[int]) -> str:
    shown = ", ".join(map(str, items[:5]))
    return shown + (f" and {len(items) - 5} more" if len(items) > 5 else "")


def _stem(path: Path) -> str:
    name = path.name
    return name[:-4] if name.lower().endswith(".zip") else name


def _identity(name: str, neurons: dict[str, np.ndarray]) -> tuple[str, int | None, int | None, int | None]:
    """The readable key ``animal-session-scan`` and its parts, from the name or meta/neurons."""
    match = NAME_PATTERN.match(name)
    if match:
        animal, session, scan_idx = (int(g) for g in match.group(2, 3, 4))
        return f"{animal}-{session}-{scan_idx}", animal, session, scan_idx
    parts = [_first_int(neurons.get(f)) for f in ("animal_ids", "sessions", "scan_idx")]
    if all(p is not None for p in parts):
        return "-".join(map(str, parts)), *parts
    return name, None, None, None


def _first_int(array: np.ndarray | None) -> int | None:
    if array is None or array.size == 0:
        return None
    try:
        return int(str(array.flat[0]))
    except ValueError:
        return None
