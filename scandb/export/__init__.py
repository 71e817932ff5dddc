"""Out of the database: a selection as scan folders, Parquet tables or one ``.npz``, or a
model's predictions of it in the Sensorium 2023 submission layout.

``export`` resolves the selection and the neuron choice once, then hands them to one writer
per format; every writer builds its output under a temporary name and renames it into place
only when complete, so a failed export leaves ``out`` as it was.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ..catalog.transaction import explain
from ..errors import UsageError
from ..query import neurons as neuron_choice
from ..query import selection as selecting

FORMATS = ("scan", "parquet", "npz", "submission")
"""``scan``: the source layout, one folder (or zip) per scan, or per experanto session its
whole folder (or tar), bit for bit; ``parquet``: the selected rows of
every table; ``npz``: the selection's aligned arrays in one file; ``submission``: a model's
predictions of the selected trials, one Parquet file per tier as the Sensorium 2023
submission (``submission.py``)."""


@dataclass
class ExportResult:
    """What an export wrote: one path per scan folder or zip, or the one Parquet folder / npz file."""

    format: str
    paths: list[Path] = field(default_factory=list)
    n_trials: int = 0
    n_scans: int = 0

    def summary(self) -> str:
        where = ", ".join(str(p) for p in self.paths)
        what = "session(s)" if self.format.startswith("session") else "scan(s)"
        return f"exported {self.n_trials} trials of {self.n_scans} {what} as {self.format}: {where}"


def export(db, readers, selection, out: str | Path, neurons=None, *, format: str = "scan", zip: bool = False,
           params=None, scan: str | None = None, model: str | None = None) -> ExportResult:
    """Write the selected trials (and ``neurons``) of ``db`` (a ``ScanDB``; ``readers`` its
    per-scan readers) under ``out``; ``model`` names the model whose predictions
    ``format="submission"`` writes."""
    if format not in FORMATS:
        raise UsageError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if zip and format != "scan":
        raise UsageError("zip=True (--zip) applies to format 'scan' only")
    if model is not None and format != "submission":
        raise UsageError("model= (--model) applies to format 'submission' only")
    if format == "submission" and model is None:
        raise UsageError("format 'submission' writes a model's predictions: name the model (model=NAME, "
                         "--model NAME)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder; export writes into a folder")
    made = not out.exists()
    try:
        return _export(db, readers, selection, out, neurons, format, zip, params, scan, model)
    except BaseException:
        if made:  # a failed export leaves no empty folder it made (the partial outputs are gone already)
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def _export(db, readers, selection, out: Path, neurons, format: str, zip: bool, params, scan, model) -> ExportResult:
    selected = selecting.resolve(db.database, selection, params, scan)
    if selected.num_rows == 0:
        raise UsageError("the selection names no trials; nothing to export")
    scans = list(dict.fromkeys(selected["scan_key"].to_pylist()))
    sessions = _sessions_among(db, scans)
    if sessions:
        return _export_sessions(db, selected, sessions, scans, out, format, zip, neurons)
    selecting.check(selected, readers)
    picked = neuron_choice.picks(readers, scans, _neurons_of(db, neurons)) or {}
    if format == "scan":
        from .scanfolder import target_of, write_scan

        for scan_key in scans:  # every target checked before the first is written
            _refuse_existing(target_of(db, scan_key, out, zip))

        paths = [write_scan(db, scan_key, _trials_of(selected, scan_key), picked.get(scan_key), out, zip)
                 for scan_key in scans]
    elif format == "submission":
        from .submission import write_submission

        paths = write_submission(db, selected, picked, out, model)
    elif format == "parquet":
        from .tables import write_parquet

        paths = [write_parquet(db, selected, picked, out)]
    else:
        from .tables import write_npz

        paths = [write_npz(db, selected, picked, out)]
    return ExportResult(format, paths, selected.num_rows, len(scans))


def _sessions_among(db, scans: list[str]) -> list[str]:
    kinds = dict(db.conn.execute("SELECT scan_key, kind FROM scans").fetchall())
    return [scan for scan in scans if kinds.get(scan) == "experanto"]


def _export_sessions(db, selected, sessions: list[str], scans: list[str], out: Path, format: str, as_tar: bool,
                     neurons) -> ExportResult:
    """experanto sessions are exported whole, as their folders (or tars), in format ``scan`` only."""
    from .session import check_whole, session_target, write_session

    if format != "scan":
        raise UsageError(f"session {sessions[0]}: an experanto session exports as its folder (format 'scan', "
                         f"--zip for a tar); format {format!r} is for scans")
    if len(sessions) != len(scans):
        other = next(s for s in scans if s not in sessions)
        raise UsageError(f"the selection mixes experanto sessions ({sessions[0]}) and scans ({other}); "
                         "export them separately")
    for scan_key in sessions:
        check_whole(db, scan_key, _trials_of(selected, scan_key).tolist(), neurons)
        _refuse_existing(session_target(db, scan_key, out, as_tar))
    paths = [write_session(db, scan_key, out, as_tar) for scan_key in sessions]
    return ExportResult("session tar" if as_tar else "session folder", paths, selected.num_rows, len(sessions))


def _neurons_of(db, neurons):
    """A SQL string naming neurons becomes its result (a DataFrame with scan_key, neuron_idx)."""
    if isinstance(neurons, str):
        try:
            frame = db.sql(neurons).df()
        except duckdb.Error as exc:
            raise explain(exc, "neurons query", users_sql=True) from None
        if "scan_key" not in frame.columns or not {"neuron_idx", "unit_id"} & set(frame.columns):
            raise UsageError("the neurons query must return scan_key and neuron_idx (or unit_id) columns; "
                             f"it returns {', '.join(frame.columns)}")
        return frame
    return neurons


def _trials_of(selected, scan_key: str):
    """The selected trial ids of one scan, in the selection's order (repeats kept)."""
    import numpy as np

    scans = selected["scan_key"].to_numpy(zero_copy_only=False)
    return selected["trial_id"].to_numpy()[scans == scan_key].astype(np.int64)


def _refuse_existing(target: Path) -> None:
    if target.exists():
        raise UsageError(f"{target}: already exists; remove it or export to another folder")


def reserve(target: Path) -> Path:
    """The temporary sibling an output is built under; the target itself must not exist yet."""
    _refuse_existing(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    if partial.exists():
        import shutil

        shutil.rmtree(partial) if partial.is_dir() else partial.unlink()
    return partial
