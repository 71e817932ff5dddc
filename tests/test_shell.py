"""The database opens in the real DuckDB shell (duckdb-cli) and the README's SQL runs there."""

from __future__ import annotations

import csv
import io
import re
import subprocess
from pathlib import Path

import pytest

from scandb.shell import find_duckdb_shell

README = Path(__file__).resolve().parents[1] / "README.md"
SHELL = find_duckdb_shell()
pytestmark = pytest.mark.skipif(SHELL is None, reason="duckdb-cli is not installed")


def shell(db: Path, sql: str) -> list[dict]:
    """Run SQL in the DuckDB shell from the database's folder; rows of the last statement."""
    result = subprocess.run([SHELL, "-readonly", "-csv", db.name], input=sql, capture_output=True, text=True,
                            cwd=db.parent, timeout=120)
    assert result.returncode == 0 and not result.stderr, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


def readme_sql_blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.S)


def test_the_shell_is_the_pinned_version():
    version = subprocess.run([SHELL, "--version"], capture_output=True, text=True).stdout
    assert version.startswith("v1.5.")


@pytest.mark.parametrize("block", range(len(readme_sql_blocks())))
def test_readme_sql_runs_in_the_shell(lab_db, block):
    sql = readme_sql_blocks()[block]
    result = subprocess.run([SHELL, "-readonly", "-csv", lab_db.name], input=sql, capture_output=True,
                            text=True, cwd=lab_db.parent, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not result.stderr, result.stderr
    assert result.stdout.strip()


def test_counts_in_the_shell_are_right(lab_db, sources):
    assert shell(lab_db, "SELECT count(*) AS n FROM scans;") == [{"n": "3"}]
    areas = shell(lab_db, "SELECT scan_key, area, count(*) AS n FROM neurons GROUP BY ALL;")
    tiers = shell(lab_db, "SELECT scan_key, tier, count(*) AS n FROM trials GROUP BY ALL;")
    for scan, arrays in sources.items():
        for column, rows, meta in (("area", areas, "meta/neurons/area.npy"), ("tier", tiers, "meta/trials/tiers.npy")):
            got = {r[column]: int(r["n"]) for r in rows if r["scan_key"] == scan}
            values = arrays[meta].tolist()
            assert got == {v: values.count(v) for v in set(values)}


def test_a_query_joining_across_scans_works_in_the_shell(lab_db, sources):
    rows = shell(lab_db, """
        SELECT image_id, count(DISTINCT scan_key) AS scans, count(*) AS trials
        FROM trials WHERE tier = 'test' GROUP BY image_id ORDER BY image_id;""")
    expected = {}
    for arrays in sources.values():
        ids = next(arrays[k] for k in ("meta/trials/frame_image_id.npy", "meta/trials/colorframeprojector_image_id.npy")
                   if k in arrays)
        test_ids = ids[arrays["meta/trials/tiers.npy"] == "test"]
        for image_id in set(test_ids.tolist()):
            scans, trials = expected.get(image_id, (0, 0))
            expected[image_id] = (scans + 1, trials + int((test_ids == image_id).sum()))
    assert {int(r["image_id"]): (int(r["scans"]), int(r["trials"])) for r in rows} == expected
    assert any(scans == 3 for scans, _ in expected.values())


def test_image_paths_resolve_from_the_store_folder(lab_db):
    rows = shell(lab_db, "SELECT DISTINCT image_path FROM trials_full;")
    assert rows and all((lab_db.with_name("lab.images") / r["image_path"]).is_file() for r in rows)


def test_scandb_shell_opens_the_database_read_only(lab_db):
    import sys
    result = subprocess.run([sys.executable, "-m", "scandb", "shell", "--db", str(lab_db)],
                            input="SELECT count(*) AS n FROM scans;\nDELETE FROM trials;\n",
                            capture_output=True, text=True, timeout=120)
    assert "3" in result.stdout
    assert "read-only" in result.stderr
