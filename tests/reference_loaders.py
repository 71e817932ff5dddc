"""neuralpredictors 0.3.0, the loader Sensorium users know, as a reference for tests."""

from __future__ import annotations

import collections
import collections.abc

import pytest


def import_neuralpredictors(module: str):
    """A neuralpredictors module, importable on Python >= 3.10 once ``collections`` has its
    old aliases back; skips when neuralpredictors (or what it needs) is not installed."""
    for name in ("Iterable", "Mapping", "MutableMapping", "Sequence", "Callable"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    return pytest.importorskip(module)


@pytest.fixture
def neuralpredictors():
    """(NeuroNormalizer, FileTreeDataset). Skips when neuralpredictors or torch is not installed."""
    import_neuralpredictors("neuralpredictors")
    transforms = pytest.importorskip("neuralpredictors.data.transforms")
    datasets = pytest.importorskip("neuralpredictors.data.datasets")
    return transforms.NeuroNormalizer, datasets.FileTreeDataset
