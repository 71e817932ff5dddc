"""Safe, fast parsing of `.npy` bytes.

Per-trial files of one key share byte-identical headers, so parsed headers are cached by
their bytes: numpy's own parser (``ast.literal_eval``) runs once per distinct header.
Nothing here ever unpickles: object dtypes are refused.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.lib import format as npformat

MAGIC = b"\x93NUMPY"
MAX_HEADER = 10_000


class NpyError(ValueError):
    """The bytes are not a safe, well-formed `.npy` array."""


@dataclass(frozen=True)
class NpyHeader:
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    data_offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize  # per trial read: np.prod is slow on a tuple (BENCHMARKS.md, Numbers behind the code: np.prod)


def header_length(prefix: bytes) -> int:
    """Bytes taken by magic + header, from the first 12 bytes of a file."""
    if len(prefix) < 10 or prefix[:6] != MAGIC:
        raise NpyError("not a .npy file (bad magic)")
    major = prefix[6]
    if major == 1:
        return 10 + int.from_bytes(prefix[8:10], "little")
    if major in (2, 3):
        if len(prefix) < 12:
            raise NpyError("truncated .npy header")
        return 12 + int.from_bytes(prefix[8:12], "little")
    raise NpyError(f"unsupported .npy format version {major}")


@lru_cache(maxsize=256)
def _parse_header(header: bytes) -> NpyHeader:
    fp = io.BytesIO(header)
    try:
        major, _ = npformat.read_magic(fp)
        read = npformat.read_array_header_1_0 if major == 1 else npformat.read_array_header_2_0
        shape, fortran_order, dtype = read(fp, max_header_size=MAX_HEADER)
    except (ValueError, SyntaxError, TypeError) as exc:
        raise NpyError(f"malformed .npy header ({exc})") from None
    if dtype.hasobject:
        raise NpyError("array needs pickle (object dtype); refused")
    if any(d < 0 for d in shape):
        raise NpyError(f"negative dimension in shape {shape}")
    return NpyHeader(dtype, tuple(int(d) for d in shape), bool(fortran_order), len(header))


def parse_header(data: bytes) -> NpyHeader:
    """Header of a `.npy` file whose first bytes are ``data``."""
    n = header_length(data[:12])
    if n > MAX_HEADER + 12:
        raise NpyError("oversized .npy header")
    if len(data) < n:
        raise NpyError("truncated .npy header")
    return _parse_header(bytes(data[:n]))


def load(data: bytes) -> np.ndarray:
    """The array held by complete `.npy` bytes; checks the size matches the header."""
    header = parse_header(data)
    payload = len(data) - header.data_offset
    if payload != header.nbytes:
        what = "truncated" if payload < header.nbytes else "trailing bytes after"
        raise NpyError(f"{what} data: header says {header.shape} {header.dtype} "
                       f"({header.nbytes} bytes), file holds {payload}")
    order = "F" if header.fortran_order else "C"
    arr = np.frombuffer(data, dtype=header.dtype, offset=header.data_offset, count=-1 if header.nbytes else 0)
    return arr.reshape(header.shape, order=order)


def dumps(array: np.ndarray) -> bytes:
    """`.npy` bytes of an array, as ``np.save`` writes them."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()
