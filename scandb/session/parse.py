"""Reading a session's small files (yml, json, .npy) and mapping its large ``.npy`` files.

Every problem is a ``BadScanError`` naming the file: YAML is parsed with safe loaders only,
``.npy`` headers with scandb's own parser, which refuses object dtypes (pickles).
"""

from __future__ import annotations

import json
import math

import numpy as np
import yaml

from ..source import npyfile
from .files import SessionFiles

MAX_TEXT = 4 << 20
"""Largest yml or json file read (4 MiB; a trial's yml is ~300 bytes)."""
MAX_SMALL_NPY = 256 << 20
"""Largest ``.npy`` read into memory (statistics, neuron metadata, timestamps, intervals)."""
HEADER_PREFIX = npyfile.MAX_HEADER + 12
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""``safe_load``'s loader in libyaml's C (the same constructors, ~10x faster over a session's
hundreds of trial files) when PyYAML was built with it."""


def require(files: SessionFiles, name: str) -> None:
    if not files.has(name):
        raise files.bad(name, "missing")


def read_yaml(files: SessionFiles, name: str) -> dict:
    require(files, name)
    try:
        content = yaml.load(files.read(name, MAX_TEXT), Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise files.bad(name, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(content, dict):
        raise files.bad(name, f"expected a YAML mapping, found {type(content).__name__}")
    return content


def read_json(files: SessionFiles, name: str) -> dict:
    try:
        content = json.loads(files.read(name, MAX_TEXT))
    except (ValueError, UnicodeDecodeError) as exc:
        raise files.bad(name, f"not valid JSON ({exc})") from None
    if not isinstance(content, dict):
        raise files.bad(name, f"expected a JSON object, found {type(content).__name__}")
    return content


def npy_header(files: SessionFiles, name: str) -> npyfile.NpyHeader:
    require(files, name)
    prefix = files.head(name, HEADER_PREFIX)
    try:
        header = npyfile.parse_header(prefix)
    except npyfile.NpyError as exc:
        raise files.bad(name, str(exc)) from None
    payload = files.size(name) - header.data_offset
    if payload != header.nbytes:
        what = "truncated" if payload < header.nbytes else "trailing bytes after"
        raise files.bad(name, f"{what} data: header says {header.shape} {header.dtype} "
                              f"({header.nbytes} bytes), file holds {payload}")
    return header


def read_npy(files: SessionFiles, name: str, limit: int = MAX_SMALL_NPY) -> np.ndarray:
    """A small ``.npy`` file's array, in memory."""
    require(files, name)
    try:
        return npyfile.load(files.read(name, limit)).copy()
    except npyfile.NpyError as exc:
        raise files.bad(name, str(exc)) from None


def map_npy(files: SessionFiles, name: str) -> np.ndarray:
    """A ``.npy`` file's array, memory-mapped read-only (from a folder or inside a tar)."""
    header = npy_header(files, name)
    return files.memmap(name, header.dtype, header.shape, header.data_offset,
                        "F" if header.fortran_order else "C")


def map_raw(files: SessionFiles, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A headerless C-order file (``data.mem``) as a memmap; its size must be exactly the shape's."""
    require(files, name)
    expected = math.prod(shape) * dtype.itemsize
    if files.size(name) != expected:
        raise files.bad(name, f"holds {files.size(name)} bytes; meta.yml's shape {shape} of {dtype} needs {expected}")
    return files.memmap(name, dtype, shape)
