"""Store keys relative to the store's folder, not the database's.

Rows named their files by a path that began with the store folder's name
(``lab.images/ab/<hash>.npy``), so a database moved or renamed with its store
(``lab.duckdb`` -> ``x.duckdb``, ``lab.images`` -> ``x.images``) named files that were not
there, and orphan collection deleted the real ones. From this revision a key is relative to
the store's folder (``ab/<hash>.npy``, ``responses/<sha256>.npy``, ``meta/<sha256>.npy``):

- images.path, response_matrices.path, scan_files.stored_as and released_files.key lose
  their first component (whatever the store folder was called when they were written);
- trials_full.image_path, which shows images.path, is relative to the store's folder too;
- the digests of images, scan_files and response_matrices are recorded again (their rows
  changed); every other part keeps what ingest recorded.

The downgrade puts the store folder's current name back in front.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from alembic import op

from scandb.maintenance.digests import record_table_digests, store_folder

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

KEY_COLUMNS = (("images", "path", ""), ("response_matrices", "path", ""), ("scan_files", "stored_as", ""),
               ("released_files", "key", " AND store <> 'images'"))
"""Each column holding a store path, and which of its rows do (released images are hashes)."""

REWRITTEN = ["images", "scan_files", "response_matrices"]
LEADING_FOLDER = r"^[^/]*\.images/"


def upgrade() -> None:
    for table, column, rows in KEY_COLUMNS:
        op.execute(f"UPDATE {table} SET {column} = regexp_replace({column}, '{LEADING_FOLDER}', '') "
                   f"WHERE regexp_matches({column}, '{LEADING_FOLDER}'){rows}")
    record_table_digests(op.get_bind().connection.driver_connection, REWRITTEN, recorded_only=True)


def downgrade() -> None:
    conn = op.get_bind().connection.driver_connection
    prefix = store_folder(conn).root.name.replace("'", "''") + "/"
    for table, column, rows in KEY_COLUMNS:
        op.execute(f"UPDATE {table} SET {column} = '{prefix}' || {column} WHERE {column} IS NOT NULL{rows}")
    record_table_digests(conn, REWRITTEN, recorded_only=True)
