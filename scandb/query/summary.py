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
    kind: str = "static"
    withheld: dict[str, dict[str, int]] = None
    """tier -> {'responses': trials withheld, 'behavior': trials withheld}, tiers with any."""
    frames_per_tier: dict[str, tuple[int, int, float]] = None
    """dynamic scans: tier -> (shortest, longest, mean) valid length."""
    def text(self) -> str:
        tiers = ", ".join(f"{t} {c}" for t, c in self.trials_per_tier.items())
        areas = _areas_text(self.neurons_per_area_layer)
        stats = "; ".join(f"{v}/{s}: {', '.join(st)}" for (v, s), st in self.statistics.items())
        stimulus = "videos" if self.kind == "dynamic" else "images"
        lines = [
            f"scan {self.scan_key}: {self.name}",
            f"  kind        {self.kind}",
            f"  source      {self.source_name}, ingested {self.ingested_at:%Y-%m-%d %H:%M}",
            f"  trials      {self.n_trials}: {tiers}"]
        if self.frames_per_tier:
            lines.append("  frames      valid length per tier: " + ", ".join(
                f"{t} {low}-{high} (mean {mean:.0f})" for t, (low, high, mean) in self.frames_per_tier.items()))
        withheld = "; ".join(f"{t}: " + ", ".join(f"{key} {n}" for key, n in counts.items() if n)
                             for t, counts in (self.withheld or {}).items())
        lines += [
            f"  withheld    {withheld or 'none'}",
            f"  neurons     {self.n_neurons}: {areas}",
            f"  {stimulus:<11} {self.image_shape} {np.dtype(self.image_dtype).name}, {self.n_image_files} distinct "
            f"files, {self.n_image_ids} {'video' if self.kind == 'dynamic' else 'image'} ids",
            f"  statistics  {stats or 'none'}"]
        return "\n".join(lines)


def scan_summary(conn: duckdb.DuckDBPyConnection, scan: str) -> ScanSummary:
    found = conn.execute("SELECT name, source_name, ingested_at, n_trials, n_neurons, image_shape, image_dtype, kind "
                         "FROM scans WHERE scan_key = ?", [scan]).fetchone()
    if found is None:
        known = [r[0] for r in conn.execute("SELECT scan_key FROM scans ORDER BY 1").fetchall()]
        raise UsageError(f"no scan {scan!r} in the database (it holds: {', '.join(known) or 'nothing'})")
    name, source, when, n_trials, n_neurons, shape, dtype, kind = found
    tiers = conn.execute("SELECT tier, count(*) FROM trials WHERE scan_key = ? GROUP BY tier ORDER BY tier",
                         [scan]).fetchall()
    areas = conn.execute("SELECT area, layer, count(*) FROM neurons WHERE scan_key = ? "
                         "GROUP BY ALL ORDER BY ALL", [scan]).fetchall()
    stats = conn.execute("SELECT variable, source, list(stat ORDER BY stat) FROM statistics "
                         "WHERE scan_key = ? GROUP BY ALL ORDER BY ALL", [scan]).fetchall()
    files, ids = conn.execute("SELECT count(DISTINCT image_hash), count(DISTINCT image_id) FROM trials "
                              "WHERE scan_key = ?", [scan]).fetchone()
    withheld = conn.execute("SELECT tier, count(*) FILTER (WHERE responses_withheld), "
                            "count(*) FILTER (WHERE behavior_withheld) FROM trials WHERE scan_key = ? "
                            "GROUP BY tier HAVING bool_or(responses_withheld OR behavior_withheld) ORDER BY tier",
                            [scan]).fetchall()
    lengths = conn.execute("SELECT tier, min(n_frames), max(n_frames), avg(n_frames) FROM trials "
                           "WHERE scan_key = ? AND n_frames IS NOT NULL GROUP BY tier ORDER BY tier", [scan]).fetchall()
    return ScanSummary(scan, name, source, when, n_trials, n_neurons, tuple(shape), dtype,
                       dict(tiers), {(a, l): c for a, l, c in areas}, files, ids,
                       {(v, s): list(st) for v, s, st in stats}, kind,
                       {t: {"responses": r, "behavior": b} for t, r, b in withheld},
                       {t: (low, high, mean) for t, low, high, mean in lengths})


def _areas_text(counts: dict[tuple[str | None, str | None], int]) -> str:
    """``V1 L2/3 120, ...``; neurons without area and layer said in words, not ``? ?``."""
    parts = []
    for (area, layer), count in counts.items():
        if area is None and layer is None:
            parts.append(f"no area/layer in the scan's meta: {count} neurons")
        else:
            parts.append(f"{area or 'no area'} {layer or 'no layer'} {count}")
    return ", ".join(parts)
