"""``scandb cache warm``: download a selection's store objects into the local cache before
a job reads them (a lake on a bucket; a local store needs no cache)."""

from __future__ import annotations

from ..store.frames import FrameStore


def selection_keys(db, query: str) -> list[str]:
    """The keys of every store file the trials ``query`` selects read: their images (and
    videos' time-major copies), their scans' response matrices, meta files and session
    arrays. ``query`` returns ``scan_key`` and, to pick trials, ``trial_id``."""
    conn = db.conn
    conn.execute(f"CREATE OR REPLACE TEMP VIEW scandb_warm AS {query}")
    try:
        columns = {row[0] for row in conn.execute("DESCRIBE scandb_warm").fetchall()}
        if "scan_key" not in columns:
            from ..errors import UsageError
            raise UsageError("cache warm: the query must return scan_key (and trial_id to pick trials)")
        trials = ("SELECT DISTINCT t.scan_key, t.trial_id FROM trials t JOIN scandb_warm w USING (scan_key"
                  + (", trial_id)" if "trial_id" in columns else ")"))
        images = conn.execute(f"""SELECT DISTINCT i.image_hash, i.path FROM ({trials}) s
                                  JOIN trials t USING (scan_key, trial_id) JOIN images i USING (image_hash)
                                  ORDER BY 1""").fetchall()
        scans = "SELECT DISTINCT scan_key FROM scandb_warm"
        others = conn.execute(f"""
            SELECT path FROM response_matrices WHERE scan_key IN ({scans})
            UNION SELECT stored_as FROM scan_files WHERE stored_as IS NOT NULL AND scan_key IN ({scans})
            UNION SELECT path FROM modalities WHERE path IS NOT NULL AND scan_key IN ({scans})
            ORDER BY 1""").fetchall()
    finally:
        conn.execute("DROP VIEW IF EXISTS scandb_warm")
    store = db.database.store
    copies = FrameStore(store)
    have_copies = set(store.list(copies.pattern))
    keys = [path for _, path in images] + [key for (key,) in others]
    keys += [copies.key(digest) for digest, _ in images if copies.key(digest) in have_copies]
    return list(dict.fromkeys(keys))


def warm(db, query: str) -> tuple[int, int]:
    """Fetch the selection's objects into the cache; returns (objects, bytes now cached for it)."""
    store = db.database.store
    keys = selection_keys(db, query)
    fetch = getattr(store, "fetch", None)
    if fetch is None:
        return 0, 0
    got = fetch(keys)
    failed = {key: exc for key, exc in got.items() if isinstance(exc, OSError)}
    if failed:
        from ..errors import DamageError
        key, exc = next(iter(failed.items()))
        raise DamageError(f"{store.url_of(key)}: cannot fetch ({exc.strerror or exc}); "
                          f"{len(failed)} of {len(keys)} objects missing; run 'scandb verify'")
    return len(got), sum(path.stat().st_size for path in got.values())

