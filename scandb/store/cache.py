"""A read-through local cache of a bucket's objects, whole, by URL.

Store objects never change once written (their keys are content hashes), so a cached
object is never stale: it is kept until the cache outgrows its limit, then the least
recently used files go (a read touches a file's modification time), except those used in
the last ``IN_USE_S`` seconds. Several processes and
DataLoader workers share one cache: an object is downloaded under a temporary name beside
its place and renamed into it, so a name never holds a partial file; two processes fetching
one object at once both download it and the second rename wins with equal bytes. Evicting
a file another process has memory-mapped is safe on POSIX (the mapping keeps it).

A large object read in parts (rows of a response matrix for a random batch) is kept as the
blocks of it that were read (``block``): fixed-size pieces, each its own file, fetched by
byte range, so a training job that starts with an empty cache downloads each byte it needs
once and no more. Blocks are kept, evicted and shared between processes as whole objects are.
Once every block of an object is kept, ``assemble`` joins them into the object's whole file
(local bytes only, nothing is downloaded; under a temporary name, renamed into place) and
drops the blocks, so the object is kept once, as one file that readers map and read as a
local folder's files are read. Two processes assembling one object at once both write it,
the second rename wins with equal bytes; a reader that finds a block gone meanwhile reads
the whole file instead (``forget_touches``, as after a cleared cache). An object downloaded
whole drops its blocks too.

Where: ``$SCANDB_CACHE``, else ``~/.cache/scandb``; size limit ``$SCANDB_CACHE_SIZE``
(``20GB`` unless set; ``500MB``, ``1.5TB``, or bytes).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from itertools import chain
from pathlib import Path

from ..errors import UsageError

CACHE_VARIABLE = "SCANDB_CACHE"
SIZE_VARIABLE = "SCANDB_CACHE_SIZE"
DEFAULT_LIMIT = 20 * 10**9
OBJECTS = "objects"
BLOCKS = "blocks"
STAGING = "staging"
PART_SUFFIX = ".part"
EVICT_TO = 0.9
"""Eviction stops once the cache is this fraction of its limit (not right at it)."""
IN_USE_S = 10.0
"""Objects used this recently are not evicted: a reader touches a file, then opens it (a
batch fetches all its objects, then reads them), and another process evicting in between
would make the read fail. The cache can pass its limit by the objects of the last seconds."""

TOUCH_EVERY_S = 2.0
"""A file is touched again at most this often by one process (well within ``IN_USE_S``)."""
TOUCHED_KEPT = 100_000
"""Touch times remembered at most (then forgotten all at once: the next read touches again)."""

UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str) -> int:
    """``20GB``, ``500 MB``, ``1.5TB``, ``123`` as bytes; anything else is a UsageError."""
    found = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if not found or found[2].upper() not in UNITS:
        raise UsageError(f"{SIZE_VARIABLE}={text!r}: not a size (e.g. 20GB, 500MB)")
    return int(float(found[1]) * UNITS[found[2].upper()])


def default_root() -> Path:
    return Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "scandb").expanduser().absolute()


def default_limit() -> int:
    text = os.environ.get(SIZE_VARIABLE)
    return parse_size(text) if text else DEFAULT_LIMIT


class Cache:
    """Objects by URL under ``root/objects/s3/<bucket>/<key>``, blocks of objects read in
    parts under ``root/blocks/s3/<bucket>/<key>/<index>``; local files being built for upload
    under ``root/staging/``."""

    def __init__(self, root: Path | str | None = None, limit: int | None = None):
        self.root = Path(root).absolute() if root is not None else default_root()
        self.limit = default_limit() if limit is None else int(limit)
        self._added = 0
        """Bytes this process added since it last measured the cache (measuring lists it all)."""
        self._lock = threading.Lock()
        self._block_folders: dict[str, str] = {}
        self._touched: dict[str, float] = {}
        """When this process last touched each file it read (``touched``)."""

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r}, limit={self.limit})"

    def __getstate__(self):
        return {"root": self.root, "limit": self.limit}

    def __setstate__(self, state):
        self.__init__(state["root"], state["limit"])

    # -- where ---------------------------------------------------------------------------

    def file(self, url: str) -> Path:
        """Where the object of ``url`` (``s3://bucket/key``) is kept (whether or not it is)."""
        scheme, _, rest = url.partition("://")
        return self.root / OBJECTS / scheme / rest

    def block(self, url: str, index: int) -> Path:
        """Where block ``index`` of the object of ``url`` is kept (whether or not it is)."""
        return Path(self.block_name(url, index))

    def block_name(self, url: str, index: int) -> str:
        """``block`` as a string, made without ``pathlib`` (a warm batch asks for hundreds)."""
        folder = self._block_folders.get(url)
        if folder is None:
            scheme, _, rest = url.partition("://")
            folder = self._block_folders[url] = str(self.root / BLOCKS / scheme / rest)
        return f"{folder}/{index:08d}"

    def staging(self) -> Path:
        """A new local file name to build an object in before it is uploaded."""
        folder = self.root / STAGING
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f".{os.getpid()}.{uuid.uuid4().hex}{PART_SUFFIX}"

    # -- reading through -------------------------------------------------------------------

    def cached(self, url: str, recent: bool = False) -> Path | None:
        """The kept file of ``url``, touched as just used; None when it is not kept."""
        return self.touched(self.file(url), recent)

    def forget_touches(self) -> None:
        """Look for every file again at its next read (one was found gone: a cleared cache)."""
        self._touched.clear()

    def touched(self, path, recent: bool = False):
        """``path`` touched as just used (least recently used goes first), or None when it is
        not kept. With ``recent``, a file this process touched less than ``TOUCH_EVERY_S`` ago
        is not touched again (nor looked for): no process evicts a file used in the last
        ``IN_USE_S``, so it is there still unless the cache was cleared meanwhile (the caller
        then finds it gone and asks again, ``forget_touches``), and a warm batch's hundreds
        of reads cost no system call each."""
        now = time.monotonic()
        key = str(path)
        if recent and now - self._touched.get(key, -TOUCH_EVERY_S) < TOUCH_EVERY_S:
            return path
        try:
            os.utime(path)
        except FileNotFoundError:
            self._touched.pop(key, None)
            return None
        except OSError:
            pass  # a read-only cache: still usable
        if len(self._touched) > TOUCHED_KEPT:
            self._touched.clear()
        self._touched[key] = now
        return path

    def get(self, url: str, download: Callable[[Path], None]) -> Path:
        """The kept file of ``url``; when it is not kept, ``download(temporary)`` writes the
        object into a temporary file, which is then renamed into place (and any blocks of
        the object kept before are dropped: the whole file holds their bytes)."""
        target = self.file(url)
        if self.touched(target) is not None:
            return target
        self.fill(target, download)
        self.drop_blocks(url)
        return target

    def fill(self, target: Path, download: Callable[[Path], None], grows: bool = True) -> Path:
        """``target`` (an object's or a block's file), written by ``download(temporary)``
        and renamed into place when it is not kept already (``grows``: its bytes count
        towards the next eviction; not for a file made of bytes the cache holds already)."""
        found = self.touched(target)
        if found is not None:
            return found
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{PART_SUFFIX}")
        try:
            download(temporary)
            size = temporary.stat().st_size
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        if grows:
            self._grew(size)
        return target

    # -- blocks made whole -------------------------------------------------------------------

    def complete_size(self, url: str, block_size: int) -> int | None:
        """The object's size when every block of it is kept, else None. Blocks are kept as
        fetched: each ``block_size`` bytes but the object's last, which is shorter, or
        followed by an empty block (a range asked past the end); so the blocks 0..k kept,
        the last non-empty one short or followed by an empty one, are the whole object.
        One listing of the object's block folder, a stat of its last blocks."""
        try:
            names = os.listdir(self.block(url, 0).parent)
        except OSError:
            return None
        kept = {int(name) for name in names if name.isdigit()}
        count = 0
        while count in kept:
            count += 1  # blocks 0..count-1 kept (any kept past them are empty, past the end)
        sizes: dict[int, int] = {}
        for index in range(count - 1, -1, -1):
            try:
                sizes[index] = os.stat(self.block_name(url, index)).st_size
            except OSError:
                return None
            if sizes[index]:
                break
        if not sizes:
            return None  # block 0 is not kept
        last = min(sizes)
        if not sizes[last]:
            return 0  # every block kept is empty: an empty object
        if sizes[last] < block_size or last + 1 in sizes:
            return last * block_size + sizes[last]
        return None  # the last block kept is full: more may follow

    def assemble(self, url: str, block_size: int) -> Path | None:
        """The object's whole file made of its kept blocks when every block is kept (see
        ``complete_size``), the blocks then dropped; None when some block is not kept (or
        went meanwhile). Only local bytes are read. The whole file is written under a
        temporary name and renamed into place; its bytes were counted as blocks, so the
        cache does not grow by them (while it is written, the object is on disk twice)."""
        size = self.complete_size(url, block_size)
        if size is None:
            return None
        count = max(1, -(-size // block_size))

        def join(temporary: Path) -> None:
            with open(temporary, "wb") as out:
                for index in range(count):
                    expected = min(block_size, size - index * block_size)
                    with open(self.block_name(url, index), "rb") as block:
                        if os.fstat(block.fileno()).st_size != expected:
                            raise OSError(f"block {index} of {url} is not {expected} bytes")
                        shutil.copyfileobj(block, out)
        try:
            whole = self.fill(self.file(url), join, grows=False)
        except OSError:
            return None  # a block went meanwhile (evicted, or another process assembled it)
        self.drop_blocks(url)
        return whole

    def drop_blocks(self, url: str) -> int:
        """Remove the object's kept blocks (its whole file is kept); returns the bytes
        removed. A reader about to open one of them finds it gone and reads the whole file
        (``forget_touches``). The folder goes too once empty: a block another process is
        writing meanwhile keeps it, and stays until evicted."""
        folder = self.block(url, 0).parent
        try:
            names = os.listdir(folder)
        except OSError:
            return 0
        removed = 0
        for name in names:
            if name.endswith(PART_SUFFIX):
                continue  # another process's block in flight: its rename must find the folder
            path = os.path.join(folder, name)
            try:
                size = os.stat(path).st_size
                os.unlink(path)
                removed += size
            except OSError:
                pass
        try:
            os.rmdir(folder)
        except OSError:
            pass
        return removed

    def keep(self, url: str, local: Path) -> None:
        """Move a local file (just uploaded as ``url``) into the cache."""
        target = self.file(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        size = local.stat().st_size
        os.replace(local, target)
        self._grew(size)

    def forget(self, url: str) -> None:
        """Drop the kept file and blocks of a deleted object."""
        self.file(url).unlink(missing_ok=True)
        shutil.rmtree(self.block(url, 0).parent, ignore_errors=True)
        self._touched.clear()

    # -- size ------------------------------------------------------------------------------

    def _grew(self, size: int) -> None:
        with self._lock:
            self._added += size
            due = self._added > self.limit * (1 - EVICT_TO) / 2 or self._added > self.limit
            if due:
                self._added = 0
        if due:
            self.evict()

    def entries(self) -> list[tuple[float, int, Path]]:
        """Every kept object: (last used, bytes, path)."""
        found = []
        for folder, _, names in chain(os.walk(self.root / OBJECTS), os.walk(self.root / BLOCKS)):
            for name in names:
                if name.endswith(PART_SUFFIX):
                    continue
                path = Path(folder) / name
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                found.append((stat.st_mtime, stat.st_size, path))
        return found

    def evict(self, limit: int | None = None) -> int:
        """Remove least recently used objects until the cache is within ``EVICT_TO`` of its
        limit (or ``limit``); returns the bytes removed. Partial downloads older than an
        hour (of processes that were killed) go too."""
        limit = self.limit if limit is None else limit
        self._touched.clear()  # what goes is touched (and looked for) again when next read
        entries = sorted(self.entries())
        total = sum(size for _, size, _ in entries)
        removed = 0
        goal = limit * EVICT_TO if limit else 0
        recent = time.time() - IN_USE_S
        for _, size, path in entries:
            if total - removed <= goal and (limit or not size):
                break  # clearing (limit 0) removes empty files too
            try:
                if limit and path.stat().st_mtime > recent:
                    continue  # touched since listed, or in use: a reader may be about to open it
                path.unlink()
                removed += size
            except FileNotFoundError:
                pass
        self._remove_stale_parts()
        return removed

    def _remove_stale_parts(self, age: float = 3600.0) -> None:
        cutoff = time.time() - age
        for top in (self.root / OBJECTS, self.root / BLOCKS, self.root / STAGING):
            for folder, _, names in os.walk(top):
                for name in names:
                    if name.endswith(PART_SUFFIX):
                        path = Path(folder) / name
                        try:
                            if path.stat().st_mtime < cutoff:
                                path.unlink()
                        except FileNotFoundError:
                            pass

    def info(self) -> dict:
        entries = self.entries()
        blocks = f"{self.root / BLOCKS}{os.sep}"
        n_blocks = sum(str(path).startswith(blocks) for _, _, path in entries)
        return {"root": str(self.root), "objects": len(entries) - n_blocks, "blocks": n_blocks,
                "bytes": sum(e[1] for e in entries), "limit": self.limit}

    def clear(self) -> int:
        """Remove every kept object; returns the bytes removed."""
        return self.evict(limit=0)
