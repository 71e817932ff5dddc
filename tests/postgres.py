"""A private PostgreSQL 15 server for the lake tests: initdb + pg_ctl into a temporary
folder, on 127.0.0.1 at a free port, fsync off; a fresh database per test.

Debian's server binaries are not on PATH (``/usr/lib/postgresql/15/bin``); as root, initdb
refuses to run, so the binaries run as the ``postgres`` user, in a folder it owns.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BIN = Path(os.environ.get("SCANDB_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One server, started once per test session; ``database()`` makes a fresh database."""

    def __init__(self):
        if not (BIN / "initdb").is_file():
            raise RuntimeError(f"{BIN / 'initdb'} missing: install Debian's postgresql-15 (see .ci/run)")
        self.folder = Path(tempfile.mkdtemp(prefix="scandb-pg-", dir="/tmp"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._names = itertools.count()
        self._run([str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                   "--no-sync", "-E", "UTF8"])
        for attempt in range(5):
            self.port = _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c fsync=off "
                       f"-c synchronous_commit=off -c full_page_writes=off -c unix_socket_directories='{self.folder}' "
                       f"-c max_connections=100")
            started = subprocess.run(_as_server_user([str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                                                      "-o", options, "-w", "-t", "60", "start"]),
                                     capture_output=True, text=True)
            if started.returncode == 0:
                return
        raise RuntimeError(f"PostgreSQL did not start: {self.log.read_text()[-2000:]}")

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(_as_server_user(argv), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr or done.stdout}")

    def conninfo(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def database(self) -> str:
        """A new, empty database's libpq conninfo."""
        name = f"lake{next(self._names)}"
        self._run([str(BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name])
        return self.conninfo(name)

    def stop(self) -> None:
        subprocess.run(_as_server_user([str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                                        "stop"]), capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)
