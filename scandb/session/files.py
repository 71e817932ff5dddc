"""A session's files, from a folder or an uncompressed tar, without extracting anything.

Small files (yml, json, statistics) are read into memory with a bound; large arrays
(``data.mem``, ``data.npy``, stimulus ``.npy``) are memory-mapped. In a tar a member's bytes
are contiguous at ``TarInfo.offset_data``, so ``np.memmap`` maps them straight from the tar
file: opening reads only the tar's headers, and memory stays bounded by what is touched.
Compressed tars cannot be mapped and are refused. Names that escape the session, links,
devices and duplicated names are refused, as ``scandb.source.archive`` does for zips.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import BadScanError
from ..source.archive import is_junk

CHUNK = 8 << 20
"""Bytes read at a time when a large file is streamed (``chunks``)."""
READ_AHEAD = 64 << 20
"""While a file is streamed, the kernel is asked to read this far ahead (``POSIX_FADV_WILLNEED``),
so the disk reads overlap the work on the blocks already read."""


def _read_ahead(fd: int, offset: int, end: int) -> None:
    if offset < end and hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, offset, min(READ_AHEAD, end - offset), os.POSIX_FADV_WILLNEED)
        except OSError:
            pass  # only a hint


def _read_into(fd: int, buffer: bytearray, size: int, offset: int) -> memoryview:
    """Up to ``size`` bytes at ``offset`` into ``buffer``; a view of those read (empty at the end)."""
    view = memoryview(buffer)[:size]
    got = 0
    while got < size:
        n = os.preadv(fd, [view[got:]], offset + got)
        if not n:
            break
        got += n
    return view[:got]


class SessionFiles:
    """A session's files by relative POSIX name (the session root stripped)."""

    label: str
    """The path the user gave, for messages."""
    folder_name: str
    """The session folder's name (a tar's top folder, or its stem)."""

    def names(self) -> list[str]:
        raise NotImplementedError

    def size(self, name: str) -> int:
        raise NotImplementedError

    def read(self, name: str, limit: int) -> bytes:
        raise NotImplementedError

    def head(self, name: str, n: int) -> bytes:
        """The first ``n`` bytes (fewer if the file is shorter): a header, without reading the rest."""
        raise NotImplementedError

    def memmap(self, name: str, dtype: np.dtype, shape: tuple[int, ...], offset: int = 0,
               order: str = "C") -> np.ndarray:
        raise NotImplementedError

    def chunks(self, name: str, size: int = CHUNK, take=None) -> Iterator[bytes | memoryview]:
        """The file's bytes, ``size`` at a time (a large array copied with bounded memory).
        With ``take``, each block is read into the buffer ``take(size)`` returns and a view
        of it is yielded (valid until the buffer is handed out again): no new memory per block."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def bad(self, member: str | None, problem: str) -> BadScanError:
        return BadScanError(self.label, member, problem)

    def has(self, name: str) -> bool:
        return name in self._index()

    def _index(self) -> set[str]:
        if not hasattr(self, "_name_set"):
            self._name_set = set(self.names())
        return self._name_set

    def _check_limit(self, name: str, size: int, limit: int) -> None:
        if size > limit:
            raise self.bad(name, f"file is {size} bytes, more than the {limit} a file of its kind may have")


def _empty_or(shape, dtype, make):
    """``np.memmap`` cannot map zero bytes: an empty array then."""
    if int(np.prod(shape)) == 0:
        return np.empty(shape, dtype=dtype)
    return make()


class FolderFiles(SessionFiles):
    def __init__(self, path: Path):
        self.label = str(path)
        self.folder_name = path.resolve().name
        self._root = path
        self._names: list[str] = []
        for dirpath, dirnames, filenames in os.walk(path):
            rel_dir = Path(dirpath).relative_to(path)
            for entry in dirnames + filenames:
                full = Path(dirpath, entry)
                if full.is_symlink():
                    raise self.bad((rel_dir / entry).as_posix(), "symbolic link in session folder; refused")
                if entry in filenames and not full.is_file():
                    raise self.bad((rel_dir / entry).as_posix(), "not a regular file (a pipe or device?); refused")
            dirnames[:] = sorted(d for d in dirnames if not is_junk(d))
            self._names.extend(n for n in ((rel_dir / f).as_posix() for f in sorted(filenames)) if not is_junk(n))

    def names(self) -> list[str]:
        return list(self._names)

    def size(self, name: str) -> int:
        return (self._root / name).stat().st_size

    def read(self, name: str, limit: int) -> bytes:
        try:
            with open(self._root / name, "rb") as f:
                self._check_limit(name, os.fstat(f.fileno()).st_size, limit)
                return f.read(limit + 1)
        except OSError as exc:
            raise self.bad(name, f"cannot read ({exc.strerror or exc})") from None

    def head(self, name: str, n: int) -> bytes:
        try:
            with open(self._root / name, "rb") as f:
                return f.read(n)
        except OSError as exc:
            raise self.bad(name, f"cannot read ({exc.strerror or exc})") from None

    def chunks(self, name, size=CHUNK, take=None):
        try:
            with open(self._root / name, "rb", buffering=0) as f:
                end = os.fstat(f.fileno()).st_size
                done = 0
                while True:
                    _read_ahead(f.fileno(), done + size, end)
                    block = f.read(size) if take is None else _read_into(f.fileno(), take(size), size, done)
                    if not block:
                        break
                    done += len(block)
                    yield block
        except OSError as exc:
            raise self.bad(name, f"cannot read ({exc.strerror or exc})") from None

    def memmap(self, name, dtype, shape, offset=0, order="C"):
        return _empty_or(shape, dtype, lambda: np.memmap(self._root / name, dtype=dtype, mode="r",
                                                         offset=offset, shape=shape, order=order))


class TarFiles(SessionFiles):
    """An uncompressed tar: headers indexed once, members read or mapped by offset."""

    def __init__(self, path: Path):
        self.label = str(path)
        self._path = path
        try:
            with tarfile.open(path, "r:") as tar:
                members = tar.getmembers()
        except tarfile.ReadError as exc:
            raise self.bad(None, f"not an uncompressed tar ({exc}); unpack a compressed tar first, "
                                 "so its arrays can be memory-mapped") from None
        except (OSError, EOFError) as exc:
            raise self.bad(None, f"cannot read tar ({getattr(exc, 'strerror', None) or exc})") from None
        self._members = self._index_members(members)
        self._fd = os.open(path, os.O_RDONLY)

    def _index_members(self, members: list[tarfile.TarInfo]) -> dict[str, tarfile.TarInfo]:
        files: dict[str, tarfile.TarInfo] = {}
        for info in members:
            name = _safe_name(self, info.name)
            if info.issym() or info.islnk():
                raise self.bad(info.name, "link in tar; refused")
            if info.isdir() or is_junk(name) or not name:
                continue
            if not info.isreg() or info.issparse():
                raise self.bad(info.name, "not a regular file (a device, fifo or sparse file); refused")
            if name in files:
                raise self.bad(info.name, "member name appears twice in the tar")
            files[name] = info
        top = {n.split("/", 1)[0] for n in files}
        if len(top) == 1 and all("/" in n for n in files):
            (self.folder_name,) = top
            return {n.split("/", 1)[1]: info for n, info in files.items()}
        self.folder_name = self._path.name.removesuffix(".tar")
        return files

    def names(self) -> list[str]:
        return list(self._members)

    def size(self, name: str) -> int:
        return self._members[name].size

    def read(self, name: str, limit: int) -> bytes:
        info = self._members[name]
        self._check_limit(name, info.size, limit)
        data = os.pread(self._fd, info.size, info.offset_data)
        if len(data) < info.size:
            raise self.bad(name, "member is cut short by the end of the tar")
        return data

    def head(self, name: str, n: int) -> bytes:
        info = self._members[name]
        return os.pread(self._fd, min(n, info.size), info.offset_data)

    def chunks(self, name, size=CHUNK, take=None):
        info = self._members[name]
        done = 0
        while done < info.size:
            _read_ahead(self._fd, info.offset_data + done + size, info.offset_data + info.size)
            want, at = min(size, info.size - done), info.offset_data + done
            block = os.pread(self._fd, want, at) if take is None else _read_into(self._fd, take(size), want, at)
            if not block:
                raise self.bad(name, "member is cut short by the end of the tar")
            done += len(block)
            yield block

    def memmap(self, name, dtype, shape, offset=0, order="C"):
        info = self._members[name]
        if info.offset_data + info.size > os.fstat(self._fd).st_size:
            raise self.bad(name, "member is cut short by the end of the tar")
        return _empty_or(shape, dtype, lambda: np.memmap(self._path, dtype=dtype, mode="r",
                                                         offset=info.offset_data + offset, shape=shape,
                                                         order=order))

    def close(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None


def _safe_name(files: SessionFiles, name: str) -> str:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise files.bad(name, "absolute path in tar; refused")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        raise files.bad(name, "path escapes the session ('..'); refused")
    return "/".join(p for p in parts if p not in ("", "."))


def open_files(path: str | os.PathLike) -> SessionFiles:
    """The files of a session folder or tar."""
    path = Path(path)
    if path.is_dir():
        return FolderFiles(path)
    if not path.exists():
        raise BadScanError(str(path), None, "no such file or folder")
    return TarFiles(path)
