"""Static batches are read with preadv: image files straight into the batch, response rows
without mapping the matrix. The arrays must still be the source's, bit for bit, whatever
header an image file carries, and a damaged file must be named, never returned."""

from __future__ import annotations

import io

import numpy as np
import pytest

import scandb
from scandb.errors import DatabaseError
from scandb.query.reader import ROWS_READ
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
        damaged = db_path.parent / path
        damaged.write_bytes(damaged.read_bytes()[:-100])
        db.images([0, 1], scan=SCAN)  # other trials still read
        with pytest.raises(DatabaseError, match=f"{damaged.name}.*truncated.*scandb verify"):
            db.images([0, 4], scan=SCAN)


def test_a_missing_image_file_is_an_error_naming_it(tmp_path, db_path):
    ingested(db_path, generate(spec_for("common", n_trials=20)), tmp_path / "scan.zip")
    with scandb.connect(db_path) as db:
        path, = db.sql("SELECT i.path FROM trials t JOIN images i USING (image_hash) "
                       "WHERE t.trial_id = 6").fetchone()
        (db_path.parent / path).unlink()
        with pytest.raises(DatabaseError, match=f"{path.split('/')[-1]}: image file unreadable"):
            db.images([2, 6], scan=SCAN)


@pytest.fixture(scope="module")
def wide_scan(tmp_path_factory):
    """A scan with more trials than ROWS_READ, and its source responses."""
    folder = tmp_path_factory.mktemp("wide")
    scan = generate(spec_for("common", n_trials=ROWS_READ + 40, n_neurons=40, image_shape=(1, 4, 6)))
    ingested(folder / "lab.duckdb", scan, folder / "scan.zip")
    responses = np.stack([scan.arrays[f"data/responses/{i}.npy"] for i in range(ROWS_READ + 40)])
    return folder / "lab.duckdb", responses


@pytest.mark.parametrize("size", [1, 128, ROWS_READ, ROWS_READ + 1, ROWS_READ + 40])
def test_response_rows_of_any_selection_size_are_the_source_rows(wide_scan, size):
    db_path, responses = wide_scan
    order = np.random.default_rng(size).permutation(len(responses))[:size]
    order[-1] = order[0]  # a trial asked for twice
    with scandb.connect(db_path) as db:
        fetched = db.responses(order, scan=SCAN)
    assert fetched.dtype == np.float32 and fetched.shape == (size, 40)
    np.testing.assert_array_equal(fetched, responses[order])


def mapped_bytes(path) -> int:
    """Resident bytes of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                inside = len(fields) > 5 and fields[5] == str(path)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1]) * 1024
    return total


def test_training_batches_leave_the_response_matrix_unmapped(wide_scan):
    """A DataLoader worker's memory then holds its batches, not the pages of every row it read."""
    torch = pytest.importorskip("torch")
    from scandb.torchdata import ScanDataset

    db_path, responses = wide_scan
    dataset = ScanDataset(db_path, "SELECT scan_key, trial_id FROM trials", ("responses",), normalize=False)
    with scandb.connect(db_path) as db:
        matrix = (db_path.parent / db.sql("SELECT path FROM response_matrices").fetchone()[0]).resolve()
    seen = np.concatenate([batch[0].numpy() for batch in
                           torch.utils.data.DataLoader(dataset, batch_size=128, shuffle=True)])
    assert sorted(map(bytes, seen)) == sorted(map(bytes, responses))
    assert responses.nbytes > 8 * 4096
    assert mapped_bytes(matrix) <= 4096
