"""The README's test command fails when a test is skipped (an optional part is missing)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_pytest(tmp_path: Path, body: str, *plugin: str) -> int:
    (tmp_path / "test_sample.py").write_text(body)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin,
                           str(tmp_path / "test_sample.py")], cwd=ROOT, capture_output=True).returncode


SKIPPING = "import pytest\ndef test_runs(): pass\ndef test_optional(): pytest.importorskip('no_such_module_here')\n"


def test_a_skipped_test_fails_the_strict_run(tmp_path):
    assert run_pytest(tmp_path, SKIPPING, "-p", "tests.no_skips") == 1


def test_plain_pytest_still_allows_skips(tmp_path):
    assert run_pytest(tmp_path, SKIPPING) == 0


def test_the_strict_run_passes_without_skips(tmp_path):
    body = "import pytest\ndef test_runs(): pass\n@pytest.mark.xfail(strict=True)\ndef test_known(): assert False\n"
    assert run_pytest(tmp_path, body, "-p", "tests.no_skips") == 0
