"""Scores read back: per neuron (``ScanDB.scores``) and summarised per model and group (the
leaderboard of ``scandb scores``), in SQL over ``neuron_scores`` joined with ``neurons``."""

from __future__ import annotations

from ..errors import UsageError
from .metrics import FEV_THRESHOLD

GROUPS = {"area": ["area"], "layer": ["layer"], "scan": ["scan_key"], "area-layer": ["area", "layer"],
          "model": []}
"""What ``--by`` groups neurons by (besides the model)."""

PER_NEURON = """
SELECT s.model, s.scan_key, s.neuron_idx, n.unit_id, n.area, n.layer, s.tier, s.n_trials,
       s.single_trial_correlation, s.correlation_to_average, s.fev, s.feve
FROM neuron_scores s JOIN neurons n USING (scan_key, neuron_idx)
"""


def scores_query(models: list[str], scan: str | None, tier: str | None) -> tuple[str, list]:
    clauses, values = [f"s.model IN ({', '.join('?' * len(models))})"], list(models)
    if scan is not None:
        clauses.append("s.scan_key = ?")
        values.append(scan)
    if tier is not None:
        clauses.append("s.tier = ?")
        values.append(tier)
    return PER_NEURON + " WHERE " + " AND ".join(clauses) + " ORDER BY s.model, s.scan_key, s.tier, s.neuron_idx", \
        values


def summary_query(models: list[str], by: str, tier: str | None) -> tuple[str, list]:
    """Per model (and group): neurons, mean single-trial correlation, mean correlation to
    average, and the competition's FEVE (mean over neurons with FEV >= 0.15)."""
    if by not in GROUPS:
        raise UsageError(f"--by {by!r}: one of {', '.join(GROUPS)}")
    group = ", ".join(f"n.{c}" if c != "scan_key" else "s.scan_key" for c in GROUPS[by])
    keys = "s.model, s.tier" + (f", {group}" if group else "")
    where = f"s.model IN ({', '.join('?' * len(models))})" + (" AND s.tier = ?" if tier is not None else "")
    query = f"""
        SELECT {keys}, count(*) AS neurons,
               round(avg(s.single_trial_correlation), 4) AS single_trial_correlation,
               round(avg(s.correlation_to_average), 4) AS correlation_to_average,
               round(avg(s.feve) FILTER (WHERE s.fev >= {FEV_THRESHOLD}), 4) AS feve,
               count(*) FILTER (WHERE s.fev >= {FEV_THRESHOLD}) AS neurons_fev_015
        FROM neuron_scores s JOIN neurons n USING (scan_key, neuron_idx)
        WHERE {where}
        GROUP BY ALL ORDER BY {keys}"""
    return query, list(models) + ([tier] if tier is not None else [])


def check_models(conn, models: list[str] | None, database_name: str) -> list[str]:
    """The models asked for (default: every model), each known."""
    known = [r[0] for r in conn.execute("SELECT name FROM models ORDER BY 1").fetchall()]
    if not models:
        if not known:
            raise UsageError(f"{database_name}: no model has predictions yet (add some with 'scandb predictions add' "
                             "or db.add_predictions)")
        return known
    missing = [m for m in models if m not in known]
    if missing:
        raise UsageError(f"{database_name}: no model {missing[0]!r} "
                         f"({'models: ' + ', '.join(known) if known else 'it holds no models'})")
    return list(models)


def check_tier(conn, models: list[str], tier: str | None, database_name: str) -> None:
    if tier is None:
        return
    tiers = [r[0] for r in conn.execute(
        f"SELECT DISTINCT tier FROM neuron_scores WHERE model IN ({', '.join('?' * len(models))}) ORDER BY 1",
        models).fetchall()]
    if tier not in tiers:
        raise UsageError(f"{database_name}: no scores of tier {tier!r} for {', '.join(models)} "
                         f"(scored tiers: {', '.join(tiers) or 'none'})")
