"""One scan at a glance: what ``scandb info`` prints and ``ScanDB.summary`` returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np

from ..errors import UsageError


@dataclass(frozen=True)
class ScanSummary:
    scan_key: str
    name: str
    source_name: str
    ingested_at: datetime
    n_trials: int
    n_neurons: int
    image_shape: tuple[int, ...]
    image_dtype: str
    trials_per_tier: dict[str, int]
    neurons_per_area_layer: dict[tuple[str | None, str | None], int]
    n_image_files: int
    n_image_ids: int
    statistics: dict[tuple[str, str], list[str]]
    """(variable, source) -> the stats stored for it."""

    def text(self) -> str:
        tiers = ", ".join(f"{t} {c}" for t, c in self.trials_per_tier.items())
        areas = ", ".join(f"{a or '?'} {l or '?'} {c}" for (a, l), c in self.neurons_per_area_layer.items())
        stats = "; ".join(f"{v}/{s}: {', '.join(st)}" for (v, s), st in self.statistics.items())
        return "\n".join([
            f"scan {self.scan_key}: {self.name}",
            f"  source      {self.source_name}, ingested {self.ingested_at:%Y-%m-%d %H:%M}",
            f"  trials      {self.n_trials}: {tiers}",
            f"  neurons     {self.n_neurons}: {areas}",
            f"  images      {self.image_shape} {np.dtype(self.image_dtype).name}, {self.n_image_files} distinct "
            f"files, {self.n_image_ids} image ids",
            f"  statistics  {stats or 'none'}"])


def scan_summary(conn: duckdb.DuckDBPyConnection, scan: str) -> ScanSummary:
    found = conn.execute("SELECT name, source_name, ingested_at, n_trials, n_neurons, image_shape, image_dtype "
                         "FROM scans WHERE scan_key = ?", [scan]).fetchone()
    if found is None:
        known = [r[0] for r in conn.execute("SELECT scan_key FROM scans ORDER BY 1").fetchall()]
        raise UsageError(f"no scan {scan!r} in the database (it holds: {', '.join(known) or 'nothing'})")
    name, source, when, n_trials, n_neurons, shape, dtype = found
    tiers = conn.execute("SELECT tier, count(*) FROM trials WHERE scan_key = ? GROUP BY tier ORDER BY tier",
                         [scan]).fetchall()
    areas = conn.execute("SELECT area, layer, count(*) FROM neurons WHERE scan_key = ? "
                         "GROUP BY ALL ORDER BY ALL", [scan]).fetchall()
    stats = conn.execute("SELECT variable, source, list(stat ORDER BY stat) FROM statistics "
                         "WHERE scan_key = ? GROUP BY ALL ORDER BY ALL", [scan]).fetchall()
    files, ids = conn.execute("SELECT count(DISTINCT image_hash), count(DISTINCT image_id) FROM trials "
                              "WHERE scan_key = ?", [scan]).fetchone()
    return ScanSummary(scan, name, source, when, n_trials, n_neurons, tuple(shape), dtype,
                       dict(tiers), {(a, l): c for a, l, c in areas}, files, ids,
                       {(v, s): list(st) for v, s, st in stats})
