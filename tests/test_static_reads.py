"""Static batches are read with preadv: image files straight into the batch, response rows
without mapping the matrix. The arrays must still be the source's, bit for bit, whatever
header an image file carries, and a damaged file must be named, never returned."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

import scandb
from scandb.errors import DatabaseError
from scandb.synthetic import generate, write_zip

from .scans import spec_for

SCAN = "26872-17-20"


def npy_bytes(array: np.ndarray, version: tuple[int, int] = (1, 0)) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version, allow_pickle=False)
    return buffer.getvalue()


def ingested(db_path, scan, zip_path):
    with scandb.connect(db_path, read_only=False) as db:
        db.ingest(write_zip(scan, zip_path))
    return db_path


@pytest.fixture
def odd_headers(tmp_path, db_path):
    """A scan whose image 3 is stored Fortran-ordered and image 5 with a version 2.0 header;
    returns the database path and the source images."""
    scan = generate(spec_for("common", n_trials=30))
    images = {i: scan.arrays[f"data/images/{i}.npy"] for i in range(30)}
    scan.other["data/images/3.npy"] = npy_bytes(np.asfortranarray(images[3]))
    scan.other["data/images/5.npy"] = npy_bytes(images[5], version=(2, 0))
    assert np.lib.format.read_array(io.BytesIO(scan.other["data/images/3.npy"])).flags.f_contiguous
    return ingested(db_path, scan, tmp_path / "odd.zip"), np.stack([images[i] for i in range(30)])


@pytest.mark.parametrize("order", [list(range(30)), [3, 5, 0, 1, 3, 29], [0, 3, 3, 5, 7]],
                         ids=["all", "odd file first", "usual file first"])
def test_images_with_any_header_come_back_as_the_source(odd_headers, order):
    db_path, images = odd_headers
    with scandb.connect(db_path) as db:
        fetched = db.images(order, scan=SCAN)
    assert fetched.dtype == images.dtype and fetched.flags.c_contiguous
    np.testing.assert_array_equal(fetched, images[order])


def test_a_truncated_image_file_is_an_error_naming_it(tmp_path, db_path):
    ingested(db_path, generate(spec_for("common", n_trials=20)), tmp_path / "scan.zip")
    with scandb.connect(db_path) as db:
        path, = db.sql("SELECT i.path FROM trials t JOIN images i USING (image_hash) "
                       "WHERE t.trial_id = 4").fetchone()
        damaged = db_path.parent / "lab.images" / path
        damaged.write_bytes(damaged.read_bytes()[:-100])
        db.images([0, 1], scan=SCAN)  # other trials still read
        with pytest.raises(DatabaseError, match=f"{damaged.name}.*truncated.*scandb verify"):
            db.images([0, 4], scan=SCAN)


def test_a_missing_image_file_is_an_error_naming_it(tmp_path, db_path):
    ingested(db_path, generate(spec_for("common", n_trials=20)), tmp_path / "scan.zip")
    with scandb.connect(db_path) as db:
        path, = db.sql("SELECT i.path FROM trials t JOIN images i USING (image_hash) "
                       "WHERE t.trial_id = 6").fetchone()
        (db_path.parent / "lab.images" / path).unlink()
        with pytest.raises(DatabaseError, match=f"{path.split('/')[-1]}: image file unreadable"):
            db.images([2, 6], scan=SCAN)


@pytest.fixture(scope="module")
def wide_scan(tmp_path_factory):
    """A scan whose response matrix spans many pages, and its source responses."""
    folder = tmp_path_factory.mktemp("wide")
    scan = generate(spec_for("common", n_trials=300, n_neurons=60, image_shape=(1, 4, 6)))
    ingested(folder / "lab.duckdb", scan, folder / "scan.zip")
    responses = np.stack([scan.arrays[f"data/responses/{i}.npy"] for i in range(300)])
    return folder / "lab.duckdb", responses


def mapped_bytes(pid: int, path) -> int:
    """Resident bytes of a process's mappings of ``path`` (/proc/<pid>/smaps)."""
    total, inside = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                inside = len(fields) > 5 and fields[5] == str(path)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1]) * 1024
    return total


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_batches_hold_the_source_rows_in_the_selection_order(wide_scan, workers):
    """In workers the rows are read with preadv, in the main process from the memory map."""
    torch = pytest.importorskip("torch")
    from scandb.torchdata import ScanDataset

    db_path, responses = wide_scan
    order = np.random.default_rng(workers).permutation(len(responses))
    order[-1] = order[0]  # a trial asked for twice
    dataset = ScanDataset(db_path, [(SCAN, int(t)) for t in order], ("responses",), normalize=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, num_workers=workers)
    fetched = np.concatenate([batch[0].numpy() for batch in loader])
    assert fetched.dtype == np.float32
    np.testing.assert_array_equal(fetched, responses[order])


def test_dataloader_workers_leave_the_response_matrix_unmapped(wide_scan):
    """Each worker's memory holds its batches, not the pages of every row it has read; the
    rows stay in the page cache, which the workers share."""
    torch = pytest.importorskip("torch")
    from bench.loaders import children
    from scandb.torchdata import ScanDataset

    db_path, responses = wide_scan
    with scandb.connect(db_path) as db:
        matrix = (db_path.parent / db.sql("SELECT path FROM response_matrices").fetchone()[0]).resolve()
    dataset = ScanDataset(db_path, "SELECT scan_key, trial_id FROM trials", ("responses",), normalize=False)
    servers = set(children(os.getpid()))  # test servers this process started (an S3 server, say)
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True, num_workers=1, persistent_workers=True)
    seen = np.concatenate([batch[0].numpy() for batch in loader])
    assert sorted(map(bytes, seen)) == sorted(map(bytes, responses))
    workers = [pid for pid in children(os.getpid()) if pid not in servers]
    assert len(workers) == 1
    assert responses.nbytes > 16 * 4096 and mapped_bytes(workers[0], matrix) <= 4096
    del loader


@pytest.mark.parametrize("cache_images", [True, False])
def test_cache_images_serves_later_epochs_from_memory(tmp_path, db_path, cache_images):
    """With cache_images=True a second epoch reads no image file (here: they are gone);
    by default every epoch reads them again."""
    pytest.importorskip("torch")
    from scandb.torchdata import ScanDataset

    scan = generate(spec_for("common", n_trials=20))
    ingested(db_path, scan, tmp_path / "scan.zip")
    images = np.stack([scan.arrays[f"data/images/{i}.npy"] for i in range(20)])
    dataset = ScanDataset(db_path, "SELECT scan_key, trial_id FROM trials ORDER BY trial_id", ("images",),
                          normalize=False, image_dtype=None, cache_images=cache_images)
    for item in dataset.__getitems__(list(range(20))):
        item.images[...] = 0  # a caller changing its batch does not change the cache
    for path in (db_path.parent / "lab.images").glob("??/*.npy"):
        path.unlink()
    if not cache_images:
        with pytest.raises(DatabaseError, match="image file unreadable"):
            dataset.__getitems__([3])
        return
    second = np.stack([item.images for item in dataset.__getitems__([19, 3, 3, 0])])
    np.testing.assert_array_equal(second, images[[19, 3, 3, 0]])
