"""BENCHMARKS.md and its plot, from the results of one ``bench.run``."""

from __future__ import annotations

from pathlib import Path

GB = 1000.0  # MB per GB

TARGETS_NOTE = """Targets are scandb's performance goals at real scale; every ratio compares two
numbers measured in this same run on the same files, so a busy machine moves both sides.
"Per-file" is neuralpredictors' FileTreeDataset loop without its cache (one np.load per trial
and key, what its first epoch does); its default cache (use_cache=True) serves later epochs
from memory, compared in "DataLoader epochs" below (python -m bench.loaders)."""


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds == float("inf"):
        from .shell import SLOW_LIMIT
        return f"> {SLOW_LIMIT:.0f} s (stopped)"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**yes**" if ok else "**no**")


def target_rows(r: dict) -> list[tuple[str, str, str, str, str, str]]:
    """(measure, scandb, baseline, ratio, target, met) rows."""
    base = r["baselines"]
    first, scaling = r["scaling"][0], r["scaling"]
    last = scaling[-1]
    worst = max(scaling, key=lambda s: s["ingest"] / s["extract"])
    rows = [
        ("ingest one zip (1st scan, empty db)", _fmt(first["ingest"]), f"unzip {_fmt(first['extract'])}",
         f"{first['ingest'] / first['extract']:.2f}x", "<= 1.0x (aim 0.75x)",
         _met(first["ingest"] <= first["extract"])),
        (f"ingest one zip (worst of {len(scaling)})", _fmt(worst["ingest"]), f"unzip {_fmt(worst['extract'])}",
         f"{worst['ingest'] / worst['extract']:.2f}x", "<= 1.0x", _met(worst["ingest"] <= worst["extract"])),
        (f"ingest all {len(scaling)} zips (sum)", _fmt(sum(s["ingest"] for s in scaling)),
         f"unzip {_fmt(sum(s['extract'] for s in scaling))}",
         f"{sum(s['ingest'] for s in scaling) / sum(s['extract'] for s in scaling):.2f}x", "<= 1.0x",
         _met(sum(s["ingest"] for s in scaling) <= sum(s["extract"] for s in scaling))),
        ("ingest peak memory (max over scans)", f"{max(s['ingest_peak_mb'] for s in scaling):.0f} MB", "",
         "", "<= 1,000 MB", _met(max(s["ingest_peak_mb"] for s in scaling) <= 1000)),
        ("ingest cores kept busy (CPU / wall, 1st scan)", f"{first['ingest_cores']:.2f}", "", "",
         "both cores (>= 1.5)", _met(first["ingest_cores"] >= 1.5)),
    ]
    if "fetch_train" in first:
        shape = "x".join(map(str, base["train_shape"]))
        rows += [
            (f"train responses {shape} float32 (1 scan in db)", _fmt(first["fetch_train"]),
             f"one np.load {_fmt(base['single_npy_train'][0])}",
             f"{first['fetch_train'] / base['single_npy_train'][0]:.1f}x", "<= 2x", _met(
                 first["fetch_train"] <= 2 * base["single_npy_train"][0])),
            ("same, vs per-file loading", _fmt(first["fetch_train"]), f"per-file {_fmt(base['per_file_train'][0])}",
             f"{base['per_file_train'][0] / first['fetch_train']:.1f}x faster", ">= 5x faster",
             _met(base["per_file_train"][0] >= 5 * first["fetch_train"])),
            (f"train responses ({last['scans']} scans in db)", _fmt(last["fetch_train"]),
             f"one np.load {_fmt(base['single_npy_train'][0])}",
             f"{last['fetch_train'] / base['single_npy_train'][0]:.1f}x", "<= 2x",
             _met(last["fetch_train"] <= 2 * base["single_npy_train"][0])),
            ("random batch of 128 trials, 4 keys (1 scan in db)", _fmt(first["fetch_batch"]),
             f"per-file {_fmt(base['per_file_batch'][0])}",
             f"{base['per_file_batch'][0] / first['fetch_batch']:.1f}x faster", ">= 10x faster",
             _met(base["per_file_batch"][0] >= 10 * first["fetch_batch"])),
            (f"same ({last['scans']} scans in db)", _fmt(last["fetch_batch"]),
             f"per-file {_fmt(base['per_file_batch'][0])}",
             f"{base['per_file_batch'][0] / last['fetch_batch']:.1f}x faster", ">= 10x faster",
             _met(base["per_file_batch"][0] >= 10 * last["fetch_batch"])),
        ]
    for question, limit in (("mean response per (scan, area, tier)", 3.0), ("every response to image", 0.5)):
        options = [s for s in r["shell"] if s["question"].startswith(question) and s["scans"] == "all"]
        for shipped in (s for s in options if "shipped" in s["option"]):
            rows.append((f"shell: {question}, {last['scans']} scans", _fmt(shipped["best"]),
                         shipped["option"], "", f"<= {limit:g} s", _met(shipped["best"] <= limit)))
    size = (last["db_mb"] + last["store_mb"]) / last["zip_mb"]
    disk = (last["db_disk_mb"] + last["store_disk_mb"]) / last["zip_mb"]
    rows.append((f"database + image store, {last['scans']} scans",
                 f"{(last['db_mb'] + last['store_mb']) / GB:.2f} GB", f"zips {last['zip_mb'] / GB:.2f} GB",
                 f"{size:.2f}x ({disk:.2f}x allocated)", "<= 1.1x", _met(size <= 1.1)))
    return rows


def _table(header: list[str], rows: list) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def markdown(r: dict, plot_name: str) -> str:
    base, scaling = r["baselines"], r["scaling"]
    out = ["# Benchmarks", ""]
    if r.get("tiny"):
        out += ["**Tiny run (toy scans): these numbers only show the harness works.**", ""]
    out += ["Reproduce (about %.0f minutes; scans are generated once into `bench/data/zips`):" % r["minutes"], "",
            "```", "make bench    # installs the bench extra (matplotlib, py-spy), then:",
            f"              # .venv/bin/{r['command']}", "```", "",
            "## Machine", ""]
    out += [f"- {k}: {v}" for k, v in r["machine"].items()]
    out += [f"- Load average (1/5/15 min) before: {r['load_before']}; after: {r['load_after']} "
            "(other jobs shared the machine when the load exceeds ~0.5)", "",
            "## Data", "",
            "Synthetic scans from `bench/generate.py` with the real scans' ids and sizes: uint8 images "
            "(1, 144, 256) with a natural-photo 1/f spectrum, float32 responses half exactly zero and "
            "heavy-tailed otherwise, 100 test images shown 10 times and shared by all scans. Deflate shrinks "
            "the images to ~90% and responses to ~55% (the assumed real ratios).", ""]
    out += _table(["scan", "trials", "neurons", "zip"],
                  [(s["key"], s["trials"], s["neurons"], f"{s['zip_mb']:.0f} MB") for s in r["scans"]])
    out += ["", "## Targets", "", TARGETS_NOTE, ""]
    out += _table(["measure", "scandb", "baseline", "ratio", "target", "met"], target_rows(r))
    out += ["", f"![benchmarks]({plot_name})", "", "## Scaling: 1 to %d scans in one database" % len(scaling), ""]
    out += _table(["scans", "extract", "ingest", "ratio", "cores", "peak MB", "db MB", "images MB", "zips MB",
                   "train fetch", "batch fetch"],
                  [(s["scans"], _fmt(s["extract"]), _fmt(s["ingest"]), f"{s['ingest'] / s['extract']:.2f}x",
                    f"{s['ingest_cores']:.2f}", f"{s['ingest_peak_mb']:.0f}", f"{s['db_mb']:.0f}",
                    f"{s['store_mb']:.0f}", f"{s['zip_mb']:.0f}", _fmt(s.get("fetch_train")),
                    _fmt(s.get("fetch_batch"))) for s in scaling])
    out += ["", f"Largest database tested: {len(scaling)} scans, {r['largest_db_gb']:.2f} GB "
            "(database file + image store).", ""]
    out += ["## Baselines (first scan)", ""]
    out += _table(["baseline", "best", "first"],
                  [("per-file train responses (FileTreeDataset loop)", _fmt(base["per_file_train"][0]),
                    _fmt(base["per_file_train"][1])),
                   ("per-file batch of 128, 4 keys", _fmt(base["per_file_batch"][0]), _fmt(base["per_file_batch"][1])),
                   ("one np.load of the train matrix", _fmt(base["single_npy_train"][0]),
                    _fmt(base["single_npy_train"][1]))])
    if "sql_arrow_train" in scaling[0]:
        out += ["", f"SQL alone (train rows' `response` lists exported through Arrow, batch 2048): "
                f"{_fmt(scaling[0]['sql_arrow_train'])} with 1 scan, {_fmt(scaling[-1]['sql_arrow_train'])} "
                f"with {len(scaling)}."]
    if r["shell"]:
        out += ["", "## Shell queries (`.venv/bin/duckdb -readonly`, `.timer on`, output discarded)", ""]
        out += _table(["question", "option", "scans", "best", "first"],
                      [(s["question"], s["option"], s["scans"], _fmt(s["best"]), _fmt(s["first"]))
                       for s in r["shell"]])
    if r.get("ingest_profile"):
        out += ["", "## Ingest profile (py-spy, first scan)", "", "```", *r["ingest_profile"], "```"]
    profiles = r.get("fetch_profile") or {}
    if isinstance(profiles, list):
        profiles = {"db.responses(train tier of one scan)": profiles}
    if r.get("readme_sql"):
        from .shell import README_TARGET
        out += ["", f"## README SQL in the DuckDB shell (every statement; target: first run <= {README_TARGET:.0f} s)",
                "", *_table(["statement", "under the comment", "best", "first", "met"],
                            [(f"`{' '.join(q['sql'].split())[:90]}`", q["comment"], _fmt(q["best"]), _fmt(q["first"]),
                              _met(q["first"] <= README_TARGET)) for q in r["readme_sql"]])]
    for call, lines in profiles.items():
        out += ["", f"## Fetch profile: `{call}`, every scan in the database (cProfile, own time)", "", "```",
                *lines, "```"]
    explanation = Path(__file__).with_name("EXPLANATION.md")
    if explanation.exists() and not r.get("tiny"):
        out += ["", explanation.read_text().strip()]
    return "\n".join(out) + "\n"


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scaling, base = r["scaling"], r["baselines"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    n = [s["scans"] for s in scaling]
    ax = axes[0]
    ax.bar([x - 0.2 for x in n], [s["extract"] for s in scaling], 0.4, label="unzip (baseline)")
    ax.bar([x + 0.2 for x in n], [s["ingest"] for s in scaling], 0.4, label="scandb ingest")
    ax.set(xlabel="scan ingested (n-th into the same db)", ylabel="seconds", title="Ingest vs extract, per zip")
    ax.legend()
    ax = axes[1]
    labels, values = ["np.load\n(limit)", "per-file\ntrain"], [base["single_npy_train"][0], base["per_file_train"][0]]
    if "fetch_train" in scaling[0]:
        labels += ["scandb\ntrain", "per-file\nbatch 128", "scandb\nbatch 128"]
        values += [scaling[0]["fetch_train"], base["per_file_batch"][0], scaling[0]["fetch_batch"]]
    ax.bar(labels, values, color=["grey", "tab:red", "tab:blue", "tab:red", "tab:blue"][:len(values)])
    ax.set_yscale("log")
    ax.set(ylabel="seconds (log)", title="Fetching one scan's arrays")
    ax = axes[2]
    ax.plot(n, [s["ingest"] for s in scaling], "o-", label="ingest (s)")
    if "fetch_train" in scaling[0]:
        ax.plot(n, [s["fetch_train"] * 10 for s in scaling], "s-", label="train fetch (s x10)")
        ax.plot(n, [s["fetch_batch"] * 10 for s in scaling], "^-", label="batch fetch (s x10)")
    ax2 = ax.twinx()
    ax2.plot(n, [(s["db_mb"] + s["store_mb"]) / GB for s in scaling], "k--", label="db + images (GB)")
    ax2.set_ylabel("GB")
    ax.set(xlabel="scans in the database", ylabel="seconds", title="Scaling")
    ax.legend(loc="upper left")
    ax2.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


KEPT = "<!-- Written by hand below this line: bench.run keeps it when it writes the sections above. -->"
"""BENCHMARKS.md's other benchmarks (DataLoader epochs, video scans, lakes...) follow this line."""


def with_kept(generated: str, previous: str | None) -> str:
    """The generated report followed by what ``previous`` holds from the ``KEPT`` line on."""
    if not previous or KEPT not in previous:
        return generated
    return generated.rstrip("\n") + "\n\n" + previous[previous.index(KEPT):]


def write(r: dict, markdown_path: Path, plot_path: Path) -> None:
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    plot(r, plot_path)
    previous = markdown_path.read_text() if markdown_path.exists() else None
    markdown_path.write_text(with_kept(markdown(r, plot_path.name), previous))


if __name__ == "__main__":  # re-render from a run's results.json: python -m bench.report OUT/results.json
    import json
    import sys

    results = json.loads(Path(sys.argv[1]).read_text())
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("BENCHMARKS.md")
    write(results, target, target.with_suffix(".png"))
