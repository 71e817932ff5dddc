"""Every table holding a scan's rows, once: what its rows are, how they are digested, removed
and exported.

Digests (``maintenance/digests.py``), verify (``maintenance/consistency.py``), removal
(``schema.delete_scan_rows``) and Parquet export (``export/tables.py``) read this list, so a
new per-scan table is one entry here plus the revision that creates it.
"""

from __future__ import annotations

from dataclasses import dataclass

ROWS_OF_SCAN = "scan_key = ?"


@dataclass(frozen=True)
class ScanTable:
    name: str
    grain: str
    """What one row is: ``scan``, ``trial`` (per trial, or per trial and area), ``neuron``,
    ``file`` (a meta file or statistic of the scan), ``modality`` (an experanto session's
    modality, or a row of one), ``image`` (shared between scans) or
    ``model`` (a model's predictions and scores: added after ingest, so not digested; deleted
    with the scan, whose trials they predict)."""
    kinds: tuple[str, ...] = ("static", "dynamic", "experanto")
    """The kinds of scan that have rows in it."""
    rows: str = ROWS_OF_SCAN
    """SQL condition (one ``?``: the scan key) choosing the scan's rows, for digests."""
    digested: bool = True
    """Whether ingest records a digest of the scan's rows (``scan_digests`` itself is not)."""
    owned: bool = True
    """Whether the rows are the scan's own, deleted with it (images are shared: unused
    ones are deleted after, by what no trial names)."""
    export: str | None = "trials"
    """How Parquet export takes its rows: ``trials`` (rows of the selected trials, with
    their ``export_position``), ``scans`` (every row of the selected scans), ``custom``
    (a query of its own in ``export/tables.py``), or None (not exported)."""


TABLES = (
    ScanTable("scans", "scan", export="scans", owned=False),
    ScanTable("neurons", "neuron", export="custom"),
    ScanTable("trials", "trial"),
    ScanTable("behavior", "trial", kinds=("static",)),
    ScanTable("responses", "trial", kinds=("static",), export="custom"),
    ScanTable("statistics", "file", export="custom"),
    ScanTable("scan_files", "file", export="custom"),
    ScanTable("response_matrices", "file", kinds=("static", "dynamic"), export=None),
    ScanTable("area_responses", "trial", kinds=("static",)),
    ScanTable("frame_behavior", "trial", kinds=("dynamic",)),
    ScanTable("area_frame_responses", "trial", kinds=("dynamic", "experanto")),
    ScanTable("neuron_quality", "neuron", kinds=("static", "dynamic"), export="custom"),
    ScanTable("modalities", "modality", kinds=("experanto",), export=None),
    ScanTable("stimulus_trials", "trial", kinds=("experanto",), export=None),
    ScanTable("trial_means", "trial", kinds=("experanto",), export=None),
    ScanTable("nan_rows", "modality", kinds=("experanto",), export=None),
    ScanTable("time_intervals", "modality", kinds=("experanto",), export=None),
    ScanTable("predictions", "model", kinds=("static", "dynamic"), digested=False, export=None),
    ScanTable("prediction_matrices", "model", kinds=("dynamic",), digested=False, export=None),
    ScanTable("neuron_scores", "model", kinds=("static", "dynamic"), digested=False, export=None),
    ScanTable("images", "image", rows="image_hash IN (SELECT image_hash FROM trials WHERE scan_key = ?)",
              owned=False, export="custom"),
    ScanTable("scan_digests", "scan", digested=False, export=None),
)
"""In the order digests are computed and exported; ``scans`` is deleted last."""

BY_NAME = {table.name: table for table in TABLES}


def digested() -> list[ScanTable]:
    return [table for table in TABLES if table.digested]


def owned() -> list[str]:
    """Tables of a scan's own rows (``scans`` not included: deleted after them)."""
    return [table.name for table in TABLES if table.owned]


def exported(how: str) -> list[str]:
    return [table.name for table in TABLES if table.export == how]
