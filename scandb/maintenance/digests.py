"""Per-scan content digests: recorded inside the ingest transaction, recomputed by verify.

A table's digest is the sum, as a HUGEINT, of DuckDB's ``hash()`` of each of the scan's
rows over every column, computed inside DuckDB: a sum does not depend on row order and,
unlike XOR, equal rows do not cancel. Hashing the response lists of a full-size scan
(6,000 trials x 8,000 neurons) is a large share of its ingest, so a scan with a response
matrix records the sha256 of that file and the ``responses`` rows without their values
(part ``responses except values``), a small share (BENCHMARKS.md, Numbers behind the code:
digests). verify then compares every response list with the matrix, bit for bit.
Image files need no digest here: each is named by the sha256 of its content, which
``images.image_hash`` records and verify rehashes.

``hash()`` is DuckDB's, not a standard one: each table digest records the hash of a fixed
probe row, so a DuckDB whose ``hash()`` differs is recognised instead of reported as damage.
It hashes every NaN alike and -0.0 as 0.0, so a table digest does not see a value changed
between those; the matrix comparison is bit for bit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from ..catalog import registry
from ..store.folder import Folder

MATRIX_PART = "response matrix"
RESPONSE_IDS_PART = "responses except values"
"""Recorded instead of ``responses`` for a scan with a response matrix: its values are
checked against the matrix, whose sha256 is recorded."""
FILE_METHOD = "sha256"
ROWS_METHOD = "sha256 of row sha256s"
"""A dynamic scan's matrix (7 GB for a full-size mouse): sha256 over its `.npy` header and
the sha256 of each trial's row in order. The reader processes hash each row as they write
it, so ingest ends without reading the file again on one core (BENCHMARKS.md, Numbers
behind the code: digests)."""
PROBE = ("SELECT hash(1::INTEGER, -2::BIGINT, 0.5::DOUBLE, 'nan'::FLOAT, 'text', NULL, [0.25, NULL]::FLOAT[], "
         "[1.5]::DOUBLE[], [3]::INTEGER[], '\\x01'::BLOB, TIMESTAMP '2020-01-02 03:04:05', '{\"a\": 1}'::JSON)")
"""One value of every column type the digested tables use."""


@dataclass(frozen=True)
class Digest:
    part: str
    method: str
    digest: str
    n_rows: int


def table_method(conn: duckdb.DuckDBPyConnection) -> str:
    return f"duckdb-hash-sum {conn.execute(PROBE).fetchone()[0]}"


def database_folder(conn: duckdb.DuckDBPyConnection) -> Path:
    """The folder store paths in rows were relative to before revision 0011 (the file's
    folder, or a lake's data path), which scandb sets on every connection it opens."""
    return Path(conn.execute("SELECT getvariable('scandb_root')").fetchone()[0])


def store_folder(conn: duckdb.DuckDBPyConnection) -> Folder:
    """The store keys in rows are relative to (revision 0011 on), set on every connection."""
    from ..store.base import as_folder

    return as_folder(conn.execute("SELECT getvariable('scandb_store')").fetchone()[0])


def scan_digests(conn: duckdb.DuckDBPyConnection, scan_key: str, folder: Folder,
                 method: str | None = None, *, response_values: bool | None = None,
                 matrix_rows: list[bytes] | None = None) -> dict[str, Digest]:
    """The scan's digests as its rows and files are now, by part.

    ``response_values``: hash the response lists too (part ``responses``) or not (part
    ``responses except values``); by default, only when the scan has no response matrix file.
    ``matrix_rows``: the sha256 of each row of a dynamic scan's matrix, as ingest wrote them.
    """
    method = method or table_method(conn)
    matrix = matrix_digest(conn, scan_key, folder, matrix_rows)
    if response_values is None:
        response_values = matrix is None
    digests = table_digests(conn, scan_key, [entry.name for entry in registry.digested()], method,
                            response_values=response_values)
    if matrix is not None:
        digests[MATRIX_PART] = matrix
    return digests


def table_digests(conn: duckdb.DuckDBPyConnection, scan_key: str, tables: list[str], method: str,
                  *, response_values: bool = True) -> dict[str, Digest]:
    """The digests of the scan's rows in these tables, by part: one statement for all of
    them (on a lake each statement costs a catalog round trip)."""
    selects, parts = [], []
    for table in tables:
        columns = table_columns(conn, table)
        if not columns:
            continue  # a table of a later revision than the database's (migrations record digests too)
        part = table
        if table == "responses" and not response_values:
            columns, part = [c for c in columns if c != "response"], RESPONSE_IDS_PART
        hashed = ", ".join(quote_identifier(c) for c in columns)
        where = registry.BY_NAME[table].rows.replace("?", "$scan_key")
        selects.append(f"SELECT {len(parts)} AS part, count(*) AS n_rows, "
                       f"coalesce(sum(hash({hashed})), 0)::VARCHAR AS digest FROM {table} WHERE {where}")
        parts.append(part)
    if not selects:
        return {}
    found = conn.execute(" UNION ALL ".join(selects), {"scan_key": scan_key}).fetchall()
    return {parts[i]: Digest(parts[i], method, digest, n_rows) for i, n_rows, digest in sorted(found)}


class RunningDigests:
    """A scan's table digests summed batch by batch as ingest inserts its rows (``add``),
    so its commit need not read back what it just wrote: on a lake on a bucket, reading the
    scan's Parquet files back is a few requests in series for each file (BENCHMARKS.md, Lab
    mode on a bucket). The same digest as ``table_digests`` computes from the tables: the
    sum of ``hash()`` of each row over the table's columns in order, each value cast to its
    column's type as the insert casts it (a column the batch lacks is NULL, as it is then
    in the table); a sum, so the batches' sums add up to the table's."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, *, response_values: bool):
        self.method = table_method(conn)
        self.response_values = response_values
        self._columns: dict[str, list[tuple[str, str, str | None]]] = {}
        self.sums: dict[str, list[int]] = {}
        """Part -> [rows, sum of their hashes]: every digested table of the database, from 0."""
        for entry in registry.digested():
            columns = self._table(conn, entry.name)
            if columns:
                self.sums[self._part(entry.name)] = [0, 0]

    def _part(self, table: str) -> str:
        return RESPONSE_IDS_PART if table == "responses" and not self.response_values else table

    def _table(self, conn, table: str) -> list[tuple[str, str, str | None]]:
        if table not in self._columns:
            self._columns[table] = [tuple(r) for r in conn.execute(
                "SELECT column_name, data_type, column_default FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = current_schema() AND table_name = ? "
                "ORDER BY column_index", [table]).fetchall()]
        return self._columns[table]

    def add(self, conn: duckdb.DuckDBPyConnection, table: str, relation: str, names) -> None:
        """Add the rows of ``relation`` (SQL: what the insert selects; its column ``names``)
        as they are inserted into ``table`` by name."""
        part = self._part(table)
        if part not in self.sums:
            return
        names = set(names)
        hashed = []
        for name, data_type, default in self._table(conn, table):
            if part == RESPONSE_IDS_PART and name == "response":
                continue
            if name in names:
                hashed.append(f"CAST({quote_identifier(name)} AS {data_type})")
            elif default is None:
                hashed.append(f"NULL::{data_type}")
            else:
                raise ValueError(f"{table}.{name}: a default ({default}) a digest of the batch cannot see")
        n_rows, total = conn.execute(f"SELECT count(*), coalesce(sum(hash({', '.join(hashed)})), 0)::VARCHAR "
                                     f"FROM ({relation})").fetchone()
        self.sums[part][0] += n_rows
        self.sums[part][1] += int(total)

    def add_rows_of(self, conn: duckdb.DuckDBPyConnection, table: str, condition: str, parameters: list) -> None:
        """Add rows the database holds already (images another scan added: the scan's part
        ``images`` counts every image its trials show)."""
        part = self._part(table)
        hashed = ", ".join(quote_identifier(name) for name, _, _ in self._table(conn, table))
        n_rows, total = conn.execute(f"SELECT count(*), coalesce(sum(hash({hashed})), 0)::VARCHAR FROM {table} "
                                     f"WHERE {condition}", parameters).fetchone()
        self.sums[part][0] += n_rows
        self.sums[part][1] += int(total)

    def digests(self) -> dict[str, Digest]:
        return {part: Digest(part, self.method, str(total), n_rows) for part, (n_rows, total) in self.sums.items()}


def record_table_digests(conn: duckdb.DuckDBPyConnection, tables: list[str], *, recorded_only: bool = False) -> None:
    """Record, for every scan, the digests of these tables only (a revision that added them,
    or rewrote their rows); the other parts keep what ingest recorded, so damage found before
    is still found after. ``recorded_only``: replace only digests recorded before (a digest
    missing before a rewrite stays missing, for verify to report)."""
    method = table_method(conn)
    for (scan_key,) in conn.execute("SELECT scan_key FROM scans ORDER BY 1").fetchall():
        for digest in table_digests(conn, scan_key, tables, method).values():
            where = "WHERE scan_key = ? AND part = ?"
            if recorded_only and not conn.execute(f"SELECT count(*) FROM scan_digests {where}",
                                                  [scan_key, digest.part]).fetchone()[0]:
                continue
            conn.execute(f"DELETE FROM scan_digests {where}", [scan_key, digest.part])
            conn.execute("INSERT INTO scan_digests (scan_key, part, method, digest, n_rows) VALUES (?, ?, ?, ?, ?)",
                         [scan_key, digest.part, digest.method, digest.digest, digest.n_rows])


def matrix_digest(conn: duckdb.DuckDBPyConnection, scan_key: str, folder: Folder,
                  row_digests: list[bytes] | None = None) -> Digest | None:
    """The digest of the scan's response matrix file: its sha256 (static scans) or the
    sha256 of its rows' sha256s (dynamic scans; ``row_digests``, when given, are those of
    the rows just written, in trial order); None when it has no matrix row or file."""
    row = conn.execute("SELECT m.path, m.n_trials, s.kind FROM response_matrices m JOIN scans s USING (scan_key) "
                       "WHERE scan_key = ?", [scan_key]).fetchone()
    if row is None:
        return None
    path, n_trials, kind = row
    try:
        with folder.open(path) as f:
            if kind == "dynamic":
                return Digest(MATRIX_PART, ROWS_METHOD, rows_digest(f, n_trials, row_digests), n_trials)
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        return None
    return Digest(MATRIX_PART, FILE_METHOD, digest, n_trials)


def rows_digest(f, n_trials: int, row_digests: list[bytes] | None = None) -> str:
    """sha256 over the `.npy` header, each of the ``n_trials`` rows' sha256 (read from ``f``
    unless given) and the sha256 of any bytes after the last row."""
    from ..source.npyfile import NpyError, header_length, parse_header
    prefix = f.read(12)
    try:
        header = prefix + f.read(header_length(prefix) - len(prefix))
        shape = parse_header(header).shape
    except NpyError:
        f.seek(0)
        return hashlib.file_digest(f, "sha256").hexdigest()  # not a matrix: it cannot match what ingest recorded
    row_bytes = 4 * int(np.prod(shape[1:], dtype=np.int64))
    total = hashlib.sha256(header)
    if row_digests is None:
        row_digests = [hashlib.sha256(f.read(row_bytes)).digest() for _ in range(n_trials)]
    else:
        f.seek(len(header) + n_trials * row_bytes)
    for digest in row_digests:
        total.update(digest)
    total.update(hashlib.file_digest(f, "sha256").digest())  # bytes past the last row (none)
    return total.hexdigest()


def record_scan_digests(conn: duckdb.DuckDBPyConnection, scan_key: str, folder: Folder,
                        matrix_rows: list[bytes] | None = None, tables: dict[str, Digest] | None = None) -> None:
    """Store the scan's digests, replacing any it had (inside the caller's transaction);
    ``tables``: its table digests, summed as its rows went in (``RunningDigests``), else
    computed from the tables."""
    if tables is None:
        digests = scan_digests(conn, scan_key, folder, matrix_rows=matrix_rows)
    else:
        matrix = matrix_digest(conn, scan_key, folder, matrix_rows)
        digests = dict(tables) | ({MATRIX_PART: matrix} if matrix is not None else {})
    conn.execute("DELETE FROM scan_digests WHERE scan_key = ?", [scan_key])
    conn.executemany("INSERT INTO scan_digests (scan_key, part, method, digest, n_rows) VALUES (?, ?, ?, ?, ?)",
                     [[scan_key, d.part, d.method, d.digest, d.n_rows] for d in digests.values()])


def record_all_digests(conn: duckdb.DuckDBPyConnection, folder: Folder) -> None:
    """Store the digests of every scan as it is now (migrations that add or change rows;
    ``folder``: where the rows' store paths of that revision are relative to)."""
    for (scan_key,) in conn.execute("SELECT scan_key FROM scans ORDER BY 1").fetchall():
        record_scan_digests(conn, scan_key, folder)


def record_digests(db, scan_key: str, matrix_rows: list[bytes] | None = None,
                   tables: dict[str, Digest] | None = None) -> None:
    """Store the digests of a scan just written; ingest calls this just before its commit
    (``tables``: see ``record_scan_digests``)."""
    record_scan_digests(db.conn, scan_key, db.store, matrix_rows, tables)


def recorded_digests(conn: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Digest]]:
    """Every stored digest, by scan then part."""
    out: dict[str, dict[str, Digest]] = {}
    for scan_key, part, method, digest, n_rows in conn.execute(
            "SELECT scan_key, part, method, digest, n_rows FROM scan_digests ORDER BY ALL").fetchall():
        out.setdefault(scan_key, {})[part] = Digest(part, method, digest, n_rows)
    return out


def table_columns(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The table's columns as the database has them, in their defined order."""
    return [r[0] for r in conn.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = current_schema() AND table_name = ? ORDER BY column_index", [table]).fetchall()]


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
