"""The store's medium on an S3 bucket: ``Folder``'s methods over objects, read through a
local cache (``cache.py``).

A lake whose data path is ``s3://bucket/prefix`` keeps the store's files as objects under
``s3://bucket/prefix/scandb.images/<key>``, beside DuckLake's Parquet files. The key
layouts above (``images.py``, ``matrices.py``, ...) are unchanged: keys are content hashes,
so an object never changes once written, and a cached copy is never stale.

- Writing: ``put`` uploads bytes in one request; a file built piece by piece (a response
  matrix) is built in a local staging file and ``publish`` uploads it (multipart, several
  parts in flight, bounded memory), then keeps it in the cache; ``begin_publish`` begins
  that upload in a thread while the writer goes on, and waits for it when asked. An upload is atomic: an
  object's name never holds part of one, so a bucket has no temporaries; a killed ingest
  leaves whole objects no row references, which ``gc`` deletes once they are older than
  an ingest could still be running.
- Reading: ``read``, ``open``, ``read_into`` and a path's ``__fspath__``
  (``np.load(store.path(key), mmap_mode="r")``) fetch the whole object into the cache first
  and read the local file; ``prefetch`` fetches many at once. ``read_ranges`` (a batch's
  rows of a response matrix or a video copy) fetches only the blocks of the object the
  ranges cover, by ranged GETs, and keeps them in the cache (``BLOCK_SIZE``); once every
  block is kept, the cache makes them one whole file (``Cache.assemble``), which
  ``kept_file`` names for readers that map it (``query/ranged.py``); ``exists``, ``list``
  and ``delete`` ask the bucket.

Credentials come the ecosystem's way: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``
(``AWS_SESSION_TOKEN``), ``AWS_REGION`` and, for a server other than AWS,
``AWS_ENDPOINT_URL``. They are never stored in the catalog.

The client is boto3 (the ``cloud`` extra), one per process and credentials, created anew in
each process: ingest workers are forked, and so are DataLoader workers (a forked child makes
its client from the session its parent kept, in milliseconds). (obstore, faster at coalesced range reads, hung in a
forked child here.)
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import SimpleNamespace

from ..errors import DatabaseError
from .cache import Cache
from .folder import read_files

SCHEME = "s3://"
FETCH_THREADS = 16
"""Requests in flight at once: objects downloaded by ``prefetch`` and ``scandb cache warm``,
ranged GETs of ``read_ranges``."""
BLOCK_SIZE = 1 << 20
"""An object not kept whole is read and kept in blocks of this many bytes: a random batch's
rows of a response matrix (a few kB each) cost about one block each, not the whole matrix."""
RUN_BLOCKS = 8
BLOCKS_HELD = 64
"""Blocks one ``read_ranges`` call holds in memory at once (64 MiB)."""
"""Adjacent missing blocks fetched in one ranged GET, up to this many (8 MiB, a request size
at which S3 delivers its throughput)."""
MULTIPART_THRESHOLD = 32 << 20
PART_SIZE = 16 << 20
UPLOAD_THREADS = 8
"""A staged file larger than the threshold is uploaded in parts of ``PART_SIZE``, this many
in flight (memory: about ``UPLOAD_THREADS * PART_SIZE``)."""
UPLOADS_PENDING = 64
"""Background uploads (``uploading``) waiting at most: their bytes are held in memory."""
CLOUD_EXTRA = "pip install 'scandb[cloud]'"


def is_url(where) -> bool:
    return isinstance(where, str) and where.startswith(SCHEME)


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` as ``("bucket", "some/prefix")``."""
    bucket, _, prefix = url[len(SCHEME):].partition("/")
    return bucket, prefix.strip("/")


@dataclass(frozen=True)
class Credentials:
    key_id: str
    secret: str
    region: str
    endpoint: str | None
    """``http://host:port`` of a server other than AWS (``AWS_ENDPOINT_URL``)."""
    token: str | None = None


def credentials(url: str) -> Credentials:
    """The credentials of the environment, or one line naming what to set."""
    key_id, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        missing = " and ".join(name for name, value in (("AWS_ACCESS_KEY_ID", key_id),
                                                        ("AWS_SECRET_ACCESS_KEY", secret)) if not value)
        raise DatabaseError(f"{url}: no credentials for the bucket; set {missing} "
                            f"(and AWS_ENDPOINT_URL for a server other than AWS)")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return Credentials(key_id, secret, region, os.environ.get("AWS_ENDPOINT_URL") or None,
                       os.environ.get("AWS_SESSION_TOKEN") or None)


SECRET_NAME = "scandb_s3"


def secret_statement(url: str) -> str:
    """The DuckDB secret (httpfs) that lets DuckLake read and write its Parquet files under
    ``url``, made from the environment's credentials on every connection (in memory only)."""
    from ..catalog.lake import quote

    found = credentials(url)
    options = ["TYPE s3", f"KEY_ID {quote(found.key_id)}", f"SECRET {quote(found.secret)}",
               f"REGION {quote(found.region)}", f"SCOPE {quote(SCHEME + split_url(url)[0])}"]
    if found.token:
        options.append(f"SESSION_TOKEN {quote(found.token)}")
    if found.endpoint:
        scheme, _, host = found.endpoint.partition("://")
        options += [f"ENDPOINT {quote(host.rstrip('/'))}", "URL_STYLE 'path'",
                    f"USE_SSL {'true' if scheme == 'https' else 'false'}"]
    return f"CREATE OR REPLACE SECRET {SECRET_NAME} ({', '.join(options)})"


def check_access(url: str) -> None:
    """One request to the bucket of a lake about to be created: a refused key, a missing
    bucket or an unreachable server is its one line before any catalog names the data path
    (DuckLake itself writes nothing to the bucket until the first rows, so a new lake on a
    bucket it cannot use would otherwise be created, empty, and fail only then)."""
    Bucket(url).any_under("")


def glob_regex(pattern: str) -> re.Pattern:
    """A store's glob (``??/*.npy``, ``meta/*``) as a regex over keys: wildcards stay within
    one path component, as ``Path.glob``'s do."""
    out = []
    for char in pattern:
        out.append("[^/]" if char == "?" else "[^/]*" if char == "*" else re.escape(char))
    return re.compile("".join(out))


class Bucket:
    """Store files as objects under ``url`` (``s3://bucket/prefix/scandb.images``), by key."""

    reads_by_range = True
    """Readers read a large object's rows by ``read_ranges`` rather than memory-mapping it
    (which would download all of it first)."""

    def __init__(self, url: str, cache: Cache | None = None):
        self.url = url.rstrip("/")
        self.bucket, self.prefix = split_url(self.url)
        if not self.bucket:
            raise DatabaseError(f"{url}: no bucket named (use s3://bucket/prefix)")
        self.cache = cache if cache is not None else Cache()
        self.root = ObjectPath(self, "")
        self._client = None
        self._pid = None
        self._lock = threading.Lock()
        self._batching = 0
        self._uploads: ThreadPoolExecutor | None = None
        self._uploads_pid: int | None = None
        self._pending: list = []
        self._looked: set[str] = set()
        """Objects read from blocks whose blocks this process has looked at (to make them whole)."""

    def __repr__(self) -> str:
        return f"Bucket({self.url!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Bucket) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __getstate__(self):
        return {"url": self.url, "cache": self.cache}

    def __setstate__(self, state):
        self.__init__(state["url"], state["cache"])

    # -- the client ------------------------------------------------------------------------

    @property
    def client(self):
        """boto3's S3 client, made in this process (a forked worker makes its own)."""
        if self._client is None or self._pid != os.getpid():
            with self._lock:
                if self._client is None or self._pid != os.getpid():
                    self._client, self._pid = _client(self.url), os.getpid()
        return self._client

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def url_of(self, key: str) -> str:
        return f"{self.url}/{key}" if key else self.url

    def key_of(self, where) -> str:
        """The key of a path this bucket gave (or its URL, as worker processes pass it back)."""
        if isinstance(where, ObjectPath):
            return where.key
        text = str(where)
        if not text.startswith(self.url + "/"):
            raise ValueError(f"{text}: not in {self.url}")
        return text[len(self.url) + 1:]

    def _call(self, action, key: str = ""):
        """Run ``action(client)``; a missing object is FileNotFoundError, anything the bucket
        refuses (credentials, no bucket, unreachable server) one DatabaseError line."""
        try:
            return action(self.client)
        except Exception as exc:
            raise _translated(exc, self, key) from None

    # -- reading ---------------------------------------------------------------------------

    def path(self, key: str) -> "ObjectPath":
        """The object of ``key``: a path whose ``os.fspath`` is the cached local file (fetched
        then), for memory maps; its ``str`` is the object's URL, for messages."""
        return ObjectPath(self, key)

    def local(self, key: str) -> Path:
        """The object's cached local file, downloaded first when it is not kept."""
        return self.cache.get(self.url_of(key), lambda temporary: self._download(key, temporary))

    def _download(self, key: str, temporary: Path) -> None:
        def fetch(client):
            body = client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]
            with open(temporary, "wb") as f:
                shutil.copyfileobj(body, f, 1 << 20)
        self._call(fetch, key)

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def head(self, key: str) -> dict | None:
        """The object's size and modification time, or None when there is none."""
        try:
            found = self._call(lambda c: c.head_object(Bucket=self.bucket, Key=self.object_key(key)), key)
        except FileNotFoundError:
            return None
        return {"size": found["ContentLength"], "modified": found["LastModified"].timestamp()}

    def read(self, key: str) -> bytes:
        return self.local(key).read_bytes()

    def open(self, key: str):
        return open(self.local(key), "rb")

    def read_into(self, key: str, buffers: list, offset: int = 0) -> int:
        fd = os.open(self.local(key), os.O_RDONLY)
        try:
            return os.preadv(fd, buffers, offset)
        finally:
            os.close(fd)

    def fetch(self, keys: Iterable[str]) -> dict[str, Path | OSError]:
        """Each object's local file (downloaded, several at once, when not kept), or the
        OSError fetching it raised."""
        keys = list(dict.fromkeys(keys))

        def one(key):
            try:
                return self.local(key)
            except OSError as exc:
                return exc

        if len(keys) < 2:
            return {key: one(key) for key in keys}
        with ThreadPoolExecutor(min(FETCH_THREADS, len(keys)), thread_name_prefix="scandb-fetch") as pool:
            return dict(zip(keys, pool.map(one, keys)))

    def prefetch(self, keys: Iterable[str]) -> None:
        """Download the objects not kept yet, several at once, before a loop reads them one
        by one (a batch's images: one request each, in flight together rather than in turn).
        A failure is left for the read that follows to report."""
        self.fetch(key for key in keys if not os.path.exists(self.cache.file(self.url_of(key))))
        # (exists, not ``cached``: the read that follows touches the file)

    def read_ranges(self, jobs: list[tuple[str, int, memoryview]], parallel: bool = True) -> list[int | OSError]:
        """As ``Folder.read_ranges``: from the kept file of an object downloaded whole (or
        made whole of its blocks), else from the blocks of it the ranges cover, those not
        kept fetched by byte range first, several requests in flight (adjacent blocks in one
        request). Jobs are served in groups covering at most ``BLOCKS_HELD`` blocks, so
        memory stays bounded whatever a call reads (a whole train tier's rows). An object
        whose every block is kept once the call has read is made whole (``Cache.assemble``:
        looked at after a call that fetched blocks of it, and once per process otherwise),
        so later calls read it as a folder's file is read."""
        keys = dict.fromkeys(key for key, _, _ in jobs)
        whole = {key: self.cache.cached(self.url_of(key), recent=True) for key in keys}
        if None not in whole.values():  # every object kept whole: a folder's reads
            out = read_files(jobs, {key: str(path) for key, path in whole.items()}, parallel)
            if not any(isinstance(got, FileNotFoundError) for got in out):
                return out
            self.cache.forget_touches()  # a kept file removed since this process last read it: look again
            whole = {key: self.cache.cached(self.url_of(key)) for key in keys}
        out: list[int | OSError] = []
        group: list[tuple[str, int, memoryview]] = []
        wanted: dict[str, set[int]] = {}
        fetched: set[str] = set()
        held = 0
        for job in jobs:
            key, offset, buffer = job
            if whole[key] is None and len(buffer):
                indexes = range(offset // BLOCK_SIZE, (offset + len(buffer) - 1) // BLOCK_SIZE + 1)
                if group and held + len(indexes) > BLOCKS_HELD:
                    out += self._read_group(group, wanted, whole, fetched)
                    group, wanted, held = [], {}, 0
                have = wanted.setdefault(key, set())
                held -= len(have)
                have.update(indexes)
                held += len(have)
            group.append(job)
        out += self._read_group(group, wanted, whole, fetched)
        for key, found in whole.items():
            if found is None and (key in fetched or key not in self._looked):
                self._looked.add(key)
                self.cache.assemble(self.url_of(key), BLOCK_SIZE)
        return out

    def kept_file(self, key: str) -> str | None:
        """The local file holding the whole object when the cache keeps one (downloaded
        whole, or made whole of its blocks), touched as just used; None when it does not:
        nothing is fetched. What a reader maps or reads as a folder's file (re-asked now and
        then: a file the cache dropped is None again within ``TOUCH_EVERY_S``)."""
        found = self.cache.cached(self.url_of(key), recent=True)
        return None if found is None else str(found)

    def _read_group(self, jobs, wanted: dict[str, set[int]], whole: dict[str, Path | None], fetched: set[str],
                    again: int = 3) -> list[int | OSError]:
        """The group's jobs read; a kept file found gone meanwhile (a cleared cache, or blocks
        another process just made whole) means looking again, up to ``again`` more times."""
        blocks, failed = self._blocks(wanted, fetched, recent=again == 3)
        out = []
        with _Files() as files:  # each kept file opened once per group, however many ranges it serves
            for key, offset, buffer in jobs:
                if key in failed:
                    out.append(failed[key])
                elif whole[key] is not None:
                    out.append(files.pread(str(whole[key]), buffer, offset))
                else:
                    out.append(_copy_blocks(blocks.get(key, {}), buffer, offset, files))
        gone = {key for (key, _, _), got in zip(jobs, out) if isinstance(got, FileNotFoundError) and key not in failed}
        if gone and again:  # a kept file removed since this process last read it (a cleared cache): once more,
            self.cache.forget_touches()  # looking for every file
            wanted = dict(wanted)
            for key in gone:
                whole[key] = self.cache.cached(self.url_of(key))
                if whole[key] is None:
                    wanted[key] = {index for job_key, offset, buffer in jobs if job_key == key and len(buffer)
                                   for index in range(offset // BLOCK_SIZE, (offset + len(buffer) - 1) // BLOCK_SIZE + 1)}
            return self._read_group(jobs, {key: v for key, v in wanted.items() if whole[key] is None}, whole,
                                    fetched, again=again - 1)
        return out

    def _blocks(self, wanted: dict[str, set[int]], fetched: set[str], recent: bool = True
                ) -> tuple[dict[str, dict[int, bytes | str]], dict[str, OSError]]:
        """Each wanted block by key and index: its kept file, else its bytes, fetched (runs
        of adjacent missing blocks, each run one ranged GET) and kept; and per key the
        OSError fetching it raised (a missing object). Keys fetched go into ``fetched``."""
        blocks: dict[str, dict[int, bytes | str]] = {key: {} for key in wanted}
        runs = []
        for key, indexes in wanted.items():
            url = self.url_of(key)
            missing = []
            for index in sorted(indexes):
                kept = self.cache.touched(self.cache.block_name(url, index), recent)
                if kept is None:
                    missing.append(index)
                else:
                    blocks[key][index] = kept  # read in place: only the bytes a range needs
            runs += [(key, run) for run in _runs(missing, RUN_BLOCKS)]
            if missing:
                fetched.add(key)
        failed: dict[str, OSError] = {}
        if not runs:
            return blocks, failed

        def one(job):
            key, run = job
            try:
                return key, self._fetch_run(key, run)
            except OSError as exc:
                return key, exc

        with ThreadPoolExecutor(max(1, min(FETCH_THREADS, len(runs))), thread_name_prefix="scandb-range") as pool:
            for key, got in pool.map(one, runs):
                if isinstance(got, OSError):
                    failed.setdefault(key, got)
                else:
                    blocks[key].update(got)
        return blocks, failed

    def _fetch_run(self, key: str, run: list[int]) -> dict[int, bytes]:
        """Blocks ``run`` (adjacent indexes) of the object in one ranged GET, each then kept
        in the cache; a block past the object's end is empty, the last one may be short."""
        first, last = run[0] * BLOCK_SIZE, (run[-1] + 1) * BLOCK_SIZE - 1

        def fetch(client):
            try:
                return client.get_object(Bucket=self.bucket, Key=self.object_key(key),
                                         Range=f"bytes={first}-{last}")["Body"].read()
            except Exception as exc:
                if getattr(exc, "response", {}).get("Error", {}).get("Code") == "InvalidRange":
                    return b""  # the range starts past the object's end
                raise
        data = self._call(fetch, key)
        url = self.url_of(key)
        found = {}
        for position, index in enumerate(run):
            part = data[position * BLOCK_SIZE:(position + 1) * BLOCK_SIZE]
            found[index] = part
            try:
                self.cache.fill(self.cache.block(url, index), lambda temporary, part=part: temporary.write_bytes(part))
            except FileNotFoundError:
                pass  # its folder went meanwhile (the object was made whole): served, not kept
        return found

    def list(self, pattern: str) -> dict[str, float]:
        """Objects whose key matches the glob ``pattern``, with their modification times."""
        literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
        match = glob_regex(pattern)
        found = {}
        for key, entry in self._listing(literal.rpartition("/")[0]).items():
            if match.fullmatch(key) and not key.rpartition("/")[2].startswith("."):
                found[key] = entry["modified"]
        return found

    def _listing(self, under: str) -> dict[str, dict]:
        start = self.object_key(f"{under}/" if under else "")
        if self.prefix and not under:
            start = self.prefix + "/"
        cut = len(self.prefix) + 1 if self.prefix else 0

        def listing(client):
            found = {}
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                for entry in page.get("Contents", []):
                    found[entry["Key"][cut:]] = {"size": entry["Size"],
                                                 "modified": entry["LastModified"].timestamp()}
            return found
        return self._call(listing)

    def any_under(self, key: str) -> bool:
        start = self.object_key(f"{key}/" if key else "")
        if self.prefix and not key:
            start = self.prefix + "/"
        page = self._call(lambda c: c.list_objects_v2(Bucket=self.bucket, Prefix=start, MaxKeys=1))
        return bool(page.get("Contents"))

    def temporaries(self, folder_pattern: str) -> dict[str, float]:
        """None: an upload is atomic, no object name ever holds part of one."""
        return {}

    # -- writing ---------------------------------------------------------------------------

    def put(self, key: str, data: bytes | memoryview) -> None:
        """Upload the object; inside ``uploading()``, in the background (several in flight)."""
        data = bytes(data)
        self._submit(lambda: self._put_now(key, data))

    def put_new(self, key: str, data: bytes | memoryview, created) -> None:
        """Upload the object unless it is in the bucket already (content-named: it holds
        these bytes), then call ``created()``; inside ``uploading()`` the HEAD asking and the
        PUT both run in the background, so an ingest never waits a round trip per image."""
        data = bytes(data)

        def upload():
            if self.head(key) is None:
                self._put_now(key, data)
                created()
        self._submit(upload)

    def put_fresh(self, key: str, data: bytes | memoryview, created) -> None:
        """Upload the object without a HEAD first (an object whose name is new but when a
        write is run again, a pack: overwriting it there writes the same bytes), then call
        ``created()``; inside ``uploading()`` in the background, as ``put_new``."""
        data = bytes(data)

        def upload():
            self._put_now(key, data)
            created()
        self._submit(upload)

    def _submit(self, upload) -> None:
        if not self._batching:
            return upload()
        pool = self._upload_pool()
        self._pending.append(pool.submit(upload))
        if len(self._pending) >= UPLOADS_PENDING:  # bounded memory: wait for the oldest
            self._pending.pop(0).result()

    def _put_now(self, key: str, data: bytes) -> None:
        self._call(lambda c: c.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data), key)

    def _upload_pool(self) -> ThreadPoolExecutor:
        if self._uploads is None or self._uploads_pid != os.getpid():  # a forked worker makes its own
            self._uploads = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="scandb-upload")
            self._uploads_pid, self._pending = os.getpid(), []
        return self._uploads

    @contextmanager
    def uploading(self):
        """Meanwhile ``put`` uploads in the background, up to ``UPLOAD_THREADS`` at once;
        leaving waits for every upload (raising the first failure), so what follows, a
        commit naming the objects, finds them all in the bucket."""
        self._batching += 1
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            self._batching -= 1
            if not self._batching:
                pending, self._pending = self._pending, []
                errors = [exc for exc in (f.exception() for f in pending) if exc is not None]
                if errors and not failed:
                    raise errors[0]

    def staging(self, key: str) -> Path:
        """A local file to build the object of ``key`` in; ``publish`` uploads it."""
        return self.cache.staging()

    def publish(self, staged: Path, key: str) -> None:
        """Upload a file built by ``staging`` as ``key`` (in parts when large), then keep it
        in the cache."""
        self._upload_file(staged, key)
        self.cache.keep(self.url_of(key), staged)

    def begin_publish(self, staged: Path, key: str) -> Callable[[bool], None]:
        """``publish`` with the upload begun now, in a thread of its own, while the caller
        goes on (reading the staged file is fine, changing it is not); returns ``done``:
        ``done()`` waits for the upload (raising its failure), then keeps the file in the
        cache; ``done(False)`` only waits (a rollback, which then deletes the object)."""
        pool = ThreadPoolExecutor(1, thread_name_prefix="scandb-publish")
        upload = pool.submit(self._upload_file, staged, key)
        pool.shutdown(wait=False)

        def done(keep: bool = True) -> None:
            if not keep:
                wait([upload])
                return
            upload.result()
            self.cache.keep(self.url_of(key), staged)
        return done

    def _upload_file(self, staged: Path, key: str) -> None:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=PART_SIZE,
                                max_concurrency=UPLOAD_THREADS)
        self._call(lambda c: c.upload_file(str(staged), self.bucket, self.object_key(key), Config=config), key)

    def delete(self, keys: Iterable[str]) -> int:
        """Delete these objects (missing ones are fine); returns how many were asked for."""
        keys = list(keys)
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            objects = [{"Key": self.object_key(key)} for key in batch]
            self._call(lambda c: c.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}))
            for key in batch:
                self.cache.forget(self.url_of(key))
        return len(keys)

    def unfinished_uploads(self) -> list["Upload"]:
        """Multipart uploads begun under this bucket's prefix and neither completed nor
        aborted: a writer killed mid-upload (an ingest's matrix, DuckDB's Parquet file)
        leaves one. Its parts take space, yet are no object: listing objects never shows
        them, only ``abort`` frees them."""
        start = f"{self.prefix}/" if self.prefix else ""
        cut = len(start)

        def listing(client):
            found = []
            for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=start):
                for entry in page.get("Uploads", []):
                    found.append(Upload(entry["Key"][cut:], entry["UploadId"], entry["Initiated"].timestamp()))
            return found
        return self._call(listing)

    def abort(self, uploads: Iterable["Upload"]) -> int:
        """Abort these multipart uploads (their parts are deleted; one finished or aborted
        meanwhile is fine); returns how many were asked for."""
        count = 0
        for upload in uploads:
            try:
                self._call(lambda c: c.abort_multipart_upload(Bucket=self.bucket, Key=self.object_key(upload.key),
                                                              UploadId=upload.id), upload.key)
            except FileNotFoundError:
                pass  # NoSuchUpload: gone already
            count += 1
        return count

    @contextmanager
    def uncached(self):
        """This bucket read through a new, empty cache removed afterwards: what ``verify``
        reads, so it checks the objects' bytes rather than copies kept earlier."""
        import tempfile

        self.cache.root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=".verify-", dir=self.cache.root))
        try:
            yield Bucket(self.url, Cache(folder, self.cache.limit))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def remove_empty_folders(self) -> None:
        """Nothing: a bucket has no folders."""

    def discard(self, paths: Iterable) -> None:
        """Delete objects a rolled-back write created (paths, or their URLs)."""
        self.delete(self.key_of(path) for path in paths)


def _runs(indexes: list[int], longest: int) -> list[list[int]]:
    """Sorted ``indexes`` as runs of consecutive ones, each at most ``longest`` long."""
    runs: list[list[int]] = []
    for index in indexes:
        if runs and runs[-1][-1] == index - 1 and len(runs[-1]) < longest:
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


class _Files:
    """Local files opened for reading once each and closed together (a batch's ranges read
    many ranges of one block or pack: one ``open`` each, not one per range)."""

    def __init__(self):
        self._fds: dict[str, int] = {}

    def pread(self, path: str, buffer: memoryview, offset: int) -> int | OSError:
        fd = self._fds.get(path)
        if fd is None:
            try:
                fd = self._fds[path] = os.open(path, os.O_RDONLY)
            except OSError as exc:
                return exc
        return os.preadv(fd, [buffer], offset)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _copy_blocks(blocks: dict[int, bytes | str], buffer: memoryview, offset: int, files: _Files) -> int | OSError:
    """Copy the range at ``offset`` out of the object's blocks (bytes, or kept files read in
    place) into ``buffer``; returns the bytes copied (short when the object ends first)."""
    copied, position = 0, offset
    while copied < len(buffer):
        index, within = divmod(position, BLOCK_SIZE)
        block = blocks[index]
        wanted = min(len(buffer) - copied, BLOCK_SIZE - within)
        if isinstance(block, str):
            got = files.pread(block, buffer[copied:copied + wanted], within)
            if isinstance(got, OSError):
                return got
        else:
            got = len(block[within:within + wanted])
            buffer[copied:copied + got] = block[within:within + got]
        copied += got
        position += got
        if got < wanted:
            break  # a short block: the object's last
    return copied


@dataclass(frozen=True)
class Upload:
    """A multipart upload not finished: the key it was for, its id, when it began (epoch s)."""

    key: str
    id: str
    started: float


class ObjectPath:
    """An object of a bucket where code expects a ``Path``: ``str`` is its URL,
    ``os.fspath`` its cached local file (fetched then: ``np.load(path, mmap_mode="r")``)."""

    def __init__(self, bucket: Bucket, key: str):
        self.bucket, self.key = bucket, key.strip("/")

    def __str__(self) -> str:
        return self.bucket.url_of(self.key)

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __fspath__(self) -> str:
        return str(self.bucket.local(self.key))

    def resolve(self) -> Path:
        """The cached local file (what ``np.memmap`` records as its file name)."""
        return self.bucket.local(self.key)

    def __eq__(self, other) -> bool:
        return isinstance(other, ObjectPath) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))

    def __lt__(self, other) -> bool:
        return str(self) < str(other)

    def __truediv__(self, part: str) -> "ObjectPath":
        return ObjectPath(self.bucket, f"{self.key}/{part}" if self.key else part)

    @property
    def name(self) -> str:
        return PurePosixPath(str(self)).name

    @property
    def parent(self) -> "ObjectPath":
        return ObjectPath(self.bucket, self.key.rpartition("/")[0])

    def locate(self, where) -> "ObjectPath":
        """A path of this bucket from itself or its URL (as worker processes pass paths back)."""
        return ObjectPath(self.bucket, self.bucket.key_of(where))

    def relative_to(self, other) -> PurePosixPath:
        if isinstance(other, ObjectPath) and other.bucket == self.bucket and \
                (not other.key or self.key.startswith(other.key + "/")):
            return PurePosixPath(self.key[len(other.key):].lstrip("/"))
        raise ValueError(f"{self} is not under {other}")

    def exists(self) -> bool:
        return self.bucket.exists(self.key) if self.key else self.bucket.any_under("")

    def is_file(self) -> bool:
        return bool(self.key) and self.bucket.exists(self.key)

    def is_dir(self) -> bool:
        """Whether any object is under it."""
        return self.bucket.any_under(self.key)

    def stat(self):
        found = self.bucket.head(self.key)
        if found is None:
            raise FileNotFoundError(errno.ENOENT, "no such object", str(self))
        return SimpleNamespace(st_size=found["size"], st_mtime=found["modified"])

    def unlink(self, missing_ok: bool = False) -> None:
        if not missing_ok and not self.bucket.exists(self.key):
            raise FileNotFoundError(errno.ENOENT, "no such object", str(self))
        self.bucket.delete([self.key])


_sessions: dict[Credentials, object] = {}
"""boto3 sessions by credentials, kept for the process and the processes it forks: a new
session reads and parses botocore's S3 model again (~0.1 s a client), a kept one makes a
client in a few ms (a forked ingest worker's, a new connection's)."""
_clients: dict[Credentials, object] = {}
"""This process's clients by credentials, shared by its ``Bucket`` objects (thread-safe)."""
_clients_lock = threading.Lock()


def _forked() -> None:
    """In a forked child: the parent's clients (their connections) are not its own."""
    global _clients_lock
    _clients.clear()
    _clients_lock = threading.Lock()


os.register_at_fork(after_in_child=_forked)


def _client(url: str):
    found = credentials(url)
    client = _clients.get(found)
    if client is not None:
        return client
    try:
        import boto3
        from botocore.config import Config
    except ModuleNotFoundError:
        raise DatabaseError(f"{url}: a store on a bucket needs boto3; install it with {CLOUD_EXTRA}") from None
    with _clients_lock:
        if found not in _clients:
            session = _sessions.get(found)
            if session is None:
                session = _sessions[found] = boto3.session.Session(
                    aws_access_key_id=found.key_id, aws_secret_access_key=found.secret,
                    aws_session_token=found.token, region_name=found.region)
            config = Config(max_pool_connections=32, retries={"max_attempts": 5, "mode": "standard"},
                            s3={"addressing_style": "path"} if found.endpoint else None,
                            connect_timeout=10, read_timeout=60)
            _clients[found] = session.client("s3", endpoint_url=found.endpoint, config=config)
        return _clients[found]


REFUSED = {"InvalidAccessKeyId": "no such key id", "SignatureDoesNotMatch": "the secret is not that key id's",
           "AccessDenied": "the key may not use this bucket", "403": "forbidden",
           "InvalidToken": "the session token is not valid", "ExpiredToken": "the session token expired",
           "AuthorizationHeaderMalformed": "the region or key id is malformed"}
"""The S3 error codes of credentials the server refused, each with what it means."""


def refused(bucket: str | None, code: str) -> DatabaseError:
    """The one line for credentials the server refused (``code``: its S3 error code)."""
    where = f"{SCHEME}{bucket}" if bucket else "the bucket"
    return DatabaseError(f"{where}: the server refused the credentials ({code}: {REFUSED.get(code, 'refused')}); "
                         f"set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to a key it accepts")


def refused_in_duckdb(message: str) -> DatabaseError | None:
    """``refused`` for a DuckDB (httpfs) error reading or writing the lake's Parquet files
    with credentials the server refused (HTTP 403 and an S3 code of ``REFUSED``), else None.
    httpfs names the object by its ``s3://`` URL, or by the endpoint's URL, path style."""
    if "403" not in message:
        return None
    code = next((c for c in REFUSED if c != "403" and re.search(rf"\b{c}\b", message)), None)
    if code is None:
        return None
    found = re.search(r"s3://([^/'\s]+)", message) or re.search(r"https?://[^/'\s]+/([^/'\s]+)/", message)
    return refused(found[1] if found else None, code)


def _translated(exc: Exception, bucket: Bucket, key: str) -> Exception:
    """What a boto3 failure means here: FileNotFoundError for a missing object, one line for
    the rest."""
    from botocore import exceptions as boto

    where = bucket.url_of(key)
    if isinstance(exc, (DatabaseError, OSError)) and not isinstance(exc, boto.BotoCoreError):
        return exc
    if isinstance(exc, boto.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "NoSuchUpload", "404", "NotFound"):
            return FileNotFoundError(errno.ENOENT, "no such object", where)
        if code == "NoSuchBucket":
            return DatabaseError(f"{SCHEME}{bucket.bucket}: no such bucket (create it first, or check the data path)")
        if code in REFUSED:
            return refused(bucket.bucket, code)
        return DatabaseError(f"{where}: the bucket refused the request ({code or exc})")
    if isinstance(exc, boto.NoCredentialsError):
        return DatabaseError(f"{where}: no credentials for the bucket; set AWS_ACCESS_KEY_ID and "
                             f"AWS_SECRET_ACCESS_KEY")
    if isinstance(exc, (boto.EndpointConnectionError, boto.ConnectTimeoutError)):
        return DatabaseError(f"{where}: cannot reach the server ({exc}); check AWS_ENDPOINT_URL")
    return exc
