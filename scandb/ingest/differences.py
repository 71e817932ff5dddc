"""What differs between a scan in the database and another file for it, for the one line
that refuses it without ``--replace``. Members outside ``data/`` are recorded byte for byte
(``scan_files``), so they are compared by sha256; of ``data/`` members only the trial and
neuron counts are recorded."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

SHOWN = 3
"""Members named per kind of difference; the rest are counted."""


def describe(conn, scan) -> str:
    """``added ..., removed ..., changed ...`` (first few of each), or what else is known."""
    rows = conn.execute("SELECT path, content, stored_as FROM scan_files WHERE scan_key = ?", [scan.key]).fetchall()
    recorded = {path: _recorded_digest(content, stored_as) for path, content, stored_as in rows}
    arriving = {rel: hashlib.sha256(raw).hexdigest() for rel, raw in scan.files.items()}
    both = recorded.keys() & arriving.keys()
    parts = [f"{label} {_first(names)}" for label, names in (
        ("added", sorted(arriving.keys() - recorded.keys())),
        ("removed", sorted(recorded.keys() - arriving.keys())),
        ("changed", sorted(p for p in both if recorded[p] is not None and recorded[p] != arriving[p]))) if names]
    n_trials, n_neurons = conn.execute("SELECT n_trials, n_neurons FROM scans WHERE scan_key = ?",
                                       [scan.key]).fetchone()
    if scan.n_trials != n_trials:
        parts.append(f"{scan.n_trials} trials instead of {n_trials}")
    if scan.n_neurons != n_neurons:
        parts.append(f"{scan.n_neurons} neurons instead of {n_neurons}")
    if not parts:
        return ("its meta files and trial and neuron counts are the same, so data/ members differ "
                "(their digests are not recorded)")
    return "; ".join(parts)


def _recorded_digest(content: bytes | None, stored_as: str | None) -> str | None:
    """The sha256 of a recorded member: of its bytes, or the name of the store file keeping it."""
    if content is not None:
        return hashlib.sha256(content).hexdigest()
    match = re.fullmatch(r"[0-9a-f]{64}", Path(stored_as or "").name.split(".")[0])
    return match.group(0) if match else None


def _first(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown if len(names) <= SHOWN else f"{shown} and {len(names) - SHOWN} more"
