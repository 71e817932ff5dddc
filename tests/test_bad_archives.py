"""Damaged and hostile archives are refused in one line (exit 3) and change nothing."""

from __future__ import annotations

import os
import random
import stat
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest

from scandb.errors import BadScanError
from scandb.source.scan import DATA_KEYS, MAX_OTHER_FILE, open_scan
from scandb.synthetic import generate, write_folder, write_zip

from .hostile import (BAD_SPEC, BOMB_BYTES, RawMember, ahead_of_ingest_nice, assert_refused, bad_base, before, bomb,  # noqa: F401
                      fresh, good_db, scan_members, scandb_command, template_db, write_raw_zip)


@pytest.fixture
def good_zip(tmp_path, bad_base) -> Path:
    return write_zip(bad_base, tmp_path / f"{bad_base.spec.name}.zip")


def member_data_offset(zip_path: Path, member: str) -> tuple[int, int]:
    """Where a member's stored bytes start in the file, and how many there are."""
    with zipfile.ZipFile(zip_path) as zf:
        info = zf.getinfo(member)
    with open(zip_path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_length, extra_length = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
    return info.header_offset + 30 + name_length + extra_length, info.compress_size


def flip_byte(zip_path: Path, member: str) -> None:
    offset, length = member_data_offset(zip_path, member)
    data = bytearray(zip_path.read_bytes())
    data[offset + length // 2] ^= 0xFF
    zip_path.write_bytes(bytes(data))


# -- not a scan at all --------------------------------------------------------------------


def test_a_file_that_is_not_a_zip(tmp_path, good_db, before):
    scan = tmp_path / "scan.zip"
    scan.write_text("these are my notes, not a scan\n")
    assert_refused(good_db, scan, None, "not a readable zip file", before)


def test_a_path_that_does_not_exist(tmp_path, good_db, before):
    assert_refused(good_db, tmp_path / "missing.zip", None, "no such file or folder", before)


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_a_truncated_zip(tmp_path, good_zip, good_db, before, keep):
    data = good_zip.read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[:int(len(data) * keep)])
    assert_refused(good_db, truncated, None, "not a readable zip file", before)


def test_an_empty_zip(tmp_path, good_db, before):
    scan = tmp_path / "empty.zip"
    zipfile.ZipFile(scan, "w").close()
    assert_refused(good_db, scan, None, "empty archive", before)


def test_a_zip_of_an_unrelated_folder(tmp_path, good_db, before):
    scan = tmp_path / "project.zip"
    with zipfile.ZipFile(scan, "w") as zf:
        zf.writestr("project/README.md", "# my project\n")
        zf.writestr("project/src/main.py", "print('hello')\n")
        zf.writestr("project/results/table.npy", b"\x93NUMPY")
    assert_refused(good_db, scan, None, "not a scan: no data/ folder", before)


# -- damaged members ----------------------------------------------------------------------


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
@pytest.mark.parametrize("member", ["data/images/17.npy", "data/responses/0.npy", "meta/trials/tiers.npy"])
def test_a_member_with_a_crc_error(tmp_path, bad_base, good_db, before, compression, member):
    """A trial member fails inside the ingest transaction: rows and image files are undone."""
    damaged = fresh(bad_base)
    damaged.spec = bad_base.spec.with_(compression=compression)
    scan = write_zip(damaged, tmp_path / "scan.zip")
    full_name = f"{bad_base.spec.name}/{member}"
    flip_byte(scan, full_name)
    assert_refused(good_db, scan, full_name, "cannot read member", before)


def test_an_encrypted_member(tmp_path, bad_base, good_db, before):
    members = scan_members(bad_base)
    target = next(m for m in members if m.name.endswith("data/behavior/3.npy"))
    target.flags |= 0x1
    scan = write_raw_zip(tmp_path / "scan.zip", members)
    assert_refused(good_db, scan, target.name, "encrypted", before)


def test_duplicated_member_names(tmp_path, bad_base, good_db, before):
    scan = write_zip(bad_base, tmp_path / "scan.zip")
    name = f"{bad_base.spec.name}/data/responses/4.npy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(scan, "a") as zf:
            zf.writestr(name, b"a second, different file under the same name")
    assert_refused(good_db, scan, name, "appears twice", before)


# -- names that escape, links, special files ----------------------------------------------


@pytest.mark.parametrize("name, problem", [
    ("../escaped.npy", "escapes the scan"),
    ("{root}/data/../../escaped.npy", "escapes the scan"),
    ("/tmp/escaped.npy", "absolute path"),
    ("C:/escaped.npy", "absolute path"),
], ids=["dotdot", "nested-dotdot", "absolute", "drive"])
def test_member_names_that_escape_the_scan(tmp_path, bad_base, good_db, before, name, problem):
    name = name.format(root=bad_base.spec.name)
    members = scan_members(bad_base) + [RawMember.of(name, b"\x93NUMPY evil")]
    scan = write_raw_zip(tmp_path / "scan.zip", members)
    with zipfile.ZipFile(scan) as zf:
        assert name in zf.namelist()
    assert_refused(good_db, scan, name, problem, before)
    assert not list(tmp_path.parent.rglob("escaped.npy"))


def test_a_symlink_entry_in_a_zip(tmp_path, bad_base, good_db, before):
    members = scan_members(bad_base)
    link = RawMember.of(f"{bad_base.spec.name}/meta/neurons/link.npy", b"/etc/passwd",
                        method=zipfile.ZIP_STORED, external_attr=(stat.S_IFLNK | 0o777) << 16)
    scan = write_raw_zip(tmp_path / "scan.zip", members + [link])
    assert_refused(good_db, scan, link.name, "symbolic link", before)


def test_a_symlink_in_a_scan_folder(tmp_path, bad_base, good_db, before):
    scan = write_folder(bad_base, tmp_path / bad_base.spec.name)
    target = scan / "data" / "responses" / "3.npy"
    target.unlink()
    target.symlink_to("/etc/passwd")
    assert_refused(good_db, scan, "data/responses/3.npy", "symbolic link", before)


def test_a_pipe_in_a_scan_folder_is_not_read(tmp_path, bad_base, good_db, before):
    """Opening a FIFO would block forever; it is refused without being opened."""
    scan = write_folder(bad_base, tmp_path / bad_base.spec.name)
    target = scan / "meta" / "trials" / "album.npy"
    target.unlink()
    os.mkfifo(target)
    assert_refused(good_db, scan, "meta/trials/album.npy", "not a regular file", before)


# -- zip bombs ----------------------------------------------------------------------------


@pytest.mark.parametrize("member", [
    "data/images/5.npy",
    "data/responses/0.npy",
    "meta/trials/tiers.npy",
    "meta/neurons/area.npy",
    "meta/statistics/responses/all/mean.npy",
    "notes/readme.txt",
])
def test_a_member_that_inflates_far_past_its_shape(tmp_path, bad_base, good_db, before, member):
    """Refused from the declared size, before a byte is inflated (the bomb is 900 MiB)."""
    name = f"{bad_base.spec.name}/{member}"
    members = [m for m in scan_members(bad_base) if m.name != name] + [bomb(name)]
    scan = write_raw_zip(tmp_path / "bomb.zip", members)
    assert_refused(good_db, scan, name, f"member is {BOMB_BYTES} bytes uncompressed, more than", before)


def test_a_bomb_whose_headers_lie_about_its_size(tmp_path, bad_base, good_db, before):
    """Declared small, inflating to 900 MiB: reading stops at the declared size."""
    name = f"{bad_base.spec.name}/meta/trials/tiers.npy"
    members = [m for m in scan_members(bad_base) if m.name != name] + [bomb(name, claimed_size=1000)]
    scan = write_raw_zip(tmp_path / "liar.zip", members)
    assert_refused(good_db, scan, name, "cannot read member", before)


def test_many_members_that_add_up_to_a_bomb(tmp_path, bad_base, good_db, before):
    """Each extra file is under the per-file cap; together they are over the total."""
    size = MAX_OTHER_FILE - (1 << 20)
    extras = [bomb(f"{bad_base.spec.name}/extra/{i}.bin", size) for i in range(5)]
    scan = write_raw_zip(tmp_path / "many.zip", scan_members(bad_base) + extras)
    assert_refused(good_db, scan, None, "files outside data/ add up to", before)


PEAK_RSS = ("import os, subprocess, sys; child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
            "_, status, usage = os.wait4(child.pid, 0); print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)")


def test_a_bomb_never_takes_memory(tmp_path, bad_base, good_db):
    """The real command, in its own process: its peak memory stays far below the bomb."""
    name = f"{bad_base.spec.name}/meta/trials/tiers.npy"
    members = [m for m in scan_members(bad_base) if m.name != name] + [bomb(name)]
    scan = write_raw_zip(tmp_path / "bomb.zip", members)
    # Linux keeps a process's peak RSS across fork and exec: measure from a small parent,
    # not from this (large) test process.
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, *map(str, scandb_command("ingest", scan, "--db", good_db))],
                          capture_output=True, text=True, timeout=300, preexec_fn=ahead_of_ingest_nice)
    code, maxrss_kb = map(int, done.stdout.split())
    stderr = done.stderr
    assert code == 3, stderr
    assert len(stderr.splitlines()) == 1 and "refusing a possible zip bomb" in stderr
    peak_bytes = maxrss_kb * 1024
    assert peak_bytes < BOMB_BYTES // 2, f"peak memory {peak_bytes >> 20} MiB"


# -- any damage -------------------------------------------------------------------------


def test_random_damage_is_always_a_bad_scan_error(tmp_path):
    """Bytes flipped anywhere: the scan reads completely or fails as bad input, never otherwise."""
    small = generate(BAD_SPEC.with_(n_trials=4, n_neurons=5))
    good = write_zip(small, tmp_path / "good.zip").read_bytes()
    rng = random.Random(20261125)
    outcomes = {"read": 0, "refused": 0}
    for _ in range(300):
        data = bytearray(good)
        tail = rng.random() < 0.5
        for _ in range(rng.randint(1, 4)):
            low = max(len(data) - 3000, 0) if tail else 0
            data[rng.randrange(low, len(data))] = rng.randrange(256)
        damaged = tmp_path / "damaged.zip"
        damaged.write_bytes(bytes(data))
        try:
            with open_scan(damaged) as scan:
                for key in DATA_KEYS:
                    scan.read_trials(key, 0, scan.n_trials)
            outcomes["read"] += 1
        except BadScanError as exc:
            assert str(damaged) in str(exc) and "\n" not in str(exc)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100


# -- deflate streams that disagree with their headers ----------------------------------------


def test_a_deflate_stream_cut_short(tmp_path, bad_base, good_db, before):
    """Headers consistent with the stored bytes, but the stream stops before its end marker."""
    name = f"{bad_base.spec.name}/data/responses/2.npy"
    members = scan_members(bad_base)
    target = next(m for m in members if m.name == name)
    target.stored = target.stored[: len(target.stored) // 2]
    scan = write_raw_zip(tmp_path / "cut.zip", members)
    assert_refused(good_db, scan, name, "cannot read member", before)


def test_a_member_whose_compressed_size_no_deflate_could_produce(tmp_path, bad_base, good_db, before):
    """A small member followed by 8 MiB it claims as compressed data: refused before that is read."""
    name = f"{bad_base.spec.name}/meta/trials/tiers.npy"
    members = scan_members(bad_base)
    target = next(m for m in members if m.name == name)
    target.stored += bytes(8 << 20)
    scan = write_raw_zip(tmp_path / "padded.zip", members)
    line = assert_refused(good_db, scan, name, "cannot read member", before)
    assert "compressed size" in line
