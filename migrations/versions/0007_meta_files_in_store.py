"""Large meta files as files in the store: a dynamic scan's time-resolved statistics.

- scan_files.stored_as: the member's file in the store (``<store>/meta/<sha256>.npy``,
  relative to the database's folder); its content is then NULL.
- statistics.data is NULL for such members: their values are in that file.

Rows already in the database keep their content inline (stored_as NULL), which readers
handle alike; their digests are recorded again, as every scan_files row gained a column.
The downgrade puts stored files back inline (their files become orphans, collected by the
next write).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

import io
from pathlib import PurePosixPath

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from alembic import op

from scandb.maintenance.digests import database_folder, record_all_digests
from scandb.store.folder import Folder

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE statistics ALTER COLUMN data DROP NOT NULL")
    op.execute("ALTER TABLE scan_files ALTER COLUMN content DROP NOT NULL")
    op.add_column("scan_files", sa.Column("stored_as", sa.String))
    record_all_digests(*_rows_and_files())


def downgrade() -> None:
    """Each stored member's bytes (and a statistic's values) back in its row. DuckDB refuses
    SET NOT NULL on a table updated in the same transaction, so both tables are rebuilt
    with their 0006 definitions and their rows copied over, filled in."""
    conn = op.get_bind().connection.driver_connection
    folder = database_folder(conn)
    stored = conn.execute("SELECT scan_key, path, stored_as FROM scan_files WHERE stored_as IS NOT NULL").fetchall()
    contents, statistics = [], []
    for scan_key, path, stored_as in stored:
        raw = (folder / stored_as).read_bytes()
        contents.append((scan_key, path, raw))
        parts = PurePosixPath(path).parts
        if parts[:2] == ("meta", "statistics") and len(parts) == 5:
            values = np.load(io.BytesIO(raw), allow_pickle=False).astype(np.float64).ravel()
            statistics.append((scan_key, parts[2], parts[3], parts[4][:-4], values))
    conn.register("_contents", pa.table({
        "scan_key": [c[0] for c in contents], "path": [c[1] for c in contents],
        "content": pa.array([c[2] for c in contents], pa.binary())}))
    conn.register("_values", pa.table({
        "scan_key": [s[0] for s in statistics], "variable": [s[1] for s in statistics],
        "source": [s[2] for s in statistics], "stat": [s[3] for s in statistics],
        "data": pa.array([s[4] for s in statistics], pa.list_(pa.float64()))}))
    op.create_table("scan_files_0006", *_scan_files_columns())
    op.execute("""INSERT INTO scan_files_0006 SELECT f.scan_key, f.path, f.dtype, f.shape, coalesce(f.content, c.content)
                  FROM scan_files f LEFT JOIN _contents c USING (scan_key, path)""")
    op.create_table("statistics_0006", *_statistics_columns())
    op.execute("""INSERT INTO statistics_0006 SELECT s.scan_key, s.variable, s.source, s.stat, s.dtype, s.shape,
                         coalesce(s.data, v.data)
                  FROM statistics s LEFT JOIN _values v USING (scan_key, variable, source, stat)""")
    conn.unregister("_contents")
    conn.unregister("_values")
    for table in ("scan_files", "statistics"):
        op.drop_table(table)
        op.rename_table(f"{table}_0006", table)
    record_all_digests(conn, Folder(folder))


def _scan_files_columns() -> list[sa.Column]:
    return [sa.Column("scan_key", sa.String, primary_key=True, nullable=False),
            sa.Column("path", sa.String, primary_key=True),
            sa.Column("dtype", sa.String),
            sa.Column("shape", sa.ARRAY(sa.Integer)),
            sa.Column("content", sa.LargeBinary, nullable=False)]


def _statistics_columns() -> list[sa.Column]:
    return [sa.Column("scan_key", sa.String, primary_key=True, nullable=False),
            sa.Column("variable", sa.String, primary_key=True),
            sa.Column("source", sa.String, primary_key=True),
            sa.Column("stat", sa.String, primary_key=True),
            sa.Column("dtype", sa.String, nullable=False),
            sa.Column("shape", sa.ARRAY(sa.Integer), nullable=False),
            sa.Column("data", sa.ARRAY(sa.Double), nullable=False)]


def _rows_and_files():
    """The connection, and the folder this revision's store paths are relative to."""
    conn = op.get_bind().connection.driver_connection
    return conn, Folder(database_folder(conn))
