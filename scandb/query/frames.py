"""Recognising pandas objects without importing pandas: a value can only be a DataFrame
if the caller already imported pandas, so ``scandb sql`` and other paths that never see
one skip pandas' import, a large part of their start-up (BENCHMARKS.md, Numbers behind the
code: pandas import)."""

from __future__ import annotations

import sys


def is_dataframe(value) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def is_series(value) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.Series)
