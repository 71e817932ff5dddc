"""experanto's ``ChunkDataset`` over one session: which chunk starts it keeps, and each chunk's
values (EXPERANTO_FORMAT.md §3, §6, §7).

Chunk starts are screen sample times ``arange(max_start + 0.5, min_end - 0.5, 1 / rate)``,
over the intersection of every modality's valid interval (``safe_interval_threshold`` 0.5 s
inside it). A start is kept when each of the next ``chunk_size`` screen samples lies in a
trial matching the valid condition (a trial spans ``[its onset, the next trial's onset)``,
the last one never ends) and inside every filter's valid intervals. The condition is a dict
or a list of dicts on ``modality``, ``valid_trial`` and ``tier`` (a list is an OR of ANDs; a
trial without the key has ``"blank"``); ``include_blanks`` appends ``{tier: "blank"}``. The
filters are experanto's ``nan_filter`` (``vicinity`` seconds around any row with a NaN are
invalid), by default on every sequence of the default config; their intervals are
intersected with each other and with the trials'. As in ChunkDataset, filters that leave
nothing valid at all are ignored.

A chunk at start ``s``: per modality the times ``s + offset + arange(chunk_size) / rate``,
rounded to 1e-5 s, sampled and normalised as ``scandb.session.sampling`` does; the screen as
``(C, T, H, W)``; and per modality its times minus the responses' ``start_time`` as float32
(``normalize_timestamps``), else the absolute float64 times.
"""

from __future__ import annotations

from concurrent import futures

import numpy as np

from ..errors import UsageError
from . import gaps
from .config import merged_config
from .modalities import Screen, Sequence
from .sampling import sample_merged

CONDITION_KEYS = ("modality", "valid_trial", "tier")
"""The trial keys a valid condition may use (ChunkDataset's ``meta_conditions``)."""
DEFAULT_MODALITIES = ("screen", "responses", "eye_tracker", "treadmill")
DEFAULT_FILTERS = {name: {"nan_filter": {"vicinity": 0.05}} for name in ("responses", "eye_tracker", "treadmill")}
"""experanto's default config filters every sequence with ``nan_filter(vicinity=0.05)``."""
SAFE_INTERVAL_THRESHOLD = 0.5
TIME_DECIMALS = 5
"""Chunk times are rounded to 1e-5 s."""


def conditions(tier: str | None = "train", valid_condition=None, include_blanks: bool = True) -> list[dict]:
    """The OR of ANDs a trial must match: ``valid_condition`` (a dict or a list of dicts), else
    ``{tier: tier}``; ``include_blanks`` appends ``{tier: "blank"}``. Other keys are refused."""
    if valid_condition is None:
        if tier is None:
            raise UsageError("pass a tier (e.g. tier='train') or a valid_condition")
        valid_condition = {"tier": tier}
    found = [valid_condition] if isinstance(valid_condition, dict) else list(valid_condition)
    found = [dict(c) for c in found]
    for condition in found:
        if not isinstance(condition, dict):
            raise UsageError(f"valid_condition {valid_condition!r}: a dict or a list of dicts")
        unknown = sorted(set(condition) - set(CONDITION_KEYS))
        if unknown:
            raise UsageError(f"valid_condition key {unknown[0]!r} is unknown: ChunkDataset filters trials only "
                             f"on {', '.join(CONDITION_KEYS)} (it raises KeyError on any other)")
    if include_blanks:
        found.append({"tier": "blank"})
    return found


def trial_matches(session, condition_list: list[dict]) -> np.ndarray:
    """Per screen trial, whether it matches any of the conditions."""
    trials = session.screen.trials
    values = {"modality": [t.modality for t in trials],
              "valid_trial": [t.valid if t.valid is not None else "blank" for t in trials],
              "tier": [t.tier for t in trials]}
    matched = np.zeros(len(trials), dtype=bool)
    for condition in condition_list:
        both = np.ones(len(trials), dtype=bool)
        for key, wanted in condition.items():
            both &= np.array([value == wanted for value in values[key]], dtype=bool)
        matched |= both
    return matched


def nan_filter_intervals(seq: Sequence, vicinity: float = 0.05) -> list[tuple[float, float]]:
    """experanto's ``nan_filter``: the valid intervals of ``[start_time, end_time]`` left once
    ``vicinity`` seconds either side of every row holding a NaN are taken out (the rows
    found at ingest for a stored session, ``gaps.nan_rows``)."""
    start, end = seq.start_time, seq.end_time
    delta = 1.0 / seq.sampling_rate
    rows = seq.nan_rows if seq.nan_rows is not None else gaps.nan_rows(seq.data)
    if len(rows) == 0:
        return [(start, end)]
    points = start + rows * delta
    lows, highs = np.maximum(start, points - vicinity), np.minimum(end, points + vicinity)
    merged: list[list[float]] = []
    for low, high in zip(lows.tolist(), highs.tolist()):  # sorted by start already
        if merged and low <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    valid, current = [], start
    for low, high in merged:
        if current < low:
            valid.append((current, low))
        current = max(current, high)
    if current < end:
        valid.append((current, end))
    return valid


def intersect(first: list[tuple[float, float]], second: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The pairwise intersections of two interval lists (experanto's sweep over both, by start)."""
    a, b = sorted(first, key=lambda i: i[0]), sorted(second, key=lambda i: i[0])
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        low, high = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if low <= high:
            out.append((low, high))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def filter_intervals(session, modalities, filters: dict | None = None) -> list[tuple[float, float]] | None:
    """Every configured filter's valid intervals, intersected; None without filters."""
    found = None
    for name in modalities:
        for filter_name, options in (filters or {}).get(name, {}).items():
            if options is None:
                continue
            if filter_name != "nan_filter":
                raise UsageError(f"filter {filter_name!r} of {name}: scandb knows experanto's nan_filter only")
            modality = session.modalities[name]
            if not isinstance(modality, Sequence):
                raise UsageError(f"nan_filter on {name}: experanto's nan_filter reads a sequence, {name} is a "
                                 f"{modality.kind}")
            intervals = nan_filter_intervals(modality, **options)
            found = intervals if found is None else intersect(found, intervals)
    return found


def chunk_settings(config: dict | None = None, modalities=None) -> tuple[dict, tuple[str, ...]]:
    """The merged modality config and the modalities a chunk has (the config's four by default)."""
    full = merged_config(config)
    names = tuple(modalities) if modalities is not None else tuple(
        n for n in full if n in DEFAULT_MODALITIES or n in (config or {}))
    for name in names:
        for key in ("sampling_rate", "chunk_size"):
            value = full.get(name, {}).get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise UsageError(f"config of {name}: {key} {value!r} must be a positive number")
    return full, names


def check_modalities(session, names) -> None:
    """ChunkDataset needs a folder for each modality of its config, screen and responses always."""
    for required in ("screen", "responses"):
        if required not in names:
            raise UsageError(f"a chunk needs {required!r} (ChunkDataset reads the screen's trials and the "
                             "responses' start_time); add it to modalities=")
    missing = [n for n in names if n not in session.modalities]
    if missing:
        raise UsageError(f"session {session.key} has no {missing[0]!r} modality, which the config asks for "
                         f"(ChunkDataset needs every one: {', '.join(names)}); pass modalities= with the ones "
                         f"it has ({', '.join(session.modalities)})")
    if not isinstance(session.modalities["screen"], Screen) or not isinstance(session.modalities["responses"],
                                                                              Sequence):
        raise UsageError(f"session {session.key}: screen must be a screen and responses a sequence")


def valid_chunk_starts(session, config: dict | None = None, modalities=None, *, tier: str | None = "train",
                       valid_condition=None, include_blanks: bool = True, filters: dict | None = None,
                       safe_interval_threshold: float = SAFE_INTERVAL_THRESHOLD) -> np.ndarray:
    """Every start ChunkDataset keeps (its ``_full_valid_sample_times_filtered``), float64 seconds.

    ``filters`` is per modality ``{"nan_filter": {"vicinity": s}}`` (None for the default:
    nan_filter with 0.05 s on each sequence of the default config present in ``modalities``)."""
    full, names = chunk_settings(config, modalities)
    check_modalities(session, names)
    condition_list = conditions(tier, valid_condition, include_blanks)
    starts, ends = zip(*(session.modalities[n].valid_interval for n in names))
    first, last = max(starts) + safe_interval_threshold, min(ends) - safe_interval_threshold
    if first >= last:
        raise UsageError(f"session {session.key}: its modalities overlap for less than "
                         f"2 x {safe_interval_threshold} s; ChunkDataset finds no valid interval")
    rate, size = full["screen"]["sampling_rate"], int(full["screen"]["chunk_size"])
    grid = np.arange(first, last, 1.0 / rate)
    screen = session.screen
    onsets = np.array([t.onset for t in screen.trials], dtype=np.float64)
    trial_ends = np.append(onsets[1:], np.inf)
    matched = trial_matches(session, condition_list)
    intervals = list(zip(onsets[matched].tolist(), trial_ends[matched].tolist()))
    if filters is None:
        filters = {n: DEFAULT_FILTERS[n] for n in names if n in DEFAULT_FILTERS}
    kept = filter_intervals(session, names, filters)
    if kept:  # an empty list is falsy there too: ChunkDataset then ignores the filters
        intervals = intersect(intervals, kept)
    inside = np.zeros(len(grid) + 1, dtype=np.int64)
    for low, high in intervals:
        lo, hi = np.searchsorted(grid, low, "left"), np.searchsorted(grid, high, "left")
        if hi > lo:
            inside[lo] += 1
            inside[hi] -= 1
    mask = np.cumsum(inside[:-1]) > 0
    n = len(grid) - size + 1
    if n <= 0:
        return np.empty(0, dtype=np.float64)
    bad = np.concatenate([[0], np.cumsum(~mask)])
    window_ok = (bad[size:size + n] - bad[:n]) == 0
    window_ok &= grid[np.arange(n) + size - 1] < last
    return grid[:n][window_ok]


def chunk_times(full_config: dict, name: str, start: float) -> np.ndarray:
    """A modality's query times for the chunk at ``start``."""
    settings = full_config[name]
    size, rate = int(settings["chunk_size"]), settings["sampling_rate"]
    offset = settings.get("offset", 0) or 0
    return np.round(start + offset + np.arange(size) / rate, TIME_DECIMALS)


def chunk(session, start: float, config: dict | None = None, modalities=None,
          normalize_timestamps: bool = True, *, settings: tuple[dict, tuple[str, ...]] | None = None,
          beside=None) -> dict:
    """The chunk at ``start`` as numpy arrays: ChunkDataset's item (screen ``(C, T, H, W)``
    float32, sequences ``(T, n_signals)``, and ``timestamps`` per modality). ``settings``:
    ``chunk_settings(config, modalities)``, when the caller made it once for many chunks.
    ``beside``: an executor (``concurrent.futures``) that samples the other modalities while
    this thread makes the screen's frames (cv2 works outside the GIL): the same arrays."""
    full, names = settings if settings is not None else chunk_settings(config, modalities)
    reference = session.modalities["responses"].start_time

    def one(name: str):
        times = chunk_times(full, name, start)
        values = sample_merged(session, times, [name], full)[name]
        if name == "screen" or isinstance(session.modalities[name], Screen):
            values = np.moveaxis(values, -1, 0) if values.ndim == 4 else values[np.newaxis]
            values = np.ascontiguousarray(values, dtype=np.float32)
        return values, (times - reference).astype(np.float32) if normalize_timestamps else times

    screens = [n for n in names if n == "screen" or isinstance(session.modalities[n], Screen)]
    others = [n for n in names if n not in screens]
    if beside is not None and screens and others:
        pending = beside.submit(lambda: [one(name) for name in others])
        try:
            made = {name: one(name) for name in screens}
        except BaseException:
            futures.wait([pending])
            raise
        made.update(zip(others, pending.result()))
    else:
        made = {name: one(name) for name in names}
    out = {name: made[name][0] for name in names}
    out["timestamps"] = {name: made[name][1] for name in names}
    return out
