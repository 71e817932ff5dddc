"""Helpers for the hostile-input, fault and concurrency tests.

Each test builds its bad input from a generated scan, runs the real command line (in this
process through ``scandb.cli.main``, or in a subprocess where a crash, a lock or a mount
must be real), and checks the database is exactly as before.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import struct
import subprocess
import sys
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from unittest import mock

import pytest

from scandb import cli
from scandb.catalog.database import Database
from scandb.ingest import ingest
from scandb.synthetic import GeneratedScan, ScanSpec, generate, write_zip

from .conftest import digest_database

GOOD_SPEC = ScanSpec(n_trials=30, n_neurons=20)
"""The scan already in every test database."""
BAD_SPEC = ScanSpec(animal_id=30001, seed=11, n_trials=30, n_neurons=20)
"""The scan the tests damage: another animal, so it would be a new scan."""
BIG_SPEC = ScanSpec(animal_id=40004, seed=44, n_trials=3000, n_neurons=100)
"""A scan whose ingest takes long enough (about a second) to be interrupted."""


# -- running the command line ------------------------------------------------------------


@dataclass
class Run:
    code: int
    out: str
    err_lines: list[str]

    @property
    def returncode(self) -> int:
        """As ``subprocess.CompletedProcess`` names it (tests/test_cli.py runs real processes)."""
        return self.code

    @property
    def stdout(self) -> str:
        return self.out

    @property
    def stderr(self) -> str:
        return "".join(line + "\n" for line in self.err_lines)

    @property
    def error(self) -> str:
        """The single stderr line a failing single-path command must print."""
        assert len(self.err_lines) == 1, f"expected one line on stderr, got {self.err_lines!r}"
        return self.err_lines[0]


def run_cli(*args: str) -> Run:
    """``scandb ARGS`` in this process, through the same ``main()`` the installed command runs.

    Warnings count as stderr lines: a user would see them there. What a run would leave
    behind in this process is undone: the ``scandb`` logger's stderr handler and level,
    and ``ingest``'s ``os.nice`` (that would lower the priority of the whole test session
    for good; tests/test_cli.py checks ``--nice`` on a real process). ``SCANDB_DEBUG`` is
    unset, as ``run_scandb`` unsets it.
    """
    out, err = io.StringIO(), io.StringIO()
    code = 0
    argv = sys.argv
    sys.argv = ["scandb", *args]
    logger = logging.getLogger("scandb")
    handlers, level = list(logger.handlers), logger.level
    debug = os.environ.pop("SCANDB_DEBUG", None)
    try:
        with warnings.catch_warnings(record=True) as caught, mock.patch("os.nice", lambda increment: os.getpriority(
                os.PRIO_PROCESS, 0)), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.simplefilter("always")
            try:
                cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
        logger.handlers[:] = handlers
        logger.setLevel(level)
        if debug is not None:
            os.environ["SCANDB_DEBUG"] = debug
    lines = err.getvalue().splitlines() + [f"warning: {w.message}" for w in caught]
    return Run(code, out.getvalue(), lines)


INGEST_NICE = 10
"""``scandb ingest``'s default ``--nice``: it lowers its own CPU priority by this much."""


def ahead_of_ingest_nice() -> None:
    """``preexec_fn`` of the tests' child processes: start ``INGEST_NICE`` steps ahead of
    this process, so that an ingest's default ``--nice 10`` lands it at the test process's
    own priority.

    Under ``-n 2`` the other test process keeps the second core busy; a child at nice 10
    against it gets about a tenth of a core (weight 110 against 1024), so an ingest of 2 s
    took 20-26 s. The child still runs ``scandb`` exactly as a user does; only the
    priority it starts from differs. Raising a priority needs root (as on the project's
    machines and CI); elsewhere children start at this process's priority, as before.
    tests/test_cli.py checks ``--nice`` itself on a child started without this.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, 0, max(-20, os.getpriority(os.PRIO_PROCESS, 0) - INGEST_NICE))
    except PermissionError:
        pass


def scandb_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "scandb", *map(str, args)]


PRIMED = """
import sys
import scandb.cli, scandb.api, scandb.ingest, scandb.maintenance.verify
print("ready", flush=True)
sys.stdin.readline()
sys.argv = ["scandb", *sys.argv[1:]]
scandb.cli.main()
"""


class PrimedCommand:
    """``scandb ARGS`` in a subprocess that has imported everything and runs when told to.

    Starting Python and importing takes about a second; a test racing another process
    starts this first, then fires it at the moment that matters.
    """

    def __init__(self, *args, cwd: Path | None = None, env: dict[str, str] | None = None, script: str = PRIMED):
        """``cwd``: where it runs; ``env``: variables set (or, as None, unset) over this
        process's; ``script``: Python run with ``args`` as its ``sys.argv[1:]``, which prints
        ``ready`` and waits for a line before it starts (as ``PRIMED``, the command line)."""
        environment = dict(os.environ)
        for name, value in (env or {}).items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = value
        self.process = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdin=subprocess.PIPE,
                                        preexec_fn=ahead_of_ingest_nice, cwd=cwd, env=environment,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._ready = False

    def fire(self) -> None:
        if not self._ready:
            assert self.process.stdout.readline().strip() == "ready"
            self._ready = True
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = 120) -> Run:
        out, err = self.process.communicate(timeout=timeout)
        return Run(self.process.returncode, out, err.splitlines())

    def run(self, timeout: float = 120) -> Run:
        self.fire()
        return self.finish(timeout)


def run_scandb(*args: str, timeout: float = 120) -> Run:
    """``python -m scandb ARGS`` in a subprocess."""
    env = {k: v for k, v in os.environ.items() if k != "SCANDB_DEBUG"}
    done = subprocess.run(scandb_command(*args), capture_output=True, text=True, timeout=timeout, env=env,
                          preexec_fn=ahead_of_ingest_nice)
    return Run(done.returncode, done.stdout, done.stderr.splitlines())


def assert_refused(db: Path, scan: Path, member: str | None, problem: str, before: dict[str, str]) -> str:
    """Ingesting ``scan`` fails with exit 3 and one line naming scan, member and problem; db unchanged."""
    run = run_cli("ingest", str(scan), "--db", str(db))
    assert run.code == 3, run
    line = run.error
    assert str(scan) in line, line
    if member is not None:
        assert member in line, line
    assert problem in line, line
    assert digest_database(db) == before
    return line


# -- databases ---------------------------------------------------------------------------


def copy_database(source: Path, target_dir: Path) -> Path:
    """Copy a database file and its image store into ``target_dir``."""
    target = target_dir / source.name
    shutil.copy2(source, target)
    images = source.with_suffix(".images")
    if images.exists():
        shutil.copytree(images, target.with_suffix(".images"), symlinks=True)
    return target


_built: dict[str, object] = {}
"""Session fixtures imported into several modules are built once, not once per module."""


def _once(name: str, build):
    if name not in _built:
        _built[name] = build()
    return _built[name]


def _build_template(directory: Path) -> tuple[Path, dict[str, str]]:
    scan = write_zip(generate(GOOD_SPEC), directory / f"{GOOD_SPEC.name}.zip")
    path = directory / "lab.duckdb"
    with Database(path, read_only=False) as db:
        db.ensure_schema()
        ingest(db, scan)
    return path, digest_database(path)


@pytest.fixture(scope="session")
def template_db(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A database holding GOOD_SPEC's scan, and its digest; copy it, never write it."""
    return _once("template", lambda: _build_template(tmp_path_factory.mktemp("template")))


@pytest.fixture
def good_db(tmp_path, template_db) -> Path:
    """A fresh copy of the template database in this test's folder."""
    (tmp_path / "db").mkdir()
    return copy_database(template_db[0], tmp_path / "db")


@pytest.fixture
def before(template_db) -> dict[str, str]:
    """The digest every ``good_db`` has until something is written to it."""
    return template_db[1]


@pytest.fixture(scope="session")
def bad_base() -> GeneratedScan:
    """The scan tests damage; copy its dicts before changing them (``fresh``)."""
    return _once("bad_base", lambda: generate(BAD_SPEC))


def fresh(scan: GeneratedScan) -> GeneratedScan:
    return GeneratedScan(scan.spec, dict(scan.arrays), dict(scan.other))


@pytest.fixture(scope="session")
def big_scan(tmp_path_factory) -> Path:
    """BIG_SPEC's scan as a zip."""
    return _once("big", lambda: write_zip(generate(BIG_SPEC), tmp_path_factory.mktemp("big") / f"{BIG_SPEC.name}.zip"))


def scan_keys(db: Path) -> list[str]:
    """The scan keys a database file holds, sorted."""
    with Database(db) as opened:
        return [r[0] for r in opened.conn.execute("SELECT scan_key FROM scans ORDER BY 1").fetchall()]


def wait_for(condition, timeout: float, interval: float = 0.01) -> bool:
    """Whether ``condition()`` became true within ``timeout`` seconds; use as ``assert wait_for(...)``,
    so that a deadline passing fails the test instead of letting it go on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def image_files(db: Path) -> list[Path]:
    store = db.with_suffix(".images")
    return sorted(store.glob("??/*.npy")) if store.exists() else []


# -- hand-made zips ----------------------------------------------------------------------


@dataclass
class RawMember:
    """A zip member as stored: the bytes after its local header, and what the headers claim."""

    name: str
    stored: bytes
    crc: int
    size: int
    method: int = zipfile.ZIP_DEFLATED
    flags: int = 0
    external_attr: int = 0o644 << 16

    @classmethod
    def of(cls, name: str, data: bytes, method: int = zipfile.ZIP_DEFLATED, **changes) -> "RawMember":
        stored = _deflate(data) if method == zipfile.ZIP_DEFLATED else data
        return cls(name, stored, zlib.crc32(data), len(data), method, **changes)


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def write_raw_zip(path: Path, members: list[RawMember]) -> Path:
    """A zip written byte by byte, so headers can claim what ``zipfile`` would never write."""
    body, central = bytearray(), bytearray()
    for m in members:
        name = m.name.encode()
        offset = len(body)
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, m.flags, m.method, 0, 0x21,
                            m.crc, len(m.stored), m.size, len(name), 0) + name + m.stored
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", (3 << 8) | 20, 20, m.flags, m.method, 0, 0x21,
                               m.crc, len(m.stored), m.size, len(name), 0, 0, 0, 0,
                               m.external_attr, offset) + name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(body), 0)
    path.write_bytes(bytes(body + central + end))
    return path


def scan_members(scan: GeneratedScan, prefix: str | None = None) -> list[RawMember]:
    """The members ``write_zip`` would write for this scan."""
    prefix = f"{scan.spec.name}/" if prefix is None else prefix
    return [RawMember.of(prefix + rel, data) for rel, data in scan.files().items()]


BOMB_BYTES = 900 << 20
"""What a bomb inflates to: under the 1 GiB every non-trial member was once allowed."""


@lru_cache(maxsize=None)
def _zeros_stream(megabytes: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``megabytes`` MiB of zeros (about 1 KB per MiB), and its CRC."""
    mebibyte = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(mebibyte) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(mebibyte, crc)
    return block * megabytes + compressor.flush(), crc


def bomb(name: str, size: int = BOMB_BYTES, claimed_size: int | None = None) -> RawMember:
    """A member of zeros that inflates to ``size`` bytes; headers may claim another size."""
    stream, crc = _zeros_stream(size >> 20)
    return RawMember(name, stream, crc, size if claimed_size is None else claimed_size)


# -- the file system ---------------------------------------------------------------------


@contextlib.contextmanager
def immutable(*paths: Path):
    """Make paths immutable (``chattr +i``): refused even to root, unlike chmod."""
    done = []
    try:
        for path in paths:
            result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
            if result.returncode != 0:
                pytest.skip(f"chattr +i not possible here ({result.stderr.strip()}); "
                            "chmod cannot make a file read-only for root")
            done.append(path)
        yield
    finally:
        for path in reversed(done):
            subprocess.run(["chattr", "-i", str(path)], check=True)


@contextlib.contextmanager
def small_disk(mount_point: Path, size: int):
    """A tmpfs of ``size`` bytes at ``mount_point``: a disk that really fills up."""
    mount_point.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up ({result.stderr.strip()})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def grow_disk(mount_point: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mount_point)], check=True)
