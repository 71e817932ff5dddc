"""Every figure of a scan as a PNG, and one HTML page with the PNGs embedded."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from . import figures, numbers

HTML_FILE = "report.html"
CAPTIONS = {
    "neurons_per_area_layer": "Neurons per brain area and cortical layer.",
    "neuron_positions": "Neuron positions from cell_motor_coordinates: x, y coloured by area; depth (z) histogram.",
    "trials_per_tier": "Trials per tier.",
    "responses_per_area": "Distribution of positive responses per area (log scale), with the share of exact "
                          "zeros; mean response per area and tier. Trials whose responses were withheld "
                          "(zero-filled test tiers) are left out of both.",
    "behavior_over_order": "Pupil dilation, its derivative, running speed and pupil position in presentation order.",
    "oracle_per_area": "Repeat reliability: per-neuron correlation of each repeat with the mean of the other "
                       "repeats of its image, pooled over images (db.oracle).",
    "mean_response_over_frames": "Mean response per frame and area over the repeated (oracle) videos.",
    "model_scores_per_area": "Each model's mean single-trial correlation (db.scores) per area and over all "
                             "neurons, in the tier named in the title: the Sensorium metric both static and video "
                             "scans have (video scans: the first 50 frames of each trial skipped).",
    "model_vs_oracle": "Per neuron, each model's single-trial correlation against the neuron's oracle "
                       "correlation (neuron_quality.oracle_correlation): the repeat reliability, roughly the "
                       "ceiling a model of the stimulus reaches. Dashed: the diagonal.",
    "model_vs_model": "Per neuron, the best model's single-trial correlation (x, highest mean over all neurons) "
                      "against each other model's (y): above the dashed diagonal the other model predicts the "
                      "neuron better.",
}
MODEL_FIGURES = ("model_scores_per_area", "model_vs_oracle", "model_vs_model")


def draw_all(db, scan: str, out: Path) -> dict[str, Path]:
    """Compute, draw and save each figure; returns {name: PNG path}, in reading order."""
    kind, = db.conn.execute("SELECT kind FROM scans WHERE scan_key = ?", [scan]).fetchone()
    cells = numbers.neurons(db, scan)
    tier = numbers.repeat_tier(db, scan)
    drawn = {
        "neurons_per_area_layer": figures.neurons_per_area_layer(numbers.neurons_per_area_layer(db, scan), scan),
        "neuron_positions": figures.neuron_positions(cells, scan),
        "trials_per_tier": figures.trials_per_tier(numbers.trials_per_tier(db, scan), scan),
        "responses_per_area": figures.responses_per_area(
            numbers.response_distribution(db, scan, cells.area), numbers.mean_response_by_tier(db, scan), scan,
            numbers.withheld_tiers(db, scan)),
        "behavior_over_order": figures.behavior_over_order(numbers.behavior_over_order(db, scan), scan),
    }
    if "oracle_per_area" not in unavailable(db, scan):
        drawn["oracle_per_area"] = figures.oracle_per_area(numbers.oracle(db, scan, tier), cells.area, tier, scan,
                                                           "videos" if kind == "dynamic" else "images")
    if kind == "dynamic":
        drawn["mean_response_over_frames"] = figures.mean_response_over_frames(
            _frame_traces(db, scan, cells.area, tier), tier, scan)
    scores = numbers.model_scores(db, scan)
    if scores is not None:
        drawn["model_scores_per_area"] = figures.model_scores_per_area(scores, scan)
        if "model_vs_oracle" not in unavailable(db, scan):
            drawn["model_vs_oracle"] = figures.model_vs_oracle(scores, numbers.oracle(db, scan, tier), tier, scan)
        if len(scores.models) > 1:
            drawn["model_vs_model"] = figures.model_vs_model(scores, scan)
    import matplotlib.pyplot as plt

    paths = {}
    for name, fig in drawn.items():
        paths[name] = out / f"{name}.png"
        fig.savefig(paths[name], dpi=110)
        plt.close(fig)
    return paths


def unavailable(db, scan: str) -> dict[str, str]:
    """Figures a scan cannot have, with why, said on the page in place of an empty plot."""
    tier = numbers.repeat_tier(db, scan)
    if tier in numbers.withheld_tiers(db, scan):
        notes = {"oracle_per_area": f"No repeat reliability: the responses of the {tier} tier (the repeated "
                                    "stimuli) are withheld in this scan (zero-filled, as competition releases "
                                    "ship them), so there are no repeats to correlate."}
        if numbers.model_tier(db, scan) is not None:
            notes["model_vs_oracle"] = (f"No oracle ceiling to compare the models with: the {tier} tier's "
                                        "responses are withheld in this scan.")
        return notes
    return {}


def model_table(scores: numbers.ModelScores | None) -> str:
    """The numbers of the per-area bar chart as an HTML table: one row per area (and all
    neurons), one column per model, the mean single-trial correlation to 4 decimals."""
    if scores is None:
        return ""
    groups = [g for g in scores.n_neurons if g != "all"] + ["all"]
    head = "".join(f"<th>{html.escape(m)}</th>" for m in scores.models)
    body = []
    for group in groups:
        cells = "".join(f"<td>{_number(scores.per_area[m][group])}</td>" for m in scores.models)
        body.append(f'<tr><th>{html.escape(group)}</th><td>{scores.n_neurons[group]}</td>{cells}</tr>')
    return (f'<section id="models"><h2>models</h2>'
            f"<p>{len(scores.models)} model(s) scored on this scan: {html.escape(', '.join(scores.models))}. "
            f"Mean single-trial correlation per area, {html.escape(scores.tier)} tier "
            f"(db.scores; db.score_summary and scandb scores give the other metrics; the competition's FEVE is "
            f"the mean over neurons with FEV &gt;= 0.15).</p>"
            f'<table class="models"><thead><tr><th>area</th><th>neurons</th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></section>")


def _number(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.4f}"


def _frame_traces(db, scan: str, areas: np.ndarray, tier: str) -> dict[str, np.ndarray]:
    """Mean response per frame of each area over the trials of ``tier`` (NaN padding ignored)."""
    ids = np.concatenate(list(db.repeats(scan, tier).values()) or [np.array([], np.int64)])
    responses = db.responses(ids, scan=scan)
    played = np.flatnonzero(~np.isnan(responses).all(axis=(0, 1)))  # frames some trial still runs
    responses = responses[..., :played[-1] + 1 if played.size else 0]
    return {area: np.nanmean(responses[:, areas == area], axis=(0, 1)) for area in sorted(set(areas.tolist()))}


def write_page(scan: str, figures_: dict[str, Path], out: Path, notes: dict[str, str] | None = None,
               models: str = "") -> Path:
    """One HTML file that needs nothing beside it: every PNG inlined as base64; a figure the
    scan cannot have is a paragraph saying why (``notes``), in its place; ``models`` (the
    ``model_table``, when models are scored on the scan) opens the model figures."""
    sections = []
    notes = notes or {}
    for name in [n for n in CAPTIONS if n in figures_ or n in notes]:
        if name == MODEL_FIGURES[0] and models:
            sections.append(models)
        if name not in figures_:
            sections.append(f'<section><h2>{html.escape(name.replace("_", " "))}</h2>'
                            f'<p class="unavailable">{html.escape(notes[name])}</p></section>')
            continue
        path = figures_[name]
        data = base64.b64encode(path.read_bytes()).decode()
        sections.append(f'<section><h2>{html.escape(name.replace("_", " "))}</h2>'
                        f'<p>{html.escape(CAPTIONS[name])}</p>'
                        f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}"></section>')
    page = out / HTML_FILE
    page.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>scan {html.escape(scan)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}} img{{max-width:100%}}
table.models{{border-collapse:collapse}} table.models td,table.models th{{border:1px solid #ccc;padding:2px 8px}}
table.models td{{text-align:right}}</style></head>
<body><h1>scan {html.escape(scan)}</h1>
{chr(10).join(sections)}
</body></html>
""", encoding="utf-8")
    return page
