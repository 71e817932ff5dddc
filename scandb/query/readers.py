"""The readers of the scans a ``ScanDB`` fetched so far, kept across calls."""

from __future__ import annotations

from collections.abc import Callable

from ..catalog.database import Database
from ..errors import UsageError
from .dynamic_reader import DynamicReader
from .reader import IDENTITY, ScanReader
from .static_reader import StaticReader

READERS = {"static": StaticReader, "dynamic": DynamicReader}
"""The reader of each kind of scan (``scans.kind``)."""


def open_reader(database: Database, scan: str) -> ScanReader | None:
    """The reader of a scan, or None when the database holds no such scan."""
    found = database.conn.execute(
        "SELECT n_trials, n_neurons, image_shape, image_dtype, behavior_dtype, pupil_center_dtype, kind, "
        f"{IDENTITY} FROM scans WHERE scan_key = ?", [scan]).fetchone()
    if found is None:
        return None
    n_trials, n_neurons, shape, image_dtype, behavior_dtype, pupil_dtype, kind, identity = found
    if kind not in READERS:
        raise UsageError(f"{scan} is an {kind} session: its modalities are sampled at times with "
                         "db.sample(scan, times), not fetched by trial (its trials are rows in SQL); "
                         "train on its chunks with scandb.torchdata.SessionDataset")
    return READERS[kind](database, scan, n_trials, n_neurons, tuple(shape), image_dtype, behavior_dtype,
                         pupil_dtype, identity)


class Readers:
    """The readers of the scans fetched so far, by scan key."""

    def __init__(self, database: Database):
        self.database = database
        self._readers: dict[str, ScanReader] = {}
        self._sessions: dict[str, tuple[str, object]] = {}
        """Stored experanto sessions opened so far: scan key -> (identity, open Session)."""
        self._stamp: tuple | None = None
        """The database's stamp taken before any kept reader was read (see ``follow``)."""

    def get(self, scan: str) -> ScanReader:
        """The scan's reader; an unknown scan is a UsageError naming the scans there are."""
        reader = self._readers.get(scan)
        if reader is None:
            if not self._readers:  # what a later call compares with: taken before the reader reads
                self._stamp = self.database.stamp()
            reader = open_reader(self.database, scan)
            if reader is None:
                raise UsageError(f"no scan {scan!r} in the database (it holds: "
                                 f"{', '.join(self.known()) or 'nothing'})")
            self._readers[scan] = reader
        return reader

    def session(self, scan: str):
        """The stored session, opened once (its files mapped, its trials parsed) and kept across
        calls as readers are: ``db.sample`` in a loop opens it once, not per call."""
        kept = self._sessions.get(scan)
        if kept is None:
            from .sessions import open_stored_session

            if not self._readers and not self._sessions:
                self._stamp = self.database.stamp()
            session = open_stored_session(self.database, scan)  # refuses an unknown scan or a non-session
            identity = self.database.conn.execute(f"SELECT {IDENTITY} FROM scans WHERE scan_key = ?",
                                                  [scan]).fetchone()[0]
            kept = self._sessions[scan] = (identity, session)
        return kept[1]

    def known(self) -> list[str]:
        return [r[0] for r in self.database.conn.execute("SELECT scan_key FROM scans ORDER BY 1").fetchall()]

    def adopt(self, reader: ScanReader) -> None:
        """Keep a reader made elsewhere (a dataset's, detached from its database)."""
        self._readers[reader.scan] = reader

    def __iter__(self):
        return iter(self._readers.values())

    def clear(self) -> None:
        """Forget every reader: a write may have replaced a scan."""
        self._readers.clear()
        self._close_sessions(list(self._sessions))

    def _close_sessions(self, scans) -> None:
        for scan in scans:
            self._sessions.pop(scan)[1].close()

    def follow(self, stamp_now: Callable[[], tuple]) -> None:
        """When the database changed since the last call (another process wrote), forget the
        readers of scans that were removed or replaced; the others stay valid. Without kept
        readers there is nothing to check (a short command never asks for the stamp)."""
        if not self._readers and not self._sessions:
            return
        stamp = stamp_now()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        kept = list(self._readers) + list(self._sessions)
        now = dict(self.database.conn.execute(f"SELECT scan_key, {IDENTITY} FROM scans WHERE scan_key IN "
                                              f"({', '.join('?' * len(kept))})", kept).fetchall())
        self._readers = {scan: reader for scan, reader in self._readers.items() if now.get(scan) == reader.identity}
        self._close_sessions([scan for scan, (identity, _) in self._sessions.items() if now.get(scan) != identity])
