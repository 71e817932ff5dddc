"""A DataLoader's batch of a ScanDataset is the arrays its __getitems__ read, handed to the
default collate without stacking the items again: the same values, dtypes and shapes the
items stacked give, memory of the caller's own, and any edited list of items collated item
by item as before."""

from __future__ import annotations

import numpy as np
import pytest

import scandb
from scandb.synthetic import generate, write_zip

from .scans import spec_for, stack

torch = pytest.importorskip("torch")
from scandb.torchdata import ScanDataset  # noqa: E402

KEYS = ("images", "responses", "behavior", "pupil_center")
N_TRIALS = 24


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A database of one scan, and that scan's source arrays."""
    directory = tmp_path_factory.mktemp("collate")
    scan = generate(spec_for("common", n_trials=N_TRIALS, n_neurons=11, seed=3))
    with scandb.connect(directory / "lab.duckdb", read_only=False) as db:
        db.ingest(write_zip(scan, directory / "scan.zip"))
    return directory / "lab.duckdb", scan.arrays


def plain_collate(items: list):
    """What torch's default collate gives for the same items as plain tuples."""
    return torch.utils.data.default_collate([tuple(item) for item in items])


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("image_dtype", [None, "float32"])
def test_loader_batches_are_the_source_rows_with_stacked_dtypes_and_shapes(lab, workers, image_dtype):
    db_path, arrays = lab
    order = np.random.default_rng(workers).permutation(N_TRIALS)
    dataset = ScanDataset(db_path, [(spec_for("common").key, int(t)) for t in order], KEYS, normalize=False,
                          image_dtype=image_dtype)
    loader = torch.utils.data.DataLoader(dataset, batch_size=10, num_workers=workers)
    batches = list(loader)
    assert [len(b.images) for b in batches] == [10, 10, 4]
    assert type(batches[0]).__name__ == "DataPoint"
    for key in KEYS:
        got = torch.cat([getattr(b, key) for b in batches])
        expected = stack(arrays, key, order)
        if key == "images" and image_dtype is not None:
            expected = expected.astype(image_dtype)
        assert all(getattr(b, key).is_contiguous() for b in batches), key
        assert got.dtype == torch.from_numpy(expected).dtype, key
        np.testing.assert_array_equal(got.numpy(), expected.reshape(got.shape), err_msg=key)
        assert got.shape[1:] == np.asarray(getattr(dataset[0], key)).shape, key


def test_trial_columns_collate_as_torch_collates_them(lab):
    """Strings stay a tuple of strings, numbers become a tensor, lists of numbers stacked."""
    db_path, arrays = lab
    keys = ("responses", "tier", "image_id", "image_shape")
    dataset = ScanDataset(db_path, "SELECT scan_key, trial_id FROM trials ORDER BY trial_id DESC", keys,
                          normalize=False)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=8)))
    trials = list(range(23, 15, -1))
    assert batch._fields == keys
    np.testing.assert_array_equal(batch.responses.numpy(), stack(arrays, "responses", trials))
    # the values, from the scan's own files
    assert batch.tier == tuple(arrays["meta/trials/tiers.npy"][trials].tolist())
    assert batch.image_id.tolist() == arrays["meta/trials/frame_image_id.npy"][trials].tolist()
    assert batch.image_shape.tolist() == [list(arrays[f"data/images/{t}.npy"].shape) for t in trials]
    # the types, as torch's default collate makes them of the same items
    expected = plain_collate(dataset.__getitems__(list(range(8))))
    assert isinstance(batch.tier, tuple) and batch.tier == expected[1]
    assert batch.image_id.dtype == expected[2].dtype and torch.equal(batch.image_id, expected[2])
    assert torch.equal(batch.image_shape, expected[3])


@pytest.mark.parametrize("cache_images, normalize", [(False, False), (True, False), (False, True)])
def test_changing_a_batch_in_place_changes_nothing_the_dataset_yields_later(lab, cache_images, normalize):
    db_path, arrays = lab
    selection = "SELECT scan_key, trial_id FROM trials ORDER BY trial_id"
    options = dict(normalize=normalize, image_dtype="float32" if normalize else None)
    untouched = next(iter(torch.utils.data.DataLoader(ScanDataset(db_path, selection, KEYS, **options), batch_size=6)))
    if not normalize:
        for key in KEYS:
            np.testing.assert_array_equal(getattr(untouched, key).numpy(), stack(arrays, key, range(6)), err_msg=key)
    dataset = ScanDataset(db_path, selection, KEYS, cache_images=cache_images, **options)
    loader = torch.utils.data.DataLoader(dataset, batch_size=6)
    for batch in loader:
        for key in KEYS:
            getattr(batch, key).zero_()
    again = next(iter(loader))
    for key in KEYS:
        assert torch.equal(getattr(again, key), getattr(untouched, key)), key
        assert getattr(again, key).abs().sum() > 0, key


def test_an_edited_list_of_items_collates_item_by_item(lab):
    """A collate_fn that drops or reorders items before the default collate gets exactly them."""
    db_path, arrays = lab
    dataset = ScanDataset(db_path, "SELECT scan_key, trial_id FROM trials ORDER BY trial_id", KEYS,
                          normalize=False, image_dtype=None)

    def every_other_reversed(items):
        del items[1::2]
        items.reverse()
        return torch.utils.data.default_collate(items)

    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=8, collate_fn=every_other_reversed)))
    for key in KEYS:
        np.testing.assert_array_equal(getattr(batch, key).numpy(), stack(arrays, key, [6, 4, 2, 0]), err_msg=key)
    items = dataset.__getitems__([5, 1])
    items.append(dataset[7])
    np.testing.assert_array_equal(torch.utils.data.default_collate(items).responses.numpy(),
                                  stack(arrays, "responses", [5, 1, 7]))
