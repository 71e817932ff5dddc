"""``ScanDB.add_predictions`` and what reads a run back: the steps in order, each elsewhere.

Check the name and configuration, resolve the selection, check and split the predictions
by scan (``predictions.py``), score them against the stored responses (``metrics.py``), then
write everything in one transaction (``writer.py``). Nothing is written until every check
passed and every score is computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import DatabaseError, UsageError
from ..store.predictions import PredictionStore
from .predictions import check_name, config_json, split
from .writer import PredictionResult, already_there, delete_model, score, write


def add_predictions(scandb, name: str, selection, predictions, config: Mapping | None, replace: bool,
                    params: Sequence | None, scan: str | None) -> PredictionResult:
    database = scandb.database
    check_name(name)
    config = config_json(config)
    database.check_revision()
    if not replace and _exists(database.conn, name):
        raise already_there(database, name)
    selected = scandb.select(selection, params, scan)
    parts = split(selected, predictions, lambda scan_key, ids: trial_info(database.conn, scan_key, ids))
    notes: list[str] = []
    scored = []
    for part in parts:
        def responses(trial_ids, scan_key=part.scan_key):
            return scandb.fetch(trial_ids, "responses", scan=scan_key)["responses"]
        scored += score(responses, part, notes)
    with database.writer_lock():
        status = database.retrying(lambda: write(database, name, config, parts, scored, replace),
                                   f"{database.name}: predictions {name}")
    return PredictionResult(name, status, selected.num_rows, [p.scan_key for p in parts], scored, notes)


def remove_predictions(database, name: str) -> int:
    """Delete a model's run (one transaction); returns how many trials it predicted."""
    from ..catalog.transaction import transaction

    database.check_revision()
    conn = database.conn
    if not _exists(conn, name):
        raise UsageError(f"{database.name}: no model {name!r} ({_known(conn)})")
    with database.writer_lock():
        def delete():
            with transaction(conn):
                database.claim_writes()
                database.label(f"removed predictions {name}")
                n = conn.execute("SELECT count(*) FROM predictions WHERE model = ?", [name]).fetchone()[0]
                delete_model(database, name, f"removed predictions {name}")
                return n
        return database.retrying(delete, f"{database.name}: removing predictions {name}")


def trial_info(conn, scan_key: str, trial_ids: np.ndarray) -> dict:
    """What checking and scoring need of a scan and its selected trials, in their order."""
    kind, n_neurons = conn.execute("SELECT kind, n_neurons FROM scans WHERE scan_key = ?", [scan_key]).fetchone()
    rows = conn.execute(
        "SELECT trial_id, tier, image_id, image_hash, coalesce(n_frames, 0), coalesce(responses_withheld, false) "
        "FROM trials WHERE scan_key = ? AND trial_id IN (SELECT unnest(?::INTEGER[]))",
        [scan_key, trial_ids.tolist()]).fetchall()
    by_id = {row[0]: row[1:] for row in rows}
    ordered = [by_id[int(t)] for t in trial_ids]
    columns = list(zip(*ordered))
    return {"kind": kind, "n_neurons": n_neurons, "tiers": np.array(columns[0], dtype=object),
            "image_ids": np.array(columns[1], dtype=np.int64), "image_hashes": np.array(columns[2], dtype=object),
            "n_frames": np.array(columns[3], dtype=np.int64), "withheld": np.array(columns[4], dtype=bool)}


def read_predictions(database, name: str, scan_key: str) -> tuple[np.ndarray, np.ndarray]:
    """A model's predictions of one scan, by trial id: ``(trial_ids, (n, N))`` for a static
    scan, ``(trial_ids, (n, N, T))`` for a video scan, NaN after each trial's end."""
    conn = database.conn
    if not _exists(conn, name):
        raise UsageError(f"{database.name}: no model {name!r} ({_known(conn)})")
    matrix = conn.execute("SELECT path FROM prediction_matrices WHERE model = ? AND scan_key = ?",
                          [name, scan_key]).fetchone()
    if matrix is None:
        table = conn.execute("SELECT trial_id, prediction FROM predictions WHERE model = ? AND scan_key = ? "
                             "ORDER BY trial_id", [name, scan_key]).to_arrow_table()
        if table.num_rows == 0:
            raise UsageError(f"{database.name}: model {name!r} has no predictions of scan {scan_key!r}")
        values = table["prediction"].combine_chunks().flatten().to_numpy()
        return table["trial_id"].to_numpy(), values.reshape(table.num_rows, -1)
    rows = conn.execute("SELECT trial_id, row FROM predictions WHERE model = ? AND scan_key = ? ORDER BY trial_id",
                        [name, scan_key]).fetchall()
    try:
        stored = PredictionStore(database.store).load(matrix[0])
    except (OSError, ValueError) as exc:
        raise DatabaseError(f"{database.store.path(matrix[0])}: predictions file of model {name!r} unreadable "
                            f"({getattr(exc, 'strerror', None) or exc}); run 'scandb verify'") from None
    order = np.array([r[1] for r in rows], dtype=np.int64)
    return np.array([r[0] for r in rows], dtype=np.int64), np.ascontiguousarray(stored[order].transpose(0, 2, 1))


def _exists(conn, name: str) -> bool:
    return conn.execute("SELECT 1 FROM models WHERE name = ?", [name]).fetchone() is not None


def _known(conn) -> str:
    names = [r[0] for r in conn.execute("SELECT name FROM models ORDER BY 1").fetchall()]
    return "models: " + ", ".join(names) if names else "it holds no models"
