"""``scandb report``: what a scientist looks at first when a scan arrives, as figures.

``numbers`` computes what each figure shows (checked by the tests), ``figures`` draws it,
``page`` writes the PNGs and one self-contained HTML page. When models have scores for the
scan (``db.add_predictions``), a model section follows: each model per area, against the
neurons' oracle ceiling, and against the best model. matplotlib is optional
(``pip install "scandb[report]"``) and imported only here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError


@dataclass
class ReportResult:
    """The files a report wrote: one PNG per figure, by name, and the HTML page."""

    scan: str
    figures: dict[str, Path] = field(default_factory=dict)
    html: Path | None = None

    def summary(self) -> str:
        return f"{self.scan}: {len(self.figures)} figures and {self.html}"


def write_report(db, scan: str, out: Path) -> ReportResult:
    """Draw every figure of ``scan`` into ``out`` (created if missing)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError('the report needs matplotlib; install it with: pip install "scandb[report]"') from None
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    from . import numbers
    from .page import draw_all, model_table, unavailable, write_page

    out.mkdir(parents=True, exist_ok=True)
    figures = draw_all(db, scan, out)
    page = write_page(scan, figures, out, unavailable(db, scan), model_table(numbers.model_scores(db, scan)))
    return ReportResult(scan, figures, page)
