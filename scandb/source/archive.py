"""Uniform, safe access to the members of a scan shipped as a zip or as a folder.

Nothing is ever extracted: members are read into memory one at a time, with reads bounded
by a limit the caller derives from the shapes it expects (a zip bomb cannot inflate past
it). Member names that escape the scan (``..``, absolute paths), symbolic links and
duplicated names are refused, and junk that archivers add is skipped.

Deflated and stored members are inflated by ISA-L (``isal``), faster than zlib at both
inflating and CRC-32 (BENCHMARKS.md, Numbers behind the code: inflate): ``zipfile`` still opens each member
and checks its local header; the compressed bytes are then read in one call, inflated to
at most the declared size, and checked against the declared size and CRC. Other methods
go through ``zipfile``.
"""

from __future__ import annotations

import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from isal import isal_zlib

from ..errors import BadScanError

JUNK_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini", ".gitkeep"}
ZIP_ERRORS = (zipfile.BadZipFile, EOFError, ValueError, OverflowError, struct.error, NotImplementedError)
"""What ``zipfile`` raises on a damaged or unsupported archive (found by fuzzing real zips)."""
INFLATE_ERRORS = (zlib.error, isal_zlib.error)
LOCAL_HEADER = struct.Struct("<4s22xHH")
"""A local file header's signature and, at its end, the lengths of the name and extra field."""
FAST_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


def _reason(exc: Exception) -> str:
    """An exception's message without the ZipInfo repr ``zipfile`` embeds in some of them."""
    if isinstance(exc, RuntimeError) and "encrypted" in str(exc):
        return "encrypted; scandb reads unencrypted zips only"
    return str(exc) or type(exc).__name__


def is_junk(name: str) -> bool:
    """Files archivers and desktops add that are never part of a scan."""
    parts = PurePosixPath(name).parts
    return any(p == "__MACOSX" or p in JUNK_NAMES or p.startswith("._") for p in parts)


class Archive:
    """A scan's files by relative POSIX name; subclasses read a zip or a folder."""

    label: str
    """The path users gave, for messages."""

    def names(self) -> list[str]:
        raise NotImplementedError

    def size(self, name: str) -> int:
        raise NotImplementedError

    def read(self, name: str, limit: int) -> bytes:
        """The member's bytes; refuses a member larger than ``limit`` without inflating it."""
        raise NotImplementedError

    def check_size(self, name: str, limit: int) -> None:
        """Refuse a member whose declared size is over ``limit``, before reading any of it."""
        self._check_limit(name, self.size(name), limit)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _bad(self, member: str | None, problem: str) -> BadScanError:
        return BadScanError(self.label, member, problem)

    def _check_limit(self, name: str, size: int, limit: int) -> None:
        if size > limit:
            raise self._bad(name, f"member is {size} bytes uncompressed, more than the {limit} "
                                  "this scan's shapes need (refusing a possible zip bomb)")


def check_member_name(archive: Archive, name: str) -> str:
    """The normalised name, or an error when it could escape the scan."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise archive._bad(name, "absolute path in archive; refused")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        raise archive._bad(name, "path escapes the scan ('..'); refused")
    return "/".join(p for p in parts if p not in ("", "."))


class ZipArchive(Archive):
    def __init__(self, path: Path):
        self.label = str(path)
        try:
            self._zip = zipfile.ZipFile(path)
        except ZIP_ERRORS as exc:
            raise self._bad(None, f"not a readable zip file ({_reason(exc)})") from None
        except OSError as exc:
            raise self._bad(None, f"cannot open ({exc.strerror or exc})") from None
        try:
            self._infos = self._index(self._zip.infolist())
        except BaseException:
            self._zip.close()
            raise

    def _index(self, infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
        """Members by normalised name; refuses names that escape, links and duplicates."""
        index: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if info.is_dir() or is_junk(info.filename):
                continue
            name = check_member_name(self, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise self._bad(info.filename, "symbolic link in archive; refused")
            if name in index:
                raise self._bad(info.filename, "member name appears twice in the archive")
            index[name] = info
        return index

    def names(self) -> list[str]:
        return list(self._infos)

    def size(self, name: str) -> int:
        return self._infos[name].file_size

    def read(self, name: str, limit: int) -> bytes:
        info = self._infos[name]
        self._check_limit(name, info.file_size, limit)
        try:
            if info.compress_type in FAST_METHODS:
                data = self._inflate(info)
            else:
                with self._zip.open(info) as member:
                    data = member.read(limit + 1)
        except (*ZIP_ERRORS, *INFLATE_ERRORS, OSError, RuntimeError) as exc:
            raise self._bad(name, f"cannot read member ({_reason(exc)})") from None
        self._check_limit(name, len(data), limit)
        return data

    def _inflate(self, info: zipfile.ZipInfo) -> bytes:
        """A stored or deflated member's bytes, never more than its declared size, checked
        against that size and its CRC-32 (raising what ``zipfile`` raises for the same faults)."""
        with self._zip.open(info):
            pass  # zipfile's checks of the local header: signature, name, encryption, method
        raw = self._raw(info)
        if info.compress_type == zipfile.ZIP_STORED:
            data = raw
        else:
            inflater = isal_zlib.decompressobj(-15)
            data = inflater.decompress(raw, info.file_size + 1)
            if len(data) > info.file_size:
                raise zipfile.BadZipFile(f"inflates past its declared {info.file_size} bytes")
            if not inflater.eof:
                raise EOFError("Compressed file ended before the end-of-stream marker was reached")
        if len(data) != info.file_size:
            raise zipfile.BadZipFile(f"{len(data)} bytes where the zip declares {info.file_size}")
        if isal_zlib.crc32(data) != info.CRC:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
        return data

    def _raw(self, info: zipfile.ZipInfo) -> bytes:
        """The member's compressed bytes, read by offset (``pread``: no shared file position).
        Deflate grows incompressible data by a few bytes per 16-64 KiB block, so a larger
        compressed size is a damaged header, refused before it is read."""
        slack = 0 if info.compress_type == zipfile.ZIP_STORED else (info.file_size >> 10) + 1024
        if info.compress_size > info.file_size + slack:
            raise zipfile.BadZipFile(f"compressed size {info.compress_size} is impossible for "
                                     f"{info.file_size} bytes")
        fd = self._zip.fp.fileno()
        header = os.pread(fd, LOCAL_HEADER.size, info.header_offset)
        if len(header) < LOCAL_HEADER.size:
            raise EOFError("Truncated file header")
        signature, name_length, extra_length = LOCAL_HEADER.unpack(header)
        if signature != zipfile.stringFileHeader:
            raise zipfile.BadZipFile("Bad magic number for file header")
        start = info.header_offset + LOCAL_HEADER.size + name_length + extra_length
        raw = os.pread(fd, info.compress_size, start)
        if len(raw) < info.compress_size:
            raise EOFError("member is cut short by the end of the file")
        return raw

    def close(self) -> None:
        self._zip.close()


class FolderArchive(Archive):
    def __init__(self, path: Path):
        self.label = str(path)
        self._root = path
        self._names: list[str] = []
        for dirpath, dirnames, filenames in os.walk(path):
            rel_dir = Path(dirpath).relative_to(path)
            for entry in dirnames + filenames:
                full = Path(dirpath, entry)
                if full.is_symlink():
                    raise self._bad((rel_dir / entry).as_posix(), "symbolic link in scan folder; refused")
                if entry in filenames and not full.is_file():
                    raise self._bad((rel_dir / entry).as_posix(), "not a regular file (a pipe or device?); refused")
            dirnames[:] = [d for d in dirnames if not is_junk(d)]
            for filename in filenames:
                name = (rel_dir / filename).as_posix()
                if not is_junk(name):
                    self._names.append(name)

    def names(self) -> list[str]:
        return list(self._names)

    def size(self, name: str) -> int:
        return (self._root / name).stat().st_size

    def read(self, name: str, limit: int) -> bytes:
        path = self._root / name
        try:
            with open(path, "rb") as f:
                self._check_limit(name, os.fstat(f.fileno()).st_size, limit)
                data = f.read(limit + 1)
        except OSError as exc:
            raise self._bad(name, f"cannot read ({exc.strerror or exc})") from None
        self._check_limit(name, len(data), limit)
        return data


def open_archive(path: str | os.PathLike) -> Archive:
    path = Path(path)
    if path.is_dir():
        return FolderArchive(path)
    if not path.exists():
        raise BadScanError(str(path), None, "no such file or folder")
    return ZipArchive(path)
