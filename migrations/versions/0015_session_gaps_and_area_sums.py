"""experanto sessions' gaps, and their responses over time per area.

- nan_rows: per sequence of a session, the rows holding a NaN (``scandb/session/gaps.py``):
  what a training dataset's nan filter needs, read from SQL instead of scanning every value
  of every sequence each time a dataset is made;
- area_frame_responses gets, per stimulus trial and (area, layer) of a session, the
  responses' sum at each sample of the trial's window, as it holds per frame for video scans.

Ingest writes both from this revision on; here they are filled for the sessions already in
the database, from their stored arrays, and the sessions' digests of both are recorded (the
scans' digests of area_frame_responses are left as ingest recorded them). The downgrade drops
nan_rows and deletes the sessions' area_frame_responses rows and both digests.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from types import SimpleNamespace

import sqlalchemy as sa
from alembic import op

from scandb.catalog.transaction import insert_arrow
from scandb.maintenance.digests import store_folder, table_digests, table_method

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

SESSIONS = "SELECT scan_key FROM scans WHERE kind = 'experanto' ORDER BY 1"


def upgrade() -> None:
    from scandb.ingest.session import area_sum_table, nan_row_table
    from scandb.query.sessions import open_stored_session

    op.create_table(
        "nan_rows",
        sa.Column("scan_key", sa.String, primary_key=True, nullable=False),
        sa.Column("modality", sa.String, primary_key=True),
        sa.Column("rows", sa.ARRAY(sa.BigInteger), nullable=False),
    )
    conn = op.get_bind().connection.driver_connection
    stored = SimpleNamespace(conn=conn, store=store_folder(conn), name="the database")
    method = table_method(conn)
    for (scan_key,) in conn.execute(SESSIONS).fetchall():
        session = open_stored_session(stored, scan_key)
        try:
            insert_arrow(conn, "nan_rows", nan_row_table(session))
            if not conn.execute("SELECT count(*) FROM area_frame_responses WHERE scan_key = ?", [scan_key]).fetchone()[0]:
                areas = area_sum_table(session)
                if areas is not None:
                    insert_arrow(conn, "area_frame_responses", areas)
        finally:
            session.close()
    for (scan_key,) in conn.execute("SELECT scan_key FROM scans ORDER BY 1").fetchall():
        tables = ["nan_rows", "area_frame_responses"] if _is_session(conn, scan_key) else ["nan_rows"]
        for digest in table_digests(conn, scan_key, tables, method).values():
            _replace_digest(conn, scan_key, digest)


def downgrade() -> None:
    conn = op.get_bind().connection.driver_connection
    method = table_method(conn)
    conn.execute(f"DELETE FROM area_frame_responses WHERE scan_key IN ({SESSIONS.removesuffix(' ORDER BY 1')})")
    for (scan_key,) in conn.execute(SESSIONS).fetchall():
        for digest in table_digests(conn, scan_key, ["area_frame_responses"], method).values():
            _replace_digest(conn, scan_key, digest)
    conn.execute("DELETE FROM scan_digests WHERE part = 'nan_rows'")
    op.drop_table("nan_rows")


def _is_session(conn, scan_key: str) -> bool:
    return conn.execute("SELECT kind FROM scans WHERE scan_key = ?", [scan_key]).fetchone()[0] == "experanto"


def _replace_digest(conn, scan_key: str, digest) -> None:
    conn.execute("DELETE FROM scan_digests WHERE scan_key = ? AND part = ?", [scan_key, digest.part])
    conn.execute("INSERT INTO scan_digests (scan_key, part, method, digest, n_rows) VALUES (?, ?, ?, ?, ?)",
                 [scan_key, digest.part, digest.method, digest.digest, digest.n_rows])
