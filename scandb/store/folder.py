"""The medium every store keeps its files on: one local folder, files named by key.

A key is a POSIX path relative to the store's folder (``ab/<hash>.npy``,
``responses/<sha256>.npy``, ``meta/<sha256>.npy``): rows hold keys, never the folder's
name, so a database moved or renamed together with its store finds every file again.
Everything that reads or writes a store file goes through a ``Folder``: put, read whole,
read byte ranges of many files at once, list with ages, delete. A store on another medium
(an object store) is another class with these methods; the key layouts above it
(``images.py``, ``matrices.py``, ``meta.py``, ``frames.py``) stay as they are.

Local reads keep their fast path: ``path`` gives the file for memory maps, and
``read_into`` is one ``open`` + ``preadv`` straight into the caller's buffers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MKDIR_ATTEMPTS = 5
"""Tries at making a sub-folder that another writer's rollback may remove meanwhile."""
TEMPORARY_SUFFIX = ".tmp"

READ_THREADS = 4
"""Reads in flight at once for ``read_ranges`` (more did not help on the machine measured;
BENCHMARKS.md, Numbers behind the code: read threads)."""

LEGACY_PREFIX = ".images/"
"""Keys of databases before revision 0011 began with the store folder's name
(``lab.images/``); ``key_of`` strips it from keys read out of old lake snapshots."""


def key_of(stored: str) -> str:
    """A key as rows hold it now: a path that starts with ``<name>.images/`` (written before
    revision 0011, still in a lake's older snapshots) loses that first component."""
    head, sep, rest = stored.partition("/")
    return rest if sep and head.endswith(LEGACY_PREFIX[:-1]) else stored


class Folder:
    """Store files under ``root``, by key."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self._prefix = f"{self.root}{os.sep}"
        self._made: set[Path] = set()
        """Sub-folders this object made or found (thousands of puts then cost no ``mkdir``)."""

    def __repr__(self) -> str:
        return f"Folder({str(self.root)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Folder) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    # -- reading ------------------------------------------------------------------------

    def path(self, key: str) -> Path:
        """Where the file of ``key`` is, for memory maps and error messages."""
        return self.root / key

    def exists(self, key: str) -> bool:
        return os.path.exists(self._prefix + key)

    def read(self, key: str) -> bytes:
        """The file's bytes (OSError when it cannot be read)."""
        with open(self._prefix + key, "rb") as f:
            return f.read()

    def open(self, key: str):
        """The file opened for reading, for callers that stream it (hashing a large matrix)."""
        return open(self._prefix + key, "rb")

    def read_into(self, key: str, buffers: list, offset: int = 0) -> int:
        """Fill ``buffers`` in turn with the file's bytes from ``offset``; returns the bytes
        read (short at the file's end). One ``open`` and one ``preadv``."""
        fd = os.open(self._prefix + key, os.O_RDONLY)
        try:
            return os.preadv(fd, buffers, offset)
        finally:
            os.close(fd)

    reads_by_range = False
    """Readers memory-map large files (``Bucket``'s objects are read by range instead)."""

    def prefetch(self, keys: Iterable[str]) -> None:
        """Nothing: a local file needs no fetching before it is read (a bucket downloads
        objects a loop is about to read, several at once)."""

    def read_ranges(self, jobs: list[tuple[str, int, memoryview]], parallel: bool = True) -> list[int | OSError]:
        """For each ``(key, offset, buffer)``, read ``len(buffer)`` bytes at ``offset`` into
        the buffer; returns per job the bytes read, or the OSError opening its file raised.
        A file named by several jobs is opened once. ``parallel``: several reads in flight
        (``preadv`` releases the GIL, so a cold disk sees several requests: large windows);
        without, one after another (small warm rows, where a thread pool costs more)."""
        return read_files(jobs, {key: self._prefix + key for key in dict.fromkeys(key for key, _, _ in jobs)},
                          parallel)

    def kept_file(self, key: str) -> str:
        """The file of ``key``: a folder's files are local (``bucket.Bucket.kept_file``
        names an object's local copy, when the cache keeps one)."""
        return self._prefix + key

    def list(self, pattern: str) -> dict[str, float]:
        """Finished files whose key matches the glob ``pattern``, with their modification
        times (an age tells a file in flight from a forgotten one); temporaries excluded."""
        if not self.root.is_dir():
            return {}
        found = {}
        for path in self.root.glob(pattern):
            if path.name.startswith(".") or not path.is_file():
                continue
            found[path.relative_to(self.root).as_posix()] = _modified(path)
        return found

    def temporaries(self, folder_pattern: str) -> dict[str, float]:
        """Half-written files (a writer killed before its rename) in folders matching the
        glob ``folder_pattern`` (``""`` for the sub-folder itself), with their ages."""
        if not self.root.is_dir():
            return {}
        pattern = f"{folder_pattern}/.*{TEMPORARY_SUFFIX}" if folder_pattern else f".*{TEMPORARY_SUFFIX}"
        return {p.relative_to(self.root).as_posix(): _modified(p) for p in self.root.glob(pattern)}

    # -- writing ------------------------------------------------------------------------

    def put(self, key: str, data: bytes | memoryview) -> None:
        """Write the file of ``key`` under a temporary name, then rename: a real name never
        holds a partial file."""
        target = self.path(key)
        self._make_folder(target.parent)
        try:
            try:
                write_then_rename(target, data)
            except FileNotFoundError:  # the folder was removed since (emptied by a collector): make it again
                self._made.discard(target.parent)
                self._make_folder(target.parent)
                write_then_rename(target, data)
        except BaseException:
            self._made.discard(target.parent)
            remove_if_empty(target.parent, self.root)
            raise

    def put_new(self, key: str, data: bytes | memoryview, created: Callable[[], None]) -> None:
        """``put`` unless a file of ``key`` is there already (content-named: it holds these
        bytes); ``created()`` is called once this call wrote it."""
        if not self.exists(key):
            self.put(key, data)
            created()

    def put_fresh(self, key: str, data: bytes | memoryview, created: Callable[[], None]) -> None:
        """``put``, without asking first whether the file is there (one whose name is new
        but when a write is run again: a pack of images the database does not hold), then
        ``created()``."""
        self.put(key, data)
        created()

    def staging(self, key: str) -> Path:
        """A local file to build the file of ``key`` in piece by piece (rows written by several
        processes), under its temporary name; ``publish`` puts it in place."""
        target = self.path(key)
        self._make_folder(target.parent)
        return temporary_for(target)

    def publish(self, staged: Path, key: str) -> None:
        """Put a file built by ``staging`` in place under ``key``."""
        os.replace(staged, self.path(key))

    def _make_folder(self, folder: Path) -> None:
        if folder not in self._made:
            for attempt in range(MKDIR_ATTEMPTS):
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                    break
                except FileExistsError:
                    # mkdir found it, then it was gone: another writer's rollback removed the
                    # empty folder in between (exist_ok checks is_dir() after EEXIST). Again.
                    if attempt == MKDIR_ATTEMPTS - 1 or folder.is_symlink() or folder.is_file():
                        raise
            self._made.add(folder)

    def delete(self, keys: Iterable[str]) -> int:
        """Delete these files (missing ones are fine) and the sub-folders they leave empty;
        returns how many were deleted."""
        removed = 0
        for key in keys:
            path = self.path(key)
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
            for folder in path.parents:
                if folder == self.root or self.root not in folder.parents:
                    break
                self._made.discard(folder)
                remove_if_empty(folder, self.root)
        return removed

    def unfinished_uploads(self) -> list:
        """None: a file is written whole under a temporary name (``temporaries``), never in
        parts a server keeps apart (``bucket.Bucket.unfinished_uploads``)."""
        return []

    def abort(self, uploads) -> int:
        return 0

    def remove_empty_folders(self) -> None:
        """Drop empty sub-folders (a writer killed between creating a folder and its first file)."""
        self._made.clear()
        if self.root.is_dir():
            for folder in sorted(self.root.glob("**/"), key=lambda p: len(p.parts), reverse=True):
                remove_if_empty(folder, self.root)


def read_files(jobs: list[tuple[str, int, memoryview]], files: dict[str, str], parallel: bool) -> list[int | OSError]:
    """``Folder.read_ranges`` of local files: each job's key read from ``files[key]``,
    each file opened once; per job the bytes read or the OSError opening its file raised."""
    fds: dict[str, int | OSError] = {}
    try:
        for key, name in files.items():
            try:
                fds[key] = os.open(name, os.O_RDONLY)
            except OSError as exc:
                fds[key] = exc

        def one(job):
            fd = fds[job[0]]
            return fd if isinstance(fd, OSError) else os.preadv(fd, [job[2]], job[1])

        if len(jobs) < 2 or not parallel:
            return [one(job) for job in jobs]
        with ThreadPoolExecutor(min(READ_THREADS, len(jobs)), thread_name_prefix="scandb-read") as pool:
            return list(pool.map(one, jobs))
    finally:
        for fd in fds.values():
            if not isinstance(fd, OSError):
                os.close(fd)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")  # gone already: never old enough to collect


def age_cutoff(min_age: float) -> float:
    """The modification time a file must be at or before to be ``min_age`` seconds old."""
    return time.time() - min_age


def temporary_for(target: Path) -> Path:
    """The temporary name a file is written under before it is renamed to ``target``."""
    return target.with_name(f".{target.stem}.{os.getpid()}{TEMPORARY_SUFFIX}")


def write_then_rename(target: Path, data: bytes | memoryview) -> None:
    """Write under a temporary name, then rename: a real name never holds a partial file."""
    temporary = temporary_for(target)
    try:
        with open(temporary, "wb") as f:
            f.write(data)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def remove_if_empty(folder: Path, root: Path) -> None:
    """Drop a sub-folder of a store once its last file is gone, so undoing a write leaves no trace."""
    if not isinstance(folder, Path) or folder == root or root not in folder.parents:
        return  # a bucket's objects have no folders
    try:
        folder.rmdir()
    except OSError:
        pass
