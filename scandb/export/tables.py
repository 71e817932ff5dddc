"""A selection for tools outside the scan layout: Parquet tables, or one ``.npz`` of arrays.

Parquet: the selected rows of every scan table that has any (the registry in
``catalog/registry.py`` says which and how), hive-partitioned by ``scan_key``
(``trials/scan_key=.../*.parquet``), with ``export_position`` giving each trial's place in
the selection (and, for neurons, in the neuron choice); responses are cut to the chosen
neurons. ``images.parquet`` holds the images (and videos) the trials show: their ``images``
rows, and in ``npy`` each one's ``.npy`` file as stored, byte for byte (``np.load`` of
``io.BytesIO(npy)`` gives the pixels). A dynamic scan's response matrix is not a table: ``format="npz"`` or
the scan layout carry its values.
npz: ``images``, ``responses``, ``behavior``, ``pupil_center`` aligned with ``scan_key`` and
``trial_id``, as ``ScanDB.fetch`` returns them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..catalog import registry
from ..catalog.transaction import explain
from ..errors import UsageError
from ..source.npyfile import load
from ..store.images import read_image_files

PARQUET_FOLDER = "parquet"
NPZ_FILE = "selection.npz"
IMAGES_FILE = "images.parquet"
IMAGES_PER_GROUP = 256
"""Images read and written per Parquet row group: the export's memory stays a few of them."""

def write_parquet(db, selected: pa.Table, picked: dict[str, np.ndarray], out: Path) -> Path:
    """``out/parquet/<table>/scan_key=<key>/*.parquet`` for every scan table with rows of the
    selection (none is written empty); returns the folder."""
    import duckdb

    from . import reserve

    target = out / PARQUET_FOLDER
    partial = reserve(target)
    partial.mkdir()
    conn = db.conn
    scans = list(dict.fromkeys(selected["scan_key"].to_pylist()))
    conn.register("_export_trials", selected.append_column(
        "export_position", pa.array(np.arange(selected.num_rows, dtype=np.int64))))
    conn.register("_export_neurons", _neuron_table(db, scans, picked))
    conn.register("_export_stored", _stored_meta_files(db, scans))
    queries = {
        **{table: f"SELECT * FROM {table} WHERE scan_key IN (SELECT scan_key FROM _export_trials)"
           for table in registry.exported("scans")},
        "neurons": "SELECT n.*, e.export_position FROM neurons n JOIN _export_neurons e USING (scan_key, neuron_idx)",
        "neuron_quality": "SELECT q.*, e.export_position FROM neuron_quality q "
                          "JOIN _export_neurons e USING (scan_key, neuron_idx)",
        "statistics": f"""SELECT s.* REPLACE (coalesce(s.data, v.data) AS data) FROM statistics s
                          LEFT JOIN _export_stored v ON v.scan_key = s.scan_key AND v.path = {STATISTIC_PATH}
                          WHERE s.scan_key IN (SELECT scan_key FROM _export_trials)""",
        "scan_files": """SELECT f.* EXCLUDE (stored_as) REPLACE (coalesce(f.content, v.content) AS content)
                         FROM scan_files f LEFT JOIN _export_stored v USING (scan_key, path)
                         WHERE f.scan_key IN (SELECT scan_key FROM _export_trials)""",
        "responses": """SELECT r.scan_key, r.trial_id, e.export_position, r.image_id,
                               list_select(r.response, c.columns) AS response
                        FROM responses r JOIN _export_trials e USING (scan_key, trial_id)
                        JOIN (SELECT scan_key, list(neuron_idx + 1 ORDER BY export_position) AS columns
                              FROM _export_neurons GROUP BY scan_key) c USING (scan_key)""",
        **{table: f"SELECT t.*, e.export_position FROM {table} t JOIN _export_trials e USING (scan_key, trial_id)"
           for table in registry.exported("trials")},
    }
    try:
        for table, query in queries.items():
            if conn.execute(f"SELECT EXISTS ({query})").fetchone()[0]:
                conn.execute(f"COPY ({query} ORDER BY ALL) TO '{_quoted(partial / table)}' "
                             "(FORMAT parquet, PARTITION_BY (scan_key))")
        _write_images(db, partial / IMAGES_FILE)
        partial.rename(target)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, duckdb.Error):
            raise explain(exc, "parquet export") from None
        raise
    finally:
        conn.unregister("_export_trials")
        conn.unregister("_export_neurons")
        conn.unregister("_export_stored")
    return target


def _write_images(db, target: Path) -> None:
    """``images.parquet``: the selection's ``images`` rows in hash order, each with its
    ``.npy`` file's bytes in ``npy``, written a row group at a time (where an image sits in
    a bucket's pack is the store's business, not the export's: those columns stay behind)."""
    import pyarrow.parquet as pq

    rows = db.conn.execute("""SELECT DISTINCT i.* FROM images i JOIN trials t USING (image_hash)
                              JOIN _export_trials e USING (scan_key, trial_id) ORDER BY i.image_hash""").arrow()
    if isinstance(rows, pa.RecordBatchReader):
        rows = rows.read_all()
    placed = rows.select(["path", "pack_offset", "pack_length"])
    rows = rows.drop_columns(["pack_offset", "pack_length"])
    schema = rows.schema.append(pa.field("npy", pa.binary()))
    store = db.database.store
    with pq.ParquetWriter(target, schema) as writer:
        for start in range(0, max(rows.num_rows, 1), IMAGES_PER_GROUP):
            group = rows.slice(start, IMAGES_PER_GROUP)
            where = placed.slice(start, IMAGES_PER_GROUP).to_pydict()
            files = read_image_files(store, list(zip(where["path"], where["pack_offset"], where["pack_length"])))
            writer.write_table(group.append_column("npy", pa.array(files, pa.binary())))


STATISTIC_PATH = "'meta/statistics/' || s.variable || '/' || s.source || '/' || s.stat || '.npy'"
"""The meta file a ``statistics`` row came from."""


def _stored_meta_files(db, scans: list[str]) -> pa.Table:
    """(scan_key, path, content, data) of the meta files kept in the store rather than in
    their rows (a dynamic scan's time-resolved statistics): the exported tables hold every
    value themselves, the bytes in ``scan_files.content`` and a statistic's values in
    ``statistics.data``, as for the files kept in rows."""
    from ..store.meta import stored_content

    rows = []
    if scans:
        rows = db.conn.execute(f"SELECT scan_key, path, stored_as FROM scan_files WHERE stored_as IS NOT NULL "
                               f"AND scan_key IN ({', '.join('?' * len(scans))}) ORDER BY ALL", scans).fetchall()
    contents, values = [], []
    for _, path, stored_as in rows:
        raw = stored_content(db.database.store, stored_as)
        contents.append(raw)
        is_statistic = path.startswith("meta/statistics/")
        values.append(load(raw).astype(np.float64).ravel() if is_statistic else None)
    return pa.table({"scan_key": pa.array([r[0] for r in rows], pa.string()),
                     "path": pa.array([r[1] for r in rows], pa.string()),
                     "content": pa.array(contents, pa.binary()),
                     "data": pa.array(values, pa.list_(pa.float64()))})


def _neuron_table(db, scans: list[str], picked: dict[str, np.ndarray]) -> pa.Table:
    """(scan_key, neuron_idx, export_position) of the chosen neurons (all of a scan not chosen from)."""
    keys, indexes, positions = [], [], []
    for scan in scans:
        chosen = picked.get(scan)
        if chosen is None:
            n = db.conn.execute("SELECT n_neurons FROM scans WHERE scan_key = ?", [scan]).fetchone()[0]
            chosen = np.arange(n)
        keys += [scan] * len(chosen)
        indexes.append(np.asarray(chosen, np.int64))
        positions.append(np.arange(len(chosen), dtype=np.int64))
    return pa.table({"scan_key": pa.array(keys, pa.string()),
                     "neuron_idx": pa.array(np.concatenate(indexes) if indexes else [], pa.int64()),
                     "export_position": pa.array(np.concatenate(positions) if positions else [], pa.int64())})


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def write_npz(db, selected: pa.Table, picked: dict[str, np.ndarray], out: Path) -> Path:
    """``out/selection.npz``: the fetched arrays plus ``scan_key`` and ``trial_id``; returns it.
    The arrays are fetched before anything is written, so a selection they cannot hold
    leaves no folder behind."""
    from . import _refuse_existing, reserve

    target = out / NPZ_FILE
    _refuse_existing(target)
    try:
        arrays = db.fetch(selected, neurons=picked or None)
    except UsageError as exc:
        raise _one_array_per_key(exc) from None
    created = not out.exists()
    partial = reserve(target)
    try:
        with open(partial, "wb") as f:
            np.savez(f, scan_key=np.asarray(selected["scan_key"].to_pylist(), dtype=str),
                     trial_id=selected["trial_id"].to_numpy(), **arrays)
        partial.rename(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return target


def _one_array_per_key(exc: UsageError) -> UsageError:
    """fetch's "pass per_scan=True" advice, which export has no option for, reworded for an npz."""
    problem, advice = str(exc).partition("; pass per_scan=True")[::2]
    if not advice and "per_scan=True" not in str(exc):
        return exc
    neurons = "neuron counts" in problem
    python = ("export one scan at a time" + (", pass neurons= with as many neurons per scan" if neurons else "")
              + ", or use format='scan' or 'parquet'")
    cli = ("export one scan at a time" + (", pass --neurons with as many neurons per scan" if neurons else "")
           + ", or use --format scan or parquet")
    lead = f"{problem}; an npz holds one array per key:"
    return UsageError(f"{lead} {python}", cli_message=f"{lead} {cli}")
