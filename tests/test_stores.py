"""The contract every store of files beside the catalog keeps, run against each store,
and the contract of the medium they share (``Folder``), reads included.

Each store class below supplies how to write one file into its store; the tests in
``StoreContract`` are the same for all (zarr-python's ``StoreTests`` is the model).
``MediumContract`` is what another medium (an object store) must pass to carry every
store unchanged.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import numpy as np
import pytest

from scandb.errors import DatabaseError
from scandb.source import npyfile
from scandb.store.base import Store, collect_garbage, temporary_for
from scandb.store.folder import Folder, key_of
from scandb.store.frames import FrameStore, read_windows
from scandb.store.images import ImageStore, image_hash
from scandb.store.matrices import MatrixStore
from scandb.store.meta import MetaStore, intact, stored_content

from .s3 import moto_server, s3_bucket  # noqa: F401  (fixtures)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


class StoreContract:
    """Tests every store passes; subclasses implement ``make`` and ``add``."""

    def make(self, folder: Path) -> Store:
        raise NotImplementedError

    def add(self, store: Store, seed: int) -> tuple[str, bytes]:
        """Write one file through the store's own write path; returns its key and the
        bytes a reader of that key must find."""
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path) -> Store:
        return self.make(tmp_path / "lab.images")

    def test_a_written_file_is_listed_under_its_key_with_its_bytes(self, store):
        key, data = self.add(store, 1)
        assert set(store.files()) == {key}
        assert store.files()[key] == store.file(key)
        assert store.file(key).read_bytes() == data

    def test_a_written_file_reads_back_whole_and_by_byte_ranges(self, store):
        key, data = self.add(store, 1)
        assert store.read(key) == data
        stored = store.key(key)
        head, tail = bytearray(10), bytearray(len(data) - 10)
        assert store.folder.read_into(stored, [head, tail]) == len(data)
        assert bytes(head + tail) == data
        buffers = [memoryview(bytearray(7)) for _ in range(3)]
        got = store.folder.read_ranges([(stored, offset, b) for offset, b in zip((0, 3, len(data) - 7), buffers)])
        assert got == [7, 7, 7]
        assert [bytes(b) for b in buffers] == [data[0:7], data[3:10], data[-7:]]

    def test_its_keys_are_relative_to_the_store_folder_so_a_moved_store_still_has_them(self, store, tmp_path):
        key, data = self.add(store, 1)
        moved = tmp_path / "elsewhere.images"
        store.folder.root.rename(moved)
        again = type(store)(Folder(moved))
        assert set(again.files()) == {key} and again.read(key) == data

    def test_an_empty_store_lists_nothing(self, store):
        assert store.files() == {}
        assert store.temporaries() == []
        assert collect_garbage([(store, set())]) == 0

    def test_a_killed_writers_temporary_is_not_a_file_but_is_garbage(self, store):
        key, _ = self.add(store, 1)
        half_written = temporary_for(store.file(key)).with_name(f".{Path(key).stem}x.99999.tmp")
        half_written.write_bytes(b"partial")
        assert set(store.files()) == {key}
        assert store.temporaries() == [half_written]
        assert collect_garbage([(store, {key})]) == 1
        assert not half_written.exists() and store.file(key).exists()

    def test_garbage_is_every_file_no_row_references(self, store):
        kept, _ = self.add(store, 1)
        dropped, _ = self.add(store, 2)
        assert store.collect_garbage({kept}) == 1
        assert set(store.files()) == {kept}
        assert not store.file(dropped).exists()

    def test_an_empty_folder_a_killed_writer_left_is_garbage(self, store):
        key, _ = self.add(store, 1)
        (store.root / "zz").mkdir()
        store.collect_garbage({key})
        assert not (store.root / "zz").exists() and store.file(key).exists()

    def test_collecting_twice_removes_nothing_more(self, store):
        kept, _ = self.add(store, 1)
        self.add(store, 2)
        store.collect_garbage({kept})
        assert store.collect_garbage({kept}) == 0
        assert set(store.files()) == {kept}

    def test_removing_keys_deletes_their_files_and_leaves_no_empty_folder(self, store):
        key, _ = self.add(store, 1)
        other, _ = self.add(store, 2)
        assert store.remove([key]) == 1
        assert set(store.files()) == {other}
        store.remove([other])
        left = [p for p in store.root.rglob("*")] if store.root.exists() else []
        assert left == []

    def test_keys_are_paths_relative_to_the_database_folder_or_names(self, store):
        key, data = self.add(store, 3)
        path = store.file(key)
        assert path.is_relative_to(store.root)
        assert not Path(key).is_absolute()


class TestImageStore(StoreContract):
    def make(self, folder: Path) -> Store:
        return ImageStore(folder)

    def add(self, store: ImageStore, seed: int) -> tuple[str, bytes]:
        image = np.random.default_rng(seed).integers(0, 255, (1, 4, 6), dtype=np.uint8)
        raw = npy_bytes(image)
        stored = store.put(npyfile.parse_header(raw), raw)
        return stored.image_hash, raw


class TestMatrixStore(StoreContract):
    def make(self, folder: Path) -> Store:
        return MatrixStore(folder)

    def add(self, store: MatrixStore, seed: int) -> tuple[str, bytes]:
        matrix = np.random.default_rng(seed).normal(size=(5, 3)).astype(np.float32)
        writer = store.writer(f"scan{seed}", *matrix.shape)
        writer.write(np.array([4, 0, 2, 1, 3]), matrix[[4, 0, 2, 1, 3]])
        key = writer.finish()
        return key, npy_bytes(matrix)


# -- what each store adds to the contract ------------------------------------------------


def test_an_equal_image_is_stored_once(tmp_path):
    store = ImageStore(tmp_path / "lab.images")
    raw = npy_bytes(np.zeros((1, 2, 2), np.uint8))
    first = store.put(npyfile.parse_header(raw), raw)
    again = ImageStore(tmp_path / "lab.images").put(npyfile.parse_header(raw), raw)
    assert first == again and len(store.files()) == 1


def test_a_matrix_key_is_the_path_under_the_store_folder_the_query_layer_loads(tmp_path):
    store = MatrixStore(tmp_path / "lab.images")
    writer = store.writer("abc", 2, 2)
    writer.write(np.array([0, 1]), np.eye(2, dtype=np.float32))
    key = writer.finish()
    assert key == "responses/abc.npy"
    np.testing.assert_array_equal(np.load(tmp_path / "lab.images" / key, mmap_mode="r"), np.eye(2, dtype=np.float32))


def test_a_discarded_matrix_leaves_no_file(tmp_path):
    store = MatrixStore(tmp_path / "lab.images")
    writer = store.writer("abc", 2, 2)
    writer.write(np.array([0]), np.ones((1, 2), np.float32))
    writer.discard()
    assert store.files() == {} and store.temporaries() == []


def test_one_collector_cleans_several_stores(tmp_path):
    images, matrices = ImageStore(tmp_path / "lab.images"), MatrixStore(tmp_path / "lab.images")
    raw = npy_bytes(np.ones((1, 2, 2), np.uint8))
    images.put(npyfile.parse_header(raw), raw)
    writer = matrices.writer("m", 1, 1)
    writer.write(np.array([0]), np.ones((1, 1), np.float32))
    writer.finish()
    assert collect_garbage([(images, set()), (matrices, set())]) == 2
    assert images.files() == {} and matrices.files() == {}
    assert os.listdir(tmp_path / "lab.images") in ([], ["responses"])


class TestFrameStore(StoreContract):
    def make(self, folder: Path) -> Store:
        return FrameStore(folder)

    def add(self, store: FrameStore, seed: int) -> tuple[str, bytes]:
        video = np.random.default_rng(seed).normal(size=(3, 4, 5)).astype(np.float32)
        raw = npy_bytes(video)
        digest = image_hash(npyfile.parse_header(raw), raw)
        store.put(digest, raw)
        return digest, npy_bytes(np.ascontiguousarray(np.moveaxis(video, -1, 0)))


def test_a_video_copy_is_written_once_and_read_back_window_by_window(tmp_path):
    store = FrameStore(tmp_path / "lab.images")
    video = np.arange(2 * 3 * 6, dtype=np.float64).reshape(2, 3, 6)
    raw = npy_bytes(video)
    store.put("cd" * 32, raw)
    store.put("cd" * 32, raw)
    assert store.created == [store.file("cd" * 32)]
    out = np.empty((2, 4, 2, 3), np.float64)
    missing = read_windows(store.folder, [store.key("cd" * 32), "frames/ab/absent.npy"], [1, 0], out, frames=6)
    assert missing == [1]
    assert np.array_equal(out[0], np.moveaxis(video[..., 1:5], -1, 0))


class TestMetaStore(StoreContract):
    def make(self, folder: Path) -> Store:
        return MetaStore(folder)

    def add(self, store: MetaStore, seed: int) -> tuple[str, bytes]:
        raw = npy_bytes(np.random.default_rng(seed).normal(size=(4, 3)))
        return store.put(raw, "meta/statistics/responses/all/mean.npy"), raw


def test_a_meta_file_is_named_by_its_sha256_and_checked_against_it(tmp_path):
    store = MetaStore(tmp_path / "lab.images")
    raw = npy_bytes(np.arange(6.0))
    key = store.put(raw, "meta/statistics/responses/all/std.npy")
    assert key == f"meta/{hashlib.sha256(raw).hexdigest()}.npy"
    assert intact(store.folder, key) and stored_content(store.folder, key) == raw
    store.file(key).write_bytes(raw[:-1] + b"x")
    assert not intact(store.folder, key)


def test_an_unreadable_meta_file_is_one_line_naming_it(tmp_path):
    with pytest.raises(DatabaseError, match=r"meta/gone\.npy: meta file unreadable"):
        stored_content(Folder(tmp_path / "lab.images"), "meta/gone.npy")


class MediumContract:
    """What the medium under every store does; subclasses implement ``make``."""

    def make(self, tmp_path: Path) -> Folder:
        raise NotImplementedError

    @pytest.fixture
    def medium(self, tmp_path) -> Folder:
        return self.make(tmp_path)

    def test_put_then_read_whole(self, medium):
        medium.put("ab/x.npy", b"0123456789")
        assert medium.exists("ab/x.npy") and medium.read("ab/x.npy") == b"0123456789"
        assert not medium.exists("ab/y.npy")

    def test_reading_a_missing_key_is_file_not_found(self, medium):
        with pytest.raises(FileNotFoundError):
            medium.read("nothing/here.npy")
        assert isinstance(medium.read_ranges([("nothing/here.npy", 0, memoryview(bytearray(1)))])[0],
                          FileNotFoundError)

    def test_byte_ranges_of_many_files_at_once_short_at_the_end(self, medium):
        for i in range(6):
            medium.put(f"r/{i}.bin", bytes(range(i * 10, i * 10 + 10)))
        jobs = [(f"r/{i}.bin", i, memoryview(bytearray(4))) for i in range(6)] + [("r/0.bin", 8, memoryview(bytearray(4)))]
        got = medium.read_ranges(jobs)
        assert got == [4] * 6 + [2]
        assert [bytes(b) for _, _, b in jobs[:6]] == [bytes(range(i * 10 + i, i * 10 + i + 4)) for i in range(6)]
        assert bytes(jobs[6][2][:2]) == bytes([8, 9])
        assert medium.read_ranges(jobs[:6], parallel=False) == [4] * 6

    def test_listing_gives_keys_and_ages_and_no_temporaries(self, medium):
        before = time.time()
        medium.put("meta/a.npy", b"a")
        medium.put("meta/b.npy", b"b")
        medium.path("meta/.c.123.tmp").write_bytes(b"half")
        listed = medium.list("meta/*")
        assert set(listed) == {"meta/a.npy", "meta/b.npy"}
        assert all(before - 2 <= modified <= time.time() + 2 for modified in listed.values())
        assert set(medium.temporaries("meta")) == {"meta/.c.123.tmp"}
        assert medium.list("other/*") == {}

    def test_delete_removes_files_and_the_folders_they_empty(self, medium):
        medium.put("ab/cd/x.npy", b"x")
        assert medium.delete(["ab/cd/x.npy", "ab/cd/gone.npy"]) == 1
        assert not medium.exists("ab/cd/x.npy") and not medium.path("ab").exists()

    def test_a_failed_put_leaves_no_file_under_the_key(self, medium):
        with pytest.raises(TypeError):  # the write fails after the temporary was created
            medium.put("ab/full.npy", object())
        assert not medium.exists("ab/full.npy") and medium.temporaries("ab") == {}


class TestLocalFolder(MediumContract):
    def make(self, tmp_path: Path) -> Folder:
        return Folder(tmp_path / "lab.images")


class TestBucket(MediumContract):
    """The same contract on an S3 bucket (moto's server, tests/s3.py), read through a cache."""

    @pytest.fixture
    def medium(self, s3_bucket, tmp_path) -> Folder:
        from scandb.store.bucket import Bucket
        from scandb.store.cache import Cache

        return Bucket(f"{s3_bucket.url}/lab.images", Cache(tmp_path / "cache"))

    def test_listing_gives_keys_and_ages_and_no_temporaries(self, medium):
        before = time.time()
        medium.put("meta/a.npy", b"a")
        medium.put("meta/b.npy", b"b")
        medium.put("meta/.c.123.tmp", b"half")  # a bucket has no temporaries: a dot name is never a file
        listed = medium.list("meta/*")
        assert set(listed) == {"meta/a.npy", "meta/b.npy"}
        assert all(before - 2 <= modified <= time.time() + 2 for modified in listed.values())
        assert medium.temporaries("meta") == {}
        assert medium.list("other/*") == {}

    def test_delete_removes_files_and_the_folders_they_empty(self, medium):
        medium.put("ab/cd/x.npy", b"x")
        medium.delete(["ab/cd/x.npy", "ab/cd/gone.npy"])
        assert not medium.exists("ab/cd/x.npy") and not medium.path("ab").exists()

    def test_puts_while_uploading_are_all_in_the_bucket_when_it_ends(self, medium):
        with medium.uploading():
            for i in range(100):  # more than are kept in flight
                medium.put(f"ab/{i}.npy", bytes([i]) * 10)
        assert len(medium.list("ab/*.npy")) == 100 and medium.read("ab/7.npy") == bytes([7]) * 10

    def test_a_failed_upload_while_uploading_raises_when_it_ends(self, medium):
        from scandb.store.bucket import Bucket

        nowhere = Bucket("s3://no-such-bucket-here/lab.images", medium.cache)
        with pytest.raises(DatabaseError, match="no such bucket"), nowhere.uploading():
            nowhere.put("ab/x.npy", b"x")

    def test_a_large_staged_file_is_uploaded_in_parts_and_kept_in_the_cache(self, medium):
        from scandb.store import bucket

        data = np.random.default_rng(1).bytes(bucket.MULTIPART_THRESHOLD + 3 * bucket.PART_SIZE // 2)
        staged = medium.staging("responses/big.npy")
        staged.write_bytes(data)
        medium.publish(staged, "responses/big.npy")
        key = medium.object_key("responses/big.npy")
        head = medium.client.head_object(Bucket=medium.bucket, Key=key)
        assert head["ContentLength"] == len(data) and head["ETag"].strip('"').endswith("-4")  # four parts
        assert medium.cache.cached(medium.url_of("responses/big.npy")).read_bytes() == data

    def test_a_path_is_the_objects_url_and_maps_its_cached_file(self, medium, s3_bucket):
        array = np.arange(12, dtype=np.float32).reshape(3, 4)
        medium.put("responses/m.npy", npy_bytes(array))
        path = medium.path("responses/m.npy")
        assert str(path) == f"{s3_bucket.url}/lab.images/responses/m.npy"
        np.testing.assert_array_equal(np.load(path, mmap_mode="r"), array)
        assert path.stat().st_size == len(npy_bytes(array)) and path.exists()


def test_keys_written_before_revision_0011_lose_the_store_folders_name():
    assert key_of("lab.images/responses/abc.npy") == "responses/abc.npy"
    assert key_of("x y.images/meta/abc.npy") == "meta/abc.npy"
    assert key_of("responses/abc.npy") == "responses/abc.npy"
    assert key_of("ab" * 32) == "ab" * 32


def test_a_put_after_its_folder_was_emptied_and_removed_makes_it_again(tmp_path):
    medium = Folder(tmp_path / "lab.images")
    medium.put("ab/one.npy", b"1")
    other = Folder(tmp_path / "lab.images")  # another process's collector
    other.delete(["ab/one.npy"])
    assert not medium.path("ab").exists()
    medium.put("ab/two.npy", b"2")
    assert medium.read("ab/two.npy") == b"2"


def test_the_cache_evicts_the_least_recently_used_objects_past_its_limit(tmp_path):
    from scandb.store.cache import Cache, parse_size

    assert parse_size("20GB") == 20 * 10**9 and parse_size("1.5 MiB") == 3 * 2**19 and parse_size("7") == 7
    cache = Cache(tmp_path / "cache", limit=10**9)
    for i in range(4):
        cache.get(f"s3://b/k{i}", lambda temporary, i=i: temporary.write_bytes(bytes([i]) * 3000))
        os.utime(cache.file(f"s3://b/k{i}"), (1000 + i, 1000 + i))
    assert cache.cached("s3://b/k0") is not None  # used again now: the newest
    cache.limit = 10_000  # 12,000 bytes kept: evicting goes down to 9,000
    cache.evict()
    assert [cache.file(f"s3://b/k{i}").exists() for i in range(4)] == [True, False, True, True]
    assert cache.info()["bytes"] == 9000 and cache.clear() == 9000 and cache.info()["objects"] == 0


def test_an_object_a_reader_just_touched_is_not_evicted_before_it_opens_it(tmp_path):
    """A reader touches an object (``cached``/``get``) and then opens it; another process's
    eviction in between would fail the read with FileNotFoundError."""
    from scandb.store.cache import IN_USE_S, Cache

    reader = Cache(tmp_path / "cache", limit=10**9)
    for i in range(3):
        reader.get(f"s3://b/k{i}", lambda temporary, i=i: temporary.write_bytes(bytes([i]) * 3000))
        os.utime(reader.file(f"s3://b/k{i}"), (1000 + i, 1000 + i))
    path = reader.cached("s3://b/k2")  # about to be opened
    other = Cache(tmp_path / "cache", limit=2000)  # another process's view: even k2 is past its limit
    assert other.evict() == 6000
    assert path.read_bytes() == bytes([2]) * 3000
    os.utime(path, (path.stat().st_mtime - IN_USE_S - 1,) * 2)  # not used for a while: it goes
    assert other.evict() == 3000 and other.info()["objects"] == 0


def test_a_session_array_copied_through_reused_buffers_keeps_every_block(tmp_path):
    """More blocks than the copy has buffers, and a consumer slower than the reader: every
    block reaches the file, the digest and ``on_block`` as it was read, in order."""
    from scandb.session.files import FolderFiles
    from scandb.store.sessions import RING_DEPTH, SessionStore

    source = np.random.default_rng(3).integers(0, 255, size=(RING_DEPTH * 5 + 3) * 4096 - 17, dtype=np.uint8)
    (tmp_path / "s" / "responses").mkdir(parents=True)
    (tmp_path / "s" / "responses" / "data.mem").write_bytes(source.tobytes())
    files = FolderFiles(tmp_path / "s")
    seen = []

    def slow(block):
        time.sleep(0.002)
        seen.append(bytes(block))

    header = b"\x93NUMPY header"
    store = SessionStore(tmp_path / "store")
    key, digest = store.copy(lambda take: files.chunks("responses/data.mem", 4096, take), header, slow)
    assert digest == hashlib.sha256(source.tobytes()).hexdigest()
    assert (tmp_path / "store" / key).read_bytes() == header + source.tobytes()
    assert b"".join(seen) == source.tobytes() and len(seen) == RING_DEPTH * 5 + 3
