"""One scan's selected trials and neurons as a scan folder in the source layout.

What existing file-tree loaders read: ``data/<key>/<i>.npy`` numbered 0..n-1 in the
selection's order, ``meta/trials`` arrays taken for those trials (plus
``source_trial_id.npy``), ``meta/neurons`` arrays and per-neuron statistics taken for the
chosen neurons, every other file the scan shipped copied byte for byte. Images are copied
from the image store (the source files' bytes); responses, behavior and pupil position are
written in their source dtypes.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..keys import STIMULUS_KEY
from ..source.npyfile import dumps, load
from ..store.images import read_image_files
from ..store.meta import stored_content

SOURCE_TRIAL_FILE = "meta/trials/source_trial_id.npy"
"""The source scan's trial id (its file number) of each exported trial."""
CHUNK = 1024
"""Trials fetched at once: bounds memory for full-size scans."""
PER_NEURON_VARIABLES = ("responses",)
"""Statistics whose first axis is the neurons (taken for the chosen neurons; (N,) or (N, T))."""


def target_of(db, scan_key: str, out: Path, as_zip: bool) -> Path:
    """Where a scan's export goes: ``out/<source folder name>`` (or ``.zip``)."""
    name = db.conn.execute("SELECT name FROM scans WHERE scan_key = ?", [scan_key]).fetchone()[0]
    return out / (f"{name}.zip" if as_zip else name)


def write_scan(db, scan_key: str, trial_ids: np.ndarray, neurons: np.ndarray | None, out: Path,
               as_zip: bool) -> Path:
    """Write the scan folder (or zip) under ``out``, named like the source folder; returns it."""
    from . import reserve

    name, kind, n_neurons, response_dtype, behavior_dtype, pupil_dtype = db.conn.execute(
        "SELECT name, kind, n_neurons, response_dtype, behavior_dtype, pupil_center_dtype FROM scans "
        "WHERE scan_key = ?", [scan_key]).fetchone()
    target = target_of(db, scan_key, out, as_zip)
    partial = reserve(target)
    folder = partial.with_name(partial.name + ".folder") if as_zip else partial
    try:
        _write_files(db, scan_key, trial_ids, neurons, n_neurons, folder)
        _write_trials(db, scan_key, trial_ids, neurons, folder, STIMULUS_KEY[kind],
                      {"responses": response_dtype, "behavior": behavior_dtype, "pupil_center": pupil_dtype})
        if as_zip:
            _zip_folder(folder, partial, name)
            shutil.rmtree(folder)
        partial.rename(target)
    except BaseException:
        for leftover in (partial, folder):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            elif leftover.exists():
                leftover.unlink()
        raise
    return target


def _write_files(db, scan_key: str, trial_ids: np.ndarray, neurons: np.ndarray | None, n_neurons: int,
                 folder: Path) -> None:
    """Everything outside data/: meta arrays taken for the selection, the rest verbatim."""
    rows = db.conn.execute("SELECT path, content, stored_as FROM scan_files WHERE scan_key = ? ORDER BY path",
                           [scan_key]).fetchall()
    for path, content, stored_as in rows:
        if stored_as is not None:
            content = stored_content(db.database.store, stored_as)
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_taken(path, content, trial_ids, neurons, n_neurons))
    (folder / SOURCE_TRIAL_FILE).parent.mkdir(parents=True, exist_ok=True)
    (folder / SOURCE_TRIAL_FILE).write_bytes(dumps(trial_ids.astype(np.int64)))


def _taken(path: str, content: bytes, trial_ids: np.ndarray, neurons: np.ndarray | None, n_neurons: int) -> bytes:
    """A file's bytes for the export: a per-trial or per-neuron array taken for the selection."""
    if not path.endswith(".npy"):
        return content
    parts = path.split("/")
    if parts[:2] == ["meta", "trials"]:
        return dumps(load(content)[trial_ids])
    if neurons is None:
        return content
    if parts[:2] == ["meta", "neurons"] or (parts[:2] == ["meta", "statistics"] and len(parts) > 2
                                             and parts[2] in PER_NEURON_VARIABLES):
        array = load(content)
        if array.ndim and len(array) == n_neurons:
            return dumps(array[neurons])
    return content


def _write_trials(db, scan_key: str, trial_ids: np.ndarray, neurons: np.ndarray | None, folder: Path,
                  stimulus: str, dtypes: dict[str, str]) -> None:
    """data/<key>/<i>.npy for every selected trial, i in the selection's order."""
    for key in (stimulus, "responses", "behavior", "pupil_center"):
        (folder / "data" / key).mkdir(parents=True, exist_ok=True)
    image_files = {trial: (path, offset, length) for trial, path, offset, length in db.conn.execute(
        "SELECT t.trial_id, i.path, i.pack_offset, i.pack_length FROM trials t JOIN images i USING (image_hash) "
        "WHERE t.scan_key = ?", [scan_key]).fetchall()}
    store = db.database.store
    for start in range(0, len(trial_ids), CHUNK):
        ids = trial_ids[start:start + CHUNK]
        chunk = pa.table({"scan_key": pa.array([scan_key] * len(ids), pa.string()), "trial_id": pa.array(ids)})
        arrays = db.fetch(chunk, "responses", "behavior", "pupil_center",
                          neurons=None if neurons is None else {scan_key: neurons})
        arrays = {key: arrays[key].astype(dtypes[key], copy=False) for key in arrays}
        images = read_image_files(store, [image_files[trial_id] for trial_id in ids.tolist()])
        for offset, image in enumerate(images):
            i = start + offset
            (folder / "data" / stimulus / f"{i}.npy").write_bytes(image)
            for key, array in arrays.items():
                (folder / "data" / key / f"{i}.npy").write_bytes(dumps(array[offset]))


def _zip_folder(folder: Path, target: Path, name: str) -> None:
    """A zip as real scans ship: one top-level folder named like the zip."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{name}/{path.relative_to(folder).as_posix()}")
