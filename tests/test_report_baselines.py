"""bench.loaders, the epoch-1/epoch-2 comparison with neuralpredictors' cached loader, runs
end to end on toy scans and reports a loader that fails as a result, not a hang."""

from __future__ import annotations

import numpy as np
import pytest

from bench import loaders
from bench.generate import scan_specs
from scandb.synthetic import generate

pytest.importorskip("torch")
pytest.importorskip("neuralpredictors")


def test_both_loaders_run_two_epochs_and_the_real_one_fails_with_workers(tmp_path):
    results = loaders.main(["--out", str(tmp_path), "--tiny", "--workers", "0", "2",
                            "--loaders", "scandb", "filetree", "--timeout", "6"])
    tiers = generate(scan_specs(1, tiny=True)[0]).arrays["meta/trials/tiers.npy"]
    by = {(r["loader"], r["workers"]): r for r in results}
    for key in (("scandb", 0), ("filetree", 0), ("scandb", 2)):
        assert "error" not in by[key], by[key]
        assert by[key]["items"] == int(np.sum(tiers == "train"))
        assert len(by[key]["epochs"]) == 2 and all(t > 0 for t in by[key]["epochs"])
    assert sorted(by[("scandb", 2)]["processes"]) == ["main", "worker 0", "worker 1"]
    assert all(p["pss"] > 0 and p["uss"] <= p["rss"] for p in by[("scandb", 2)]["processes"].values())
    assert "PicklingError" in by[("filetree", 2)]["error"]
    assert "killed" in by[("filetree", 2)]["error"]
