"""A lake's snapshots: every commit to a DuckLake is one, readable later as it was.

scandb labels its own commits ("ingested 26872-17-20", "removed ...") with DuckLake's commit
message and the user who made them, so ``scandb snapshots`` reads as a history. Reading at a
snapshot attaches the lake with ``SNAPSHOT_VERSION`` (read-only by DuckLake's own rule). The
store's files a snapshot references stay on disk until the snapshot expires (``gc``): this
module says which files every unexpired snapshot references, and which snapshots an age
limit expires.
"""

from __future__ import annotations

import getpass
import socket
import time
from dataclasses import dataclass

import duckdb

from ..errors import DatabaseError, UsageError
from .lake import ALIAS, quote

FILE_HAS_NO_SNAPSHOTS = "a database file has no snapshots (only a DuckLake does: --db ducklake:...)"


@dataclass(frozen=True)
class Snapshot:
    id: int
    time: float
    """Seconds since the epoch (UTC)."""
    author: str | None
    change: str
    """What the commit did, in words."""

    @property
    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.time))


def author() -> str:
    """Who commits: the user and the machine, as a lab sharing one lake tells them apart."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def label_commit(conn: duckdb.DuckDBPyConnection, message: str) -> None:
    """Inside a write transaction on a lake: what its snapshot will say it did."""
    conn.execute(f"CALL {ALIAS}.set_commit_message({quote(author())}, {quote(message)})")


def snapshots(conn: duckdb.DuckDBPyConnection) -> list[Snapshot]:
    """Every unexpired snapshot of the attached lake, oldest first."""
    rows = conn.execute(f"SELECT snapshot_id, epoch(snapshot_time), author, commit_message, changes "
                        f"FROM ducklake_snapshots({quote(ALIAS)}) ORDER BY snapshot_id").fetchall()
    return [Snapshot(id, when, who, message or describe_changes(changes)) for id, when, who, message, changes in rows]


def describe_changes(changes: dict[str, list[str]] | None) -> str:
    """Words for a commit without a message (schema migrations, writes from the DuckDB shell)."""
    changes = changes or {}
    if changes.get("schemas_created") and len(changes) == 1:
        return "created the lake"
    parts = []
    for key, word in (("tables_created", "table"), ("views_created", "view"), ("scalar_macros_created", "macro")):
        if changes.get(key):
            parts.append(_count(len(changes[key]), word))
    if parts:
        return "created " + ", ".join(parts)
    changed = sorted({key.replace("_", " ") for key in changes})
    return "; ".join(changed) if changed else "no change"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def snapshot_ids(conn: duckdb.DuckDBPyConnection) -> list[int]:
    return [row[0] for row in conn.execute(f"SELECT snapshot_id FROM ducklake_snapshots({quote(ALIAS)}) "
                                           "ORDER BY 1").fetchall()]


def current(conn: duckdb.DuckDBPyConnection) -> int:
    """The snapshot this connection reads (the newest, unless attached at an older one)."""
    return conn.execute(f"SELECT id FROM {ALIAS}.current_snapshot()").fetchone()[0]


def id_ranges(ids: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` as ``0-2, 5, 7-8``: a long history named in one line."""
    parts, start = [], None
    for i, value in enumerate(ids):
        if start is None:
            start = value
        if i + 1 == len(ids) or ids[i + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ", ".join(parts) or "none"


def no_such_snapshot(name: str, wanted: int, ids: list[int]) -> UsageError:
    return UsageError(f"{name}: no snapshot {wanted} (it has {id_ranges(ids)}; 'scandb snapshots' lists them)")


def check_snapshot_id(snapshot) -> int:
    """A snapshot id as given by a user: a non-negative integer."""
    if isinstance(snapshot, bool) or not isinstance(snapshot, int) or snapshot < 0:
        raise UsageError(f"snapshot={snapshot!r}: a snapshot id is a non-negative integer ('scandb snapshots' "
                         "lists them)")
    return snapshot


# -- what expires, and what older snapshots still reference ----------------------------------

def expiring(history: list[Snapshot], cutoff: float) -> list[Snapshot]:
    """The snapshots nobody could have read since ``cutoff``: those replaced by a newer one
    before it. A snapshot made long ago but current until yesterday is kept, so a job that
    started within the age limit always finds the snapshot it read. The newest never expires."""
    return [snap for snap, after in zip(history, history[1:]) if after.time < cutoff]


def expire(conn: duckdb.DuckDBPyConnection, ids: list[int]) -> None:
    """Expire these snapshots and delete the lake's own (Parquet) files only they used."""
    if not ids:
        return
    listed = ", ".join(str(i) for i in ids)
    conn.execute(f"SELECT count(*) FROM ducklake_expire_snapshots({quote(ALIAS)}, versions => [{listed}])").fetchall()
    conn.execute(f"SELECT count(*) FROM ducklake_cleanup_old_files({quote(ALIAS)}, cleanup_all => true)").fetchall()


def referenced_since(conn: duckdb.DuckDBPyConnection, table: str, column: str, oldest: int) -> set[str]:
    """Every value of ``table.column`` in any snapshot from ``oldest`` to the newest: the rows
    at ``oldest`` and every row inserted since (DuckLake's change feed), deleted or not."""
    newest = current(conn)
    found: set[str] = set()
    try:
        found |= {row[0] for row in conn.execute(f"SELECT {column} FROM {table} AT (VERSION => {oldest})").fetchall()}
    except duckdb.CatalogException:  # the table was created after that snapshot
        pass
    changes = conn.execute(f"SELECT DISTINCT {column} FROM ducklake_table_changes({quote(ALIAS)}, 'main', "
                           f"{quote(table)}, {oldest}, {newest}) WHERE change_type IN ('insert', "
                           "'update_postimage')").fetchall()
    return found | {row[0] for row in changes}


def oldest_snapshot(conn: duckdb.DuckDBPyConnection) -> int:
    ids = snapshot_ids(conn)
    if not ids:
        raise DatabaseError("the lake has no snapshot")
    return ids[0]
