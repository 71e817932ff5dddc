"""The README's lines that let neuralpredictors 0.3.0 import on Python >= 3.10 do so, and
are needed: without them its data package fails on the removed ``collections`` aliases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
IMPORT = "from neuralpredictors.data.datasets import FileTreeDataset"


def readme_shim() -> str:
    """The README's lines before the neuralpredictors import, from ``import collections`` on."""
    text = README.read_text()
    end = text.index(IMPORT)
    start = text.rindex("import collections, collections.abc", 0, end)
    return text[start:end]


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_the_readme_shim_makes_neuralpredictors_import():
    pytest.importorskip("torch")
    if sys.version_info < (3, 10):
        pytest.skip("the aliases exist before Python 3.10")
    assert "cannot import name" in run(IMPORT).stderr
    result = run(readme_shim() + IMPORT + "\nfrom neuralpredictors.data.transforms import NeuroNormalizer\n")
    assert result.returncode == 0, result.stderr
