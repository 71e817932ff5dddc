"""Storing a model's run: its row in ``models``, its predictions, its scores, in one transaction.

The scores are computed before the transaction opens (from the responses scandb already
holds), so the write itself is inserts only; a video scan's predictions go to the store
first (``store/predictions.py``) and are removed again when the transaction rolls back.
On a lake the run is one snapshot, labelled "predictions NAME".
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from .. import __version__
from ..catalog.database import Database
from ..catalog.transaction import insert_arrow, transaction
from ..errors import UsageError
from ..maintenance.report import plural
from ..store.predictions import PredictionStore
from .metrics import METRICS, VideoScores, static_scores
from .predictions import ScanPredictions

VIDEO_CHUNK = 16
"""Video trials whose responses are fetched at once while scoring (a full-size trial is 10 MB)."""


@dataclass
class TierScores:
    scan_key: str
    tier: str
    n_trials: int
    values: dict[str, np.ndarray]

    @property
    def mean_correlation(self) -> float:
        """NaN where no neuron has one (every trial of a video tier within the skipped frames)."""
        values = self.values["single_trial_correlation"]
        finite = values[np.isfinite(values)]
        return float(finite.mean()) if len(finite) else float("nan")


@dataclass
class PredictionResult:
    model: str
    status: str
    """'added' or 'replaced'."""
    n_trials: int
    scans: list[str]
    scored: list[TierScores] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        line = f"{self.model}: {self.status} predictions of {plural(self.n_trials, 'trial')} in " \
               f"{plural(len(self.scans), 'scan')}"
        if self.scored:
            line += "; mean single-trial correlation " + ", ".join(
                f"{s.scan_key} {s.tier} {s.mean_correlation:.3f}" for s in self.scored)
        return line + "".join(f"; {note}" for note in self.notes)


def user_at_host() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def score(fetch_responses, part: ScanPredictions, notes: list[str]) -> list[TierScores]:
    """The scores of each tier of one scan's predictions; a tier with withheld responses is
    left out, said in ``notes``. ``fetch_responses(trial_ids)`` gives the stored responses."""
    scored, withheld = [], []
    for tier in dict.fromkeys(part.tiers.tolist()):
        rows = np.flatnonzero(part.tiers == tier)
        rows = rows[np.argsort(part.trial_ids[rows], kind="stable")]  # the scorers' order: by trial
        if part.withheld[rows].any():
            withheld.append(tier)
            continue
        if part.kind == "static":
            responses = fetch_responses(part.trial_ids[rows])
            values = static_scores(responses, part.values[rows], part.image_ids[rows])
        else:
            video = VideoScores(part.values.shape[1])
            for start in range(0, len(rows), VIDEO_CHUNK):
                chunk = rows[start:start + VIDEO_CHUNK]
                responses = fetch_responses(part.trial_ids[chunk])
                for i, row in enumerate(chunk.tolist()):
                    frames = int(part.n_frames[row])
                    video.add(responses[i, :, :frames].T, part.values[row, :, :frames].T)
            values = video.scores()
        scored.append(TierScores(part.scan_key, tier, len(rows), values))
    if withheld:
        notes.append(f"{part.scan_key}: not scored where responses are withheld ({', '.join(withheld)})")
    return scored


def write(database: Database, name: str, config: tuple[str | None, str], parts: list[ScanPredictions],
          scored: list[TierScores], replace: bool) -> str:
    """The run's rows (and video files) in one transaction; returns 'added' or 'replaced'."""
    conn = database.conn
    store = PredictionStore(database.store)
    created: list[str] = []
    try:
        with transaction(conn):
            database.claim_writes()
            database.label(f"predictions {name}")
            existing = conn.execute("SELECT 1 FROM models WHERE name = ?", [name]).fetchone()
            if existing and not replace:
                raise already_there(database, name)
            if existing:
                delete_model(database, name, f"replaced predictions {name}")
            conn.execute("INSERT INTO models VALUES (?, ?, ?, ?, ?, ?)",
                         [name, config[0], config[1], datetime.now(timezone.utc).replace(tzinfo=None),
                          user_at_host(), __version__])
            for part in parts:
                if part.kind == "static":
                    insert_arrow(conn, "predictions", _static_rows(name, part))
                else:
                    key, new = _write_video(store, part)
                    if new:
                        created.append(key)
                    insert_arrow(conn, "predictions", _video_rows(name, part))
                    conn.execute("INSERT INTO prediction_matrices VALUES (?, ?, ?, ?, ?, ?)",
                                 [name, part.scan_key, key, len(part.trial_ids), int(part.n_frames.max()),
                                  part.values.shape[1]])
            for tier in scored:
                insert_arrow(conn, "neuron_scores", _score_rows(name, tier))
    except BaseException:
        if not database.shared_store:
            store.folder.delete(created)
        raise
    return "replaced" if existing else "added"


def already_there(database: Database, name: str) -> UsageError:
    return UsageError(f"{database.name}: model {name!r} has predictions already; pass replace=True "
                      "(--replace) to swap them, or choose another name")


def delete_model(database: Database, name: str, why: str) -> None:
    """Every row of a model's run (inside the caller's transaction); its video files stay
    for readers that started before, until ``gc``."""
    conn = database.conn
    keys = [r[0] for r in conn.execute("SELECT path FROM prediction_matrices WHERE model = ?", [name]).fetchall()]
    database.catalog.release_keys(conn, "predictions", keys, why)
    for table in ("neuron_scores", "prediction_matrices", "predictions"):
        conn.execute(f"DELETE FROM {table} WHERE model = ?", [name])
    conn.execute("DELETE FROM models WHERE name = ?", [name])


def _write_video(store: PredictionStore, part: ScanPredictions) -> tuple[str, bool]:
    """``(n, T, N)``, time-major, T the longest selected trial, NaN after each trial's end."""
    n, n_neurons = part.values.shape[:2]
    longest = int(part.n_frames.max())

    def rows():
        for row, frames in enumerate(part.n_frames.tolist()):
            out = np.full((longest, n_neurons), np.nan, dtype=np.float32)
            out[:frames] = part.values[row, :, :frames].T
            yield out

    return store.write((n, longest, n_neurons), rows())


def _static_rows(name: str, part: ScanPredictions) -> pa.Table:
    n, n_neurons = part.values.shape
    flat = pa.array(np.ascontiguousarray(part.values, dtype=np.float32).ravel())
    lists = pa.FixedSizeListArray.from_arrays(flat, n_neurons).cast(pa.list_(pa.float32()))
    return pa.table({"model": pa.array([name] * n), "scan_key": pa.array([part.scan_key] * n),
                     "trial_id": pa.array(part.trial_ids, pa.int32()), "prediction": lists})


def _video_rows(name: str, part: ScanPredictions) -> pa.Table:
    n = len(part.trial_ids)
    return pa.table({"model": pa.array([name] * n), "scan_key": pa.array([part.scan_key] * n),
                     "trial_id": pa.array(part.trial_ids, pa.int32()), "row": pa.array(np.arange(n), pa.int32())})


def _score_rows(name: str, tier: TierScores) -> pa.Table:
    n = len(tier.values["single_trial_correlation"])
    columns = {"model": pa.array([name] * n), "scan_key": pa.array([tier.scan_key] * n),
               "neuron_idx": pa.array(np.arange(n), pa.int32()), "tier": pa.array([tier.tier] * n),
               "n_trials": pa.array(np.full(n, tier.n_trials), pa.int32())}
    for metric in METRICS:
        values = np.asarray(tier.values[metric], dtype=np.float64)
        columns[metric] = pa.array(values, mask=~np.isfinite(values))
    return pa.table(columns)
