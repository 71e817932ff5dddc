"""Reading a bucket's objects by byte range: an object not cached whole is fetched in blocks,
only those a read covers, each kept in the cache and never fetched again; a batch from a
lake with an empty cache downloads a few blocks of the response matrix and of the pack
holding the scan's images, not all of them.
Against moto's S3 server (tests/s3.py); the block size is made small so that small
objects span many blocks."""

from __future__ import annotations

import os

import numpy as np
import pytest

import scandb
from scandb.store import bucket as buckets
from scandb.store.bucket import Bucket
from scandb.store.cache import Cache

from .hostile import run_cli
from .s3 import moto_server, s3_bucket  # noqa: F401  (fixtures)
from .scans import make_scan, source, spec_for

BLOCK = 1000
"""The block size these tests read with (the real one is 1 MiB)."""


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(buckets, "BLOCK_SIZE", BLOCK)


def object_in_bucket(s3_bucket, key: str, data: bytes) -> None:
    """An object put by another client: nothing of it is in this machine's cache."""
    s3_bucket.server.client().put_object(Bucket=s3_bucket.name, Key=f"lab/store/{key}", Body=data)


def kept_blocks(cache: Cache, url: str) -> list[int]:
    folder = cache.block(url, 0).parent
    return sorted(int(p.name) for p in folder.iterdir()) if folder.is_dir() else []


def test_ranges_of_an_uncached_object_fetch_only_the_blocks_they_cover(s3_bucket, small_blocks, tmp_path):
    data = np.random.default_rng(1).bytes(3 * BLOCK + 500)
    object_in_bucket(s3_bucket, "responses/m.npy", data)
    cache = Cache(tmp_path / "c")
    bucket = Bucket(f"{s3_bucket.url}/store", cache)
    wanted = [(10, 20), (990, 30), (3 * BLOCK + 480, 20), (3 * BLOCK + 490, 50), (5 * BLOCK, 8), (7, 0)]
    buffers = [memoryview(bytearray(n)) for _, n in wanted]
    got = bucket.read_ranges([("responses/m.npy", offset, b) for (offset, _), b in zip(wanted, buffers)])
    assert got == [20, 30, 20, 10, 0, 0]  # short at the object's end, nothing past it
    for (offset, n), buffer, count in zip(wanted, buffers, got):
        assert bytes(buffer[:count]) == data[offset:offset + count]
    url = bucket.url_of("responses/m.npy")
    assert kept_blocks(cache, url) == [0, 1, 3, 5]  # block 2 was not asked for; 5 is past the end, empty
    assert not cache.file(url).exists()  # never downloaded whole
    assert cache.info()["blocks"] == 4 and cache.info()["objects"] == 0

    s3_bucket.server.client().delete_object(Bucket=s3_bucket.name, Key="lab/store/responses/m.npy")
    again = memoryview(bytearray(BLOCK + 100))
    assert bucket.read_ranges([("responses/m.npy", 0, again)]) == [BLOCK + 100]  # from the kept blocks
    assert bytes(again) == data[:BLOCK + 100]
    missing = bucket.read_ranges([("responses/m.npy", 2 * BLOCK, memoryview(bytearray(10)))])
    assert isinstance(missing[0], FileNotFoundError)  # block 2 was never fetched: the bucket is asked


def test_a_read_of_many_blocks_is_served_in_bounded_groups_and_equals_the_object(s3_bucket, small_blocks,
                                                                                   monkeypatch, tmp_path):
    monkeypatch.setattr(buckets, "BLOCKS_HELD", 3)
    data = np.random.default_rng(2).bytes(20 * BLOCK + 1)
    object_in_bucket(s3_bucket, "responses/big.npy", data)
    cache = Cache(tmp_path / "c")
    bucket = Bucket(f"{s3_bucket.url}/store", cache)
    rows = np.random.default_rng(3).permutation(40)
    buffers = [memoryview(bytearray(BLOCK // 2)) for _ in rows]
    got = bucket.read_ranges([("responses/big.npy", int(row) * BLOCK // 2, b) for row, b in zip(rows, buffers)])
    assert got == [BLOCK // 2] * 40
    for row, buffer in zip(rows, buffers):
        assert bytes(buffer) == data[row * BLOCK // 2:(row + 1) * BLOCK // 2]
    assert kept_blocks(cache, bucket.url_of("responses/big.npy")) == list(range(20))


def test_a_missing_object_read_by_range_is_its_error_and_keeps_no_block(s3_bucket, small_blocks, tmp_path):
    cache = Cache(tmp_path / "c")
    bucket = Bucket(f"{s3_bucket.url}/store", cache)
    got = bucket.read_ranges([("responses/none.npy", 0, memoryview(bytearray(5)))])
    assert isinstance(got[0], FileNotFoundError) and "responses/none.npy" in str(got[0])
    assert cache.info()["blocks"] == 0


def test_a_batch_from_an_empty_cache_reads_blocks_of_the_matrix_and_the_pack_not_all_of_them(s3_bucket, small_blocks, tmp_path,
                                                                               monkeypatch):
    spec = dict(n_trials=40, n_neurons=60, seed=7, animal_id=24301)
    url = f"ducklake:sqlite:{tmp_path / 'catalog.sqlite'}"
    run = run_cli("ingest", str(make_scan(tmp_path, **spec)), "--db", url, "--data-path", s3_bucket.url)
    assert run.code == 0, run
    cold = tmp_path / "cold"
    monkeypatch.setenv("SCANDB_CACHE", str(cold))
    trials = [3, 17, 38]
    with scandb.connect(url) as db:
        got = db.fetch(trials, "images", "responses", scan=db.scans()["scan_key"][0])
        matrix = db.conn.execute("SELECT path FROM response_matrices").fetchone()[0]
        placed = db.conn.execute(f"""SELECT DISTINCT i.path, i.pack_offset, i.pack_length FROM trials t
                                     JOIN images i USING (image_hash) WHERE t.trial_id IN {tuple(trials)}""").fetchall()
    for key in ("images", "responses"):
        expected = source(spec_for(**spec), key, trials)
        np.testing.assert_array_equal(got[key], expected.reshape(got[key].shape).astype(got[key].dtype))
    cache = Cache(cold)
    matrix_url = f"{s3_bucket.url}/{scandb.catalog.lake.STORE_FOLDER}/{matrix}"
    assert not cache.file(matrix_url).exists()
    row, data = spec["n_neurons"] * 4, 128  # 240-byte rows after numpy's 128-byte header: 10 blocks in all
    needed = {0} | {(data + trial * row + end) // BLOCK for trial in trials for end in (0, row - 1)}
    assert kept_blocks(cache, matrix_url) == sorted(needed)  # the header's block and the rows', no other
    packs = {path for path, _, _ in placed}
    assert len(packs) == 1 and all(offset is not None for _, offset, _ in placed)  # one chunk: one pack
    pack_url = f"{s3_bucket.url}/{scandb.catalog.lake.STORE_FOLDER}/{packs.pop()}"
    covering = {index for _, offset, length in placed for index in range(offset // BLOCK, (offset + length - 1) // BLOCK + 1)}
    assert kept_blocks(cache, pack_url) == sorted(covering)  # the blocks of the batch's images, no other
    assert not cache.file(pack_url).exists() and cache.info()["objects"] == 0  # nothing downloaded whole


def test_eviction_and_forgetting_take_blocks_as_they_take_objects(tmp_path):
    cache = Cache(tmp_path / "c", limit=100_000)
    url = "s3://b/responses/m.npy"
    for index in range(4):
        cache.fill(cache.block(url, index), lambda temporary: temporary.write_bytes(b"x" * 3000))
        os.utime(cache.block(url, index), (1000.0 + index, 1000.0 + index))  # last used long ago, in order
    cache.fill(cache.file("s3://b/ab/i.npy"), lambda temporary: temporary.write_bytes(b"y" * 100))
    info = cache.info()
    assert (info["objects"], info["blocks"], info["bytes"]) == (1, 4, 12_100)
    assert cache.evict(limit=10_000) == 6000  # to within 90% of the limit: the least recently used first
    assert cache.info()["blocks"] == 2 and not cache.block(url, 0).exists() and not cache.block(url, 1).exists()
    cache.forget(url)
    assert cache.info()["blocks"] == 0
    assert cache.clear() >= 0 and cache.info() == {**cache.info(), "objects": 0, "blocks": 0, "bytes": 0}


def test_put_new_uploads_only_what_is_not_there_and_says_which_it_made(s3_bucket, tmp_path):
    bucket = Bucket(f"{s3_bucket.url}/store", Cache(tmp_path / "c"))
    bucket.put("ab/old.npy", b"old")
    made = []
    with bucket.uploading():
        for key in ("ab/old.npy", "ab/new.npy", "cd/other.npy"):
            bucket.put_new(key, key.encode(), lambda key=key: made.append(key))
    assert sorted(made) == ["ab/new.npy", "cd/other.npy"]
    assert bucket.read("ab/old.npy") == b"old" and bucket.read("ab/new.npy") == b"ab/new.npy"


def _image(seed: int, shape=(1, 6, 8), dtype=np.uint8) -> tuple:
    import io

    from scandb.source.npyfile import parse_header

    array = np.random.default_rng(seed).integers(0, 255, shape).astype(dtype)
    buffer = io.BytesIO()
    np.save(buffer, array)
    raw = buffer.getvalue()
    return parse_header(raw), raw


def test_images_put_while_packing_on_a_bucket_are_one_object_read_back_by_range(s3_bucket, tmp_path):
    from scandb.store.images import ImageStore, read_image_file
    from scandb.store.packs import MEMBER_MAX

    bucket = Bucket(f"{s3_bucket.url}/store", Cache(tmp_path / "c"))
    store = ImageStore(bucket)
    images = [_image(seed) for seed in range(5)]
    video = _image(9, shape=(MEMBER_MAX // 64 + 1, 8, 8))  # larger than a member may be
    with bucket.uploading(), store.packing():
        unplaced = [store.put(*image) for image in images + [images[0]]]  # one twice
        kept_alone = store.put(*video)
        assert [i.path for i in unplaced] == [None] * 6  # placed once the pack is written
    placed = [store.placed(i) for i in unplaced]
    assert len({i.path for i in placed}) == 1 and placed[0].path.startswith("packs/")
    assert placed[5] == placed[0]
    assert [i.pack_offset for i in placed[:5]] == [sum(len(raw) for _, raw in images[:n]) for n in range(5)]
    assert kept_alone.pack_offset is None and kept_alone.path == store.key(kept_alone.image_hash)
    keys = sorted(k.removeprefix("store/") for k in s3_bucket.keys())
    assert keys == sorted([placed[0].path, kept_alone.path])  # two objects: the pack and the video
    assert bucket.read(placed[0].path) == b"".join(raw for _, raw in images)
    for (_, raw), stored in zip(images, placed):
        assert read_image_file(bucket, stored.path, stored.pack_offset, stored.pack_length) == raw
    assert store.created and all(str(p).startswith(s3_bucket.url) for p in store.created)

    again = ImageStore(bucket, known=[i.image_hash for i in placed])  # the next ingest: these are stored
    with bucket.uploading(), again.packing():
        known = [again.put(*image) for image in images]
        new = again.put(*_image(42))
    assert [again.placed(i).path for i in known] == [None] * 5  # nothing written for them; their rows stay
    fresh = again.placed(new)
    assert fresh.pack_offset == 0 and fresh.pack_length == len(_image(42)[1])
    assert len(s3_bucket.keys()) == 3 and len(again.created) == 1  # one new pack, of the new image alone


def test_a_local_folder_never_packs(tmp_path):
    from scandb.store.folder import Folder
    from scandb.store.images import ImageStore

    store = ImageStore(Folder(tmp_path))
    with store.packing():
        stored = store.put(*_image(1))
    assert store.placed(stored) == stored and stored.pack_offset is None
    assert stored.path == store.key(stored.image_hash) and (tmp_path / stored.path).is_file()
    assert not (tmp_path / "packs").exists()


def test_a_read_after_another_process_cleared_the_cache_fetches_the_blocks_again(s3_bucket, small_blocks, tmp_path):
    data = np.random.default_rng(2).bytes(3 * BLOCK)
    object_in_bucket(s3_bucket, "packs/p.pack", data)
    cache = Cache(tmp_path / "c")
    bucket = Bucket(f"{s3_bucket.url}/store", cache)
    first = memoryview(bytearray(1500))
    assert bucket.read_ranges([("packs/p.pack", 100, first)]) == [1500]
    Cache(tmp_path / "c").clear()  # another process (``scandb cache clear``), while this one reads on
    again = memoryview(bytearray(1500))
    assert bucket.read_ranges([("packs/p.pack", 100, again)]) == [1500]
    assert bytes(again) == bytes(first) == data[100:1600]
    assert kept_blocks(cache, bucket.url_of("packs/p.pack")) == [0, 1]


def test_an_object_whose_every_block_was_read_is_kept_whole_and_read_as_a_file(s3_bucket, small_blocks, tmp_path):
    data = np.random.default_rng(4).bytes(4 * BLOCK + 300)
    object_in_bucket(s3_bucket, "packs/w.pack", data)
    cache = Cache(tmp_path / "c")
    bucket = Bucket(f"{s3_bucket.url}/store", cache)
    url = bucket.url_of("packs/w.pack")
    first = [memoryview(bytearray(200)) for _ in range(2)]
    assert bucket.read_ranges([("packs/w.pack", 50, first[0]), ("packs/w.pack", 2 * BLOCK + 10, first[1])]) == [200] * 2
    assert kept_blocks(cache, url) == [0, 2] and bucket.kept_file("packs/w.pack") is None  # a random batch: blocks
    rest = [memoryview(bytearray(BLOCK)) for _ in range(3)]
    got = bucket.read_ranges([("packs/w.pack", offset, b) for offset, b in zip((BLOCK, 3 * BLOCK, 4 * BLOCK), rest)])
    assert got == [BLOCK, BLOCK, 300]
    assert kept_blocks(cache, url) == [] and cache.file(url).read_bytes() == data  # one whole file, no block
    assert cache.info()["objects"] == 1 and cache.info()["blocks"] == 0
    assert bucket.kept_file("packs/w.pack") == str(cache.file(url))

    s3_bucket.server.client().delete_object(Bucket=s3_bucket.name, Key="lab/store/packs/w.pack")
    offsets = np.random.default_rng(5).integers(0, len(data) - 100, 50).tolist()
    buffers = [memoryview(bytearray(100)) for _ in offsets]
    assert bucket.read_ranges([("packs/w.pack", o, b) for o, b in zip(offsets, buffers)]) == [100] * 50
    assert all(bytes(b) == data[o:o + 100] for o, b in zip(offsets, buffers))  # from the whole file alone


def test_blocks_kept_before_are_made_whole_by_the_next_process_that_reads_them(s3_bucket, small_blocks, tmp_path):
    data = np.random.default_rng(6).bytes(2 * BLOCK)  # a multiple of the block size: the empty block past it ends it
    object_in_bucket(s3_bucket, "responses/m.npy", data)
    cache = Cache(tmp_path / "c")
    url = Bucket(f"{s3_bucket.url}/store", cache).url_of("responses/m.npy")
    for index, part in enumerate((data[:BLOCK], data[BLOCK:], b"")):  # kept by an earlier process
        cache.fill(cache.block(url, index), lambda temporary, part=part: temporary.write_bytes(part))
    s3_bucket.server.client().delete_object(Bucket=s3_bucket.name, Key="lab/store/responses/m.npy")
    bucket = Bucket(f"{s3_bucket.url}/store", Cache(tmp_path / "c"))
    buffer = memoryview(bytearray(10))
    assert bucket.read_ranges([("responses/m.npy", BLOCK - 5, buffer)]) == [10]
    assert bytes(buffer) == data[BLOCK - 5:BLOCK + 5]
    assert cache.file(url).read_bytes() == data and kept_blocks(cache, url) == []


def test_a_reader_holding_blocks_another_process_made_whole_reads_the_whole_file(s3_bucket, small_blocks, tmp_path):
    data = np.random.default_rng(7).bytes(3 * BLOCK + 1)
    object_in_bucket(s3_bucket, "packs/q.pack", data)
    bucket = Bucket(f"{s3_bucket.url}/store", Cache(tmp_path / "c"))
    assert bucket.read_ranges([("packs/q.pack", 0, memoryview(bytearray(BLOCK)))]) == [BLOCK]  # block 0, touched
    other = Bucket(f"{s3_bucket.url}/store", Cache(tmp_path / "c"))  # another process reads the rest: made whole
    assert other.read_ranges([("packs/q.pack", BLOCK, memoryview(bytearray(2 * BLOCK + 1)))]) == [2 * BLOCK + 1]
    assert kept_blocks(other.cache, other.url_of("packs/q.pack")) == []
    s3_bucket.server.client().delete_object(Bucket=s3_bucket.name, Key="lab/store/packs/q.pack")
    again = memoryview(bytearray(20))
    assert bucket.read_ranges([("packs/q.pack", BLOCK - 10, again)]) == [20]  # its block 0 is gone: the whole file
    assert bytes(again) == data[BLOCK - 10:BLOCK + 10]


def test_processes_making_one_object_whole_at_once_keep_one_whole_file_of_its_bytes(tmp_path):
    import multiprocessing

    url, data = "s3://b/packs/p.pack", np.random.default_rng(8).bytes(5 * BLOCK + 7)
    cache = Cache(tmp_path / "c")
    for index in range(6):
        part = data[index * BLOCK:(index + 1) * BLOCK]
        cache.fill(cache.block(url, index), lambda temporary, part=part: temporary.write_bytes(part))
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=Cache(tmp_path / "c").assemble, args=(url, BLOCK)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    assert cache.file(url).read_bytes() == data and kept_blocks(cache, url) == []
    assert not [p for p in cache.file(url).parent.iterdir() if p.name != "p.pack"]  # no temporary left
