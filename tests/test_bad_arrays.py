"""Bad arrays inside a well-formed archive are refused in one line (exit 3) and change nothing."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from scandb.catalog.database import Database
from scandb.synthetic import GeneratedScan, generate, write_zip

from .conftest import digest_database
from .hostile import (BAD_SPEC, assert_refused, bad_base, before, fresh, good_db, run_cli,  # noqa: F401
                      template_db)

N_TRIALS, N_NEURONS = BAD_SPEC.n_trials, BAD_SPEC.n_neurons


class MarkerOnUnpickle:
    """Unpickling this creates a file: proof, if the file appears, that something unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def pickled_npy(marker: Path) -> bytes:
    """A `.npy` that needs pickle (object dtype), carrying a payload that creates ``marker``."""
    buffer = io.BytesIO()
    np.save(buffer, np.array([MarkerOnUnpickle(marker)] * 3, dtype=object), allow_pickle=True)
    return buffer.getvalue()


def with_header_shape(array: np.ndarray, shape: tuple[int, ...]) -> bytes:
    """The `.npy` bytes of ``array`` under a header claiming another shape."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    raw = buffer.getvalue()
    claimed, true = repr(shape).encode(), repr(array.shape).encode()
    assert len(claimed) <= len(true) and true in raw[:128]
    return raw.replace(true, claimed.ljust(len(true)), 1)


def drop(scan: GeneratedScan, prefix: str) -> None:
    for name in [n for n in scan.arrays if n.startswith(prefix)]:
        del scan.arrays[name]


def put_raw(scan: GeneratedScan, name: str, raw: bytes) -> None:
    scan.arrays.pop(name, None)
    scan.other[name] = raw


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def ingest_damaged(tmp_path: Path, bad_base: GeneratedScan, damage: Callable[[GeneratedScan], None]) -> Path:
    scan = fresh(bad_base)
    damage(scan)
    return write_zip(scan, tmp_path / f"{scan.spec.name}.zip")


def member(rel: str) -> str:
    return f"{BAD_SPEC.name}/{rel}"


# -- arrays that need pickle ------------------------------------------------------------


def test_the_pickle_payload_is_real(tmp_path):
    """What the next test feeds scandb does run code when numpy is allowed to unpickle it."""
    marker = tmp_path / "unpickled"
    np.load(io.BytesIO(pickled_npy(marker)), allow_pickle=True)
    assert marker.exists()


@pytest.mark.parametrize("rel", [
    "data/responses/0.npy",
    "data/images/12.npy",
    "meta/trials/tiers.npy",
    "meta/neurons/unit_ids.npy",
    "meta/statistics/behavior/all/std.npy",
    "extra/notes.npy",
])
def test_an_array_that_needs_pickle_is_refused_and_never_unpickled(tmp_path, bad_base, good_db, before, rel):
    marker = tmp_path / "unpickled"
    scan = ingest_damaged(tmp_path, bad_base, lambda s: put_raw(s, rel, pickled_npy(marker)))
    assert_refused(good_db, scan, member(rel), "needs pickle", before)
    assert not marker.exists()


# -- arrays that lie, are cut short or hold the wrong things ------------------------------

CASES = {
    "header claims fewer values than the file holds": (
        "data/responses/4.npy", "trailing bytes",
        lambda s: put_raw(s, "data/responses/4.npy", with_header_shape(np.ones(N_NEURONS + 8, np.float32),
                                                                       (N_NEURONS,)))),
    "header claims another shape than trial 0": (
        "data/responses/5.npy", "but trial 0 of responses is",
        lambda s: put_raw(s, "data/responses/5.npy", with_header_shape(np.ones(N_NEURONS, np.float32),
                                                                       (N_NEURONS // 2,)))),
    "truncated data": (
        "data/responses/9.npy", "truncated data",
        lambda s: put_raw(s, "data/responses/9.npy", npy_bytes(s.arrays["data/responses/9.npy"])[:-10])),
    "truncated header": (
        "data/images/3.npy", "truncated .npy header",
        lambda s: put_raw(s, "data/images/3.npy", npy_bytes(s.arrays["data/images/3.npy"])[:40])),
    "not a .npy file": (
        "data/behavior/2.npy", "not a .npy file",
        lambda s: put_raw(s, "data/behavior/2.npy", b"pupil 3.2 1.1 0.4\n")),
    "strings as responses": (
        "data/responses/0.npy", "responses must be numeric",
        lambda s: s.arrays.update({"data/responses/0.npy": np.array(["1.5"] * N_NEURONS)})),
    "strings in one behavior file": (
        "data/behavior/6.npy", "but trial 0 of behavior is",
        lambda s: s.arrays.update({"data/behavior/6.npy": np.array(["fast", "slow", "none"])})),
    "strings as unit ids": (
        "meta/neurons/unit_ids.npy", "unit ids must be integers",
        lambda s: s.arrays.update({"meta/neurons/unit_ids.npy": np.array([f"u{i}" for i in range(N_NEURONS)])})),
    "strings as image ids": (
        "meta/trials/frame_image_id.npy", "image ids must be integers",
        lambda s: s.arrays.update({"meta/trials/frame_image_id.npy": np.array(["cat"] * N_TRIALS)})),
    "NaN image ids": (
        "meta/trials/frame_image_id.npy", "image ids must be integers",
        lambda s: s.arrays.update({"meta/trials/frame_image_id.npy": np.full(N_TRIALS, np.nan)})),
    "image ids too large for an integer": (
        "meta/trials/frame_image_id.npy", "image ids must be integers",
        lambda s: s.arrays.update({"meta/trials/frame_image_id.npy": np.full(N_TRIALS, 1e30)})),
    "numbers as tiers": (
        "meta/trials/tiers.npy", "tiers must be strings",
        lambda s: s.arrays.update({"meta/trials/tiers.npy": np.zeros(N_TRIALS)})),
    "strings as statistics": (
        "meta/statistics/responses/all/std.npy", "statistics must be numeric",
        lambda s: s.arrays.update({"meta/statistics/responses/all/std.npy": np.array(["n/a"] * N_NEURONS)})),
    "responses of differing lengths": (
        "data/responses/11.npy", f"shape ({N_NEURONS - 1},) float32, but trial 0 of responses is",
        lambda s: s.arrays.update({"data/responses/11.npy": np.ones(N_NEURONS - 1, np.float32)})),
    "an image of another size": (
        "data/images/9.npy", "shape (1, 36, 63) uint8, but trial 0 of images is shape (1, 36, 64)",
        lambda s: s.arrays.update({"data/images/9.npy": np.zeros((1, 36, 63), np.uint8)})),
    "a trial meta array one short": (
        "meta/trials/frame_image_class.npy", f"length {N_TRIALS - 1}, but tiers.npy has {N_TRIALS} trials",
        lambda s: s.arrays.update({"meta/trials/frame_image_class.npy":
                                   s.arrays["meta/trials/frame_image_class.npy"][:-1]})),
    "a neuron meta array one long": (
        "meta/neurons/area.npy", f"length {N_NEURONS + 1}, but responses have {N_NEURONS} neurons",
        lambda s: s.arrays.update({"meta/neurons/area.npy": np.append(s.arrays["meta/neurons/area.npy"], "V1")})),
    "tiers for more trials than there are files": (
        "data/images/", f"{N_TRIALS} trial files, but meta/trials arrays have {N_TRIALS + 1} trials",
        lambda s: s.arrays.update({f"meta/trials/{k}.npy": np.append(v, v[:1]) for k, v in
                                   ((Path(n).stem, a) for n, a in list(s.arrays.items())
                                    if n.startswith("meta/trials/"))})),
    "a missing data key": (
        None, "missing data/pupil_center/", lambda s: drop(s, "data/pupil_center/")),
    "missing meta/neurons": (
        "meta/neurons/unit_ids.npy", "missing", lambda s: drop(s, "meta/neurons/")),
    "missing tiers": (
        "meta/trials/tiers.npy", "missing", lambda s: drop(s, "meta/trials/tiers.npy")),
    "a gap in the trial files": (
        "data/behavior/", "missing 17.npy", lambda s: drop(s, "data/behavior/17.npy")),
    "a stray file among the trial files": (
        "data/images/notes.txt", "stray file", lambda s: put_raw(s, "data/images/notes.txt", b"hi")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_array_is_refused(tmp_path, bad_base, good_db, before, case):
    rel, problem, damage = CASES[case]
    scan = ingest_damaged(tmp_path, bad_base, damage)
    assert_refused(good_db, scan, member(rel) if rel else None, problem, before)


# -- NaN and infinity: kept, and counted --------------------------------------------------


def test_nan_and_inf_responses_are_kept_and_counted(tmp_path, bad_base, good_db):
    def add_non_finite(scan: GeneratedScan) -> None:
        for trial, neuron, value in ((3, 0, np.nan), (4, 1, np.inf), (4, 2, -np.inf)):
            response = scan.arrays[f"data/responses/{trial}.npy"].copy()
            response[neuron] = value
            scan.arrays[f"data/responses/{trial}.npy"] = response

    scan = ingest_damaged(tmp_path, bad_base, add_non_finite)
    run = run_cli("ingest", str(scan), "--db", str(good_db))
    assert run.code == 0, run
    assert run.err_lines == []
    assert "3 NaN/Inf response values kept as they are" in run.out
    with Database(good_db) as db:
        rows = dict(db.conn.execute("SELECT trial_id, response FROM responses WHERE scan_key = ? "
                                    "AND trial_id IN (3, 4)", [BAD_SPEC.key]).fetchall())
    assert np.isnan(rows[3][0]) and rows[4][1] == np.inf and rows[4][2] == -np.inf


# -- several scans in one command ---------------------------------------------------------


def test_good_scans_go_in_when_others_fail(tmp_path, bad_base, good_db):
    """A scan failing before, and one failing half-way through its transaction, spoil nothing."""
    first = write_zip(generate(BAD_SPEC.with_(animal_id=30002)), tmp_path / "first.zip")
    last = write_zip(generate(BAD_SPEC.with_(animal_id=30003)), tmp_path / "last.zip")
    not_a_zip = tmp_path / "notes.zip"
    not_a_zip.write_text("not a zip")
    (tmp_path / "late").mkdir()
    late_failure = ingest_damaged(tmp_path / "late", bad_base, lambda s: put_raw(
        s, "data/responses/28.npy", npy_bytes(s.arrays["data/responses/28.npy"])[:-4]))

    run = run_cli("ingest", str(first), str(not_a_zip), str(late_failure), str(last), "--db", str(good_db))

    assert run.code == 3
    assert "30002-17-20: ingested" in run.out and "30003-17-20: ingested" in run.out
    summary = run.err_lines[-1]
    assert summary.startswith("4 scans: 2 ingested; 2 failed: ")
    assert f"{not_a_zip} (not a readable zip file" in summary
    assert f"{late_failure} (truncated data" in summary
    with Database(good_db) as db:
        keys = [r[0] for r in db.conn.execute("SELECT scan_key FROM scans ORDER BY 1").fetchall()]
    assert keys == ["26872-17-20", "30002-17-20", "30003-17-20"]
    assert run_cli("verify", "--db", str(good_db)).code == 0


def test_the_refused_scan_can_be_ingested_once_fixed(tmp_path, bad_base, good_db, before):
    scan = ingest_damaged(tmp_path, bad_base, lambda s: drop(s, "data/behavior/17.npy"))
    assert_refused(good_db, scan, None, "missing 17.npy", before)
    fixed = write_zip(bad_base, tmp_path / "fixed.zip")
    assert run_cli("ingest", str(fixed), "--db", str(good_db)).code == 0
    assert digest_database(good_db) != before
