"""One function per report figure: numbers from ``numbers`` in, a matplotlib Figure out."""

from __future__ import annotations

import numpy as np

from . import numbers

BEHAVIOR_LABELS = {"pupil_dilation": "pupil dilation", "pupil_dilation_derivative": "pupil dilation derivative",
                   "running_speed": "running speed", "pupil_x": "pupil x", "pupil_y": "pupil y"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _colors(labels) -> dict[str, tuple]:
    cmap = _pyplot().get_cmap("tab10")
    return {label: cmap(i % 10) for i, label in enumerate(sorted(set(labels)))}


def neurons_per_area_layer(counts: dict[tuple[str, str], int], scan: str):
    plt = _pyplot()
    areas = sorted({a for a, _ in counts})
    layers = sorted({layer for _, layer in counts})
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(layers), 1)
    for i, layer in enumerate(layers):
        heights = [counts.get((a, layer), 0) for a in areas]
        bars = ax.bar(np.arange(len(areas)) + i * width, heights, width, label=layer)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(np.arange(len(areas)) + width * (len(layers) - 1) / 2, areas)
    ax.set(xlabel="area", ylabel="neurons", title=f"{scan}: neurons per area and layer")
    ax.legend(title="layer")
    fig.tight_layout()
    return fig


def neuron_positions(neurons: numbers.Neurons, scan: str):
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    for area, color in _colors(neurons.area).items():
        chosen = neurons.area == area
        left.scatter(neurons.x[chosen], neurons.y[chosen], s=4, color=color, label=f"{area} ({chosen.sum()})")
    left.set(xlabel="x (µm)", ylabel="y (µm)", title="positions, coloured by area")
    left.set_aspect("equal", adjustable="datalim")
    left.legend(markerscale=3, fontsize=8)
    right.hist(neurons.z[~np.isnan(neurons.z)], bins=30, color="grey")
    right.set(xlabel="z, depth (µm)", ylabel="neurons", title="depth")
    fig.suptitle(f"{scan}: neuron positions")
    fig.tight_layout()
    return fig


def trials_per_tier(counts: dict[str, int], scan: str):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(counts)), 3.5))
    bars = ax.bar(list(counts), list(counts.values()), color="steelblue")
    ax.bar_label(bars)
    ax.margins(y=0.12)  # room for the counts above the tallest bar
    ax.set(xlabel="tier", ylabel="trials", title=f"{scan}: trials per tier")
    if len(counts) > 4:  # dynamic scans' six tiers: long names side by side overlap
        ax.tick_params(axis="x", labelrotation=30)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    fig.tight_layout()
    return fig


def responses_per_area(distribution: numbers.ResponseDistribution, means: dict[tuple[str, str], float], scan: str,
                       withheld: list[str] = ()):
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1, 1.15]})
    colors = _colors(distribution.histograms)
    centres = np.sqrt(numbers.LOG_BINS[:-1] * numbers.LOG_BINS[1:])
    for area, counts in distribution.histograms.items():
        total = counts.sum()
        share = np.where(counts > 0, counts / max(total, 1), np.nan)  # empty bins: no line down to zero
        left.plot(centres, share, color=colors[area],
                  label=f"{area} ({distribution.zero_fraction[area]:.0%} exactly 0)")
    left.set_xscale("log")
    left.set(xlabel="response (positive values, log scale)", ylabel="fraction of positive values",
             title=f"distribution per area ({distribution.n_trials} trials)")
    left.legend(fontsize=8)
    areas = sorted({a for a, _ in means})
    tiers = sorted({t for _, t in means})
    width = 0.8 / max(len(tiers), 1)
    for i, tier in enumerate(tiers):
        right.bar(np.arange(len(areas)) + i * width, [means.get((a, tier), np.nan) for a in areas], width, label=tier)
    right.set_xticks(np.arange(len(areas)) + width * (len(tiers) - 1) / 2, areas)
    right.set(xlabel="area", ylabel="mean response", title="mean response by tier")
    right.legend(title="tier", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside, never on, the bars
    if withheld:
        right.text(1.01, 0.0, "withheld\n(zero-filled):\n" + "\n".join(withheld), transform=right.transAxes,
                   fontsize=8, va="bottom", color="dimgrey")
    fig.suptitle(f"{scan}: responses per area")
    fig.tight_layout()
    return fig


def behavior_over_order(behavior: numbers.BehaviorOverOrder, scan: str):
    plt = _pyplot()
    fig, axes = plt.subplots(len(behavior.values), 1, figsize=(10, 1.6 * len(behavior.values)), sharex=True)
    for ax, (column, values) in zip(axes, behavior.values.items()):
        ax.plot(behavior.order, values, lw=0.6, color="black")
        ax.set_ylabel(BEHAVIOR_LABELS[column], fontsize=8)
    note = "" if behavior.by == "trial_idx" else " (trial_idx is not numeric: file order)"
    axes[-1].set_xlabel(f"{behavior.by}, presentation order{note}")
    fig.suptitle(f"{scan}: behavior and pupil position over the session")
    fig.tight_layout()
    return fig


def oracle_per_area(oracle: np.ndarray, areas: np.ndarray, tier: str, scan: str, stimuli: str = "images"):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(-0.2, 1.0, 49)
    for area, color in _colors(areas).items():
        values = oracle[(areas == area) & ~np.isnan(oracle)]
        if values.size:
            median = f"{np.median(values):.2f}".replace("-0.00", "0.00")
            ax.hist(np.clip(values, bins[0], bins[-1]), bins, histtype="step", lw=1.5, color=color,
                    label=f"{area}: median {median} (n={values.size})")
    ax.set(xlabel="oracle correlation (repeat vs. mean of the other repeats; below -0.2 counted at -0.2)",
           ylabel="neurons", title=f"{scan}: repeat reliability per area ({tier} {stimuli})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def mean_response_over_frames(traces: dict[str, np.ndarray], tier: str, scan: str):
    """Dynamic scans: mean response per frame of each area over the repeated videos."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    for area, color in _colors(traces).items():
        ax.plot(np.arange(len(traces[area])), traces[area], color=color, label=area)
    ax.set(xlabel="frame (30 Hz)", ylabel="mean response", title=f"{scan}: mean response over frames ({tier} videos)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _grid(n: int, size: float = 4.0):
    """``n`` square panels, up to three a row; the unused ones hidden."""
    plt = _pyplot()
    columns = min(n, 3)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(max(6.5, size * columns + 1), size * rows + 1.0), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, list(axes.ravel()[:n])


def _diagonal(ax, x: np.ndarray, y: np.ndarray) -> None:
    values = np.concatenate([x, y])
    values = values[~np.isnan(values)]
    low, high = (min(values.min(), 0.0), max(values.max(), 0.0)) if values.size else (0.0, 1.0)
    pad = 0.05 * (high - low or 1.0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], ls="--", lw=1, color="grey", label="diagonal")
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.set_aspect("equal")


def model_scores_per_area(scores: numbers.ModelScores, scan: str):
    """Each model's mean single-trial correlation per area (and over all neurons), side by side."""
    plt = _pyplot()
    groups = [g for g in scores.n_neurons if g != "all"] + ["all"]
    models = scores.models
    fig, ax = plt.subplots(figsize=(max(7, 0.5 * len(groups) * len(models) + 2), 4.2))
    width = 0.8 / max(len(models), 1)
    for i, model in enumerate(models):
        heights = [scores.per_area[model][g] for g in groups]
        bars = ax.bar(np.arange(len(groups)) + i * width, heights, width, label=model)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(np.arange(len(groups)) + width * (len(models) - 1) / 2,
                  [f"{g}\n(n={scores.n_neurons[g]})" for g in groups])
    ax.set(xlabel="area", ylabel="mean single-trial correlation",
           title=f"{scan}: models per area ({scores.tier} tier)")
    ax.legend(title="model", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def model_vs_oracle(scores: numbers.ModelScores, oracle: np.ndarray, oracle_tier: str, scan: str):
    """Per neuron and model: single-trial correlation against oracle correlation (the ceiling)."""
    fig, axes = _grid(len(scores.models))
    colors = _colors(scores.areas)
    for ax, model in zip(axes, scores.models):
        values = scores.correlation[model]
        for area, color in colors.items():
            chosen = scores.areas == area
            ax.scatter(oracle[chosen], values[chosen], s=6, color=color, label=area)
        _diagonal(ax, oracle, values)
        ax.set(xlabel=f"oracle correlation ({oracle_tier})", ylabel="single-trial correlation", title=model)
        ax.legend(fontsize=7, markerscale=2)
    fig.suptitle(f"{scan}: model against the oracle ceiling\n(per neuron, {scores.tier} tier)")
    fig.tight_layout()
    return fig


def model_vs_model(scores: numbers.ModelScores, scan: str):
    """Per neuron: the best model's single-trial correlation against each other model's."""
    best = scores.best()
    others = [m for m in scores.models if m != best]
    fig, axes = _grid(len(others))
    colors = _colors(scores.areas)
    x = scores.correlation[best]
    for ax, model in zip(axes, others):
        y = scores.correlation[model]
        for area, color in colors.items():
            chosen = scores.areas == area
            ax.scatter(x[chosen], y[chosen], s=6, color=color, label=area)
        _diagonal(ax, x, y)
        both = ~(np.isnan(x) | np.isnan(y))
        ax.set(xlabel=best, ylabel=model,
               title=f"{model} better on {int((y[both] > x[both]).sum())} of {int(both.sum())} neurons")
        ax.legend(fontsize=7, markerscale=2)
    fig.suptitle(f"{scan}: model against model\n(single-trial correlation per neuron, {scores.tier} tier)")
    fig.tight_layout()
    return fig
