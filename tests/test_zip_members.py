"""Every zip member a scan holds reads back bit-identical, whatever method compressed it."""

from __future__ import annotations

import zipfile

import pytest

from scandb.source.archive import open_archive
from scandb.synthetic import ScanSpec, generate, write_zip

METHODS = {"stored": zipfile.ZIP_STORED, "deflated": zipfile.ZIP_DEFLATED,
           "bzip2": zipfile.ZIP_BZIP2, "lzma": zipfile.ZIP_LZMA}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_member_reads_back_bit_identical(tmp_path, method):
    """Stored and deflated members go through ISA-L, bzip2 and LZMA through zipfile."""
    spec = ScanSpec(n_trials=12, n_neurons=7, compression=METHODS[method])
    scan = generate(spec)
    path = write_zip(scan, tmp_path / "scan.zip")
    expected = {f"{spec.name}/{rel}": data for rel, data in scan.files().items()}
    with zipfile.ZipFile(path) as zf:
        assert {info.compress_type for info in zf.infolist()} == {METHODS[method]}
    with open_archive(path) as archive:
        assert sorted(archive.names()) == sorted(expected)
        for name, data in expected.items():
            assert archive.read(name, len(data)) == data, name


def test_an_empty_member_reads_as_no_bytes(tmp_path):
    path = tmp_path / "empty.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("scan/notes.txt", b"")
    with open_archive(path) as archive:
        assert archive.read("scan/notes.txt", 0) == b""
