"""Images packed into larger objects, for a store on a bucket.

- images gets ``pack_offset`` and ``pack_length``: where an image's ``.npy`` file is inside
  the object ``path`` names, when that object is a pack of several images
  (``scandb/store/packs.py``); NULL when the object is the image's file alone, as every
  image before this revision is.
- trials_full shows them as ``image_pack_offset`` and ``image_pack_length``: a packed image's
  ``image_path`` is its pack's key, and its ``.npy`` file is that object's bytes
  ``[image_pack_offset, image_pack_offset + image_pack_length)``.

Every row keeps its values (the new columns are NULL), but a row's hash covers every column,
so each scan's digest of ``images`` is recorded again: only where the rows still matched the
recorded digest before the columns were added, so rows damaged before stay reported by
verify. The downgrade drops the columns (refused while any image is packed) and records the
digests again the same way.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from scandb.catalog.views import create_trials_full
from scandb.maintenance.digests import recorded_digests, table_digests, table_method

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind().connection.driver_connection
    intact = _intact_image_digests(conn)
    op.add_column("images", sa.Column("pack_offset", sa.BigInteger))
    op.add_column("images", sa.Column("pack_length", sa.BigInteger))
    op.execute(create_trials_full("0016"))
    _record_image_digests(conn, intact)


def downgrade() -> None:
    conn = op.get_bind().connection.driver_connection
    if conn.execute("SELECT count(*) FROM images WHERE pack_offset IS NOT NULL").fetchone()[0]:
        raise RuntimeError("images are kept in packs: a database before revision 0016 cannot read them")
    intact = _intact_image_digests(conn)
    op.execute(create_trials_full("0014"))
    op.drop_column("images", "pack_length")
    op.drop_column("images", "pack_offset")
    _record_image_digests(conn, intact)


def _intact_image_digests(conn) -> list[str]:
    """The scans whose ``images`` rows still hash to the digest recorded for them."""
    method, recorded = table_method(conn), recorded_digests(conn)
    intact = []
    for scan_key, parts in recorded.items():
        if "images" in parts and table_digests(conn, scan_key, ["images"], method)["images"] == parts["images"]:
            intact.append(scan_key)
    return intact


def _record_image_digests(conn, scans: list[str]) -> None:
    method = table_method(conn)
    for scan_key in scans:
        digest = table_digests(conn, scan_key, ["images"], method)["images"]
        conn.execute("UPDATE scan_digests SET digest = ?, n_rows = ? WHERE scan_key = ? AND part = 'images'",
                     [digest.digest, digest.n_rows, scan_key])
