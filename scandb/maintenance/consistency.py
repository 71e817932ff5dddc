"""Checks that rows agree with each other and with the files on disk: what foreign keys,
row counts and content-addressed names promise, whatever the recorded digests say."""

from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np

from ..catalog.database import Database
from ..catalog import registry
from ..source import npyfile
from ..store.folder import Folder
from ..store.frames import FrameStore
from ..store.images import image_hash, read_image_file
from ..store.packs import packed
from ..store.meta import intact
from ..store.base import Store, foreign
from .orphans import orphan_files
from .report import Kind, Problem, plural

ROWS_WITHOUT_SCAN = Kind("table", "holding rows of no scan")
ROW_COUNTS = Kind("row count", "disagreeing with the scans table")
RESPONSE_LENGTHS = Kind("scan", "with response lists of the wrong length")
IMAGE_ROWS_MISSING = Kind("scan", "naming images the images table lacks")
IMAGE_ROWS_UNUSED = Kind("image row", "no trial uses")
IMAGE_MISSING = Kind("image file", "missing")
IMAGE_DAMAGED = Kind("image file", "damaged or unreadable")
IMAGE_CHANGED = Kind("image file", "changed on disk")
ORPHANS = Kind("orphan file", "in the store")
FRAME_COPY_CHANGED = Kind("time-major video copy", "differing from its video")
PREDICTION_PROBLEMS = Kind("predictions file", "damaged or missing")
META_FILE_PROBLEMS = Kind("meta file", "missing or changed on disk")
STORE_PROBLEMS = Kind("store", "missing or not this database's")
MATRIX_PROBLEMS = Kind("response matrix", "unreadable or disagreeing with the responses table")
SESSION_ARRAY_PROBLEMS = Kind("session array", "missing, changed on disk or disagreeing with its modalities row")

COMPARED_PER_BATCH = 256
"""Response rows fetched at a time when comparing them with the matrix: bounds memory."""


def rows_without_a_scan(db: Database) -> list[Problem]:
    """What foreign keys would refuse: rows naming a scan the scans table lacks."""
    problems = []
    for table in registry.owned():
        rows = db.conn.execute(f"""
            SELECT scan_key, count(*) FROM {table}
            WHERE scan_key NOT IN (SELECT scan_key FROM scans) GROUP BY 1 ORDER BY 1""").fetchall()
        problems += [Problem(ROWS_WITHOUT_SCAN, f"{table}: {count} rows name scan {key}, "
                                                "which the scans table lacks") for key, count in rows]
    return problems


def row_count_problems(db: Database) -> list[Problem]:
    """Each scan has n_trials rows in trials and in responses/behavior (static) or
    frame_behavior (dynamic), and n_neurons in neurons."""
    expected = {"trials": ("n_trials", "trial_id", None), "responses": ("n_trials", "trial_id", "static"),
                "behavior": ("n_trials", "trial_id", "static"), "frame_behavior": ("n_trials", "trial_id", "dynamic"),
                "neurons": ("n_neurons", "neuron_idx", None)}
    problems = []
    for table, (count_column, id_column, kind) in expected.items():
        rows = db.conn.execute(f"""
            SELECT s.scan_key, s.{count_column}, count(c.scan_key),
                   count(*) FILTER (WHERE c.{id_column} < 0 OR c.{id_column} >= s.{count_column})
            FROM scans s LEFT JOIN {table} c USING (scan_key)
            WHERE ? IS NULL OR s.kind = ?
            GROUP BY ALL ORDER BY 1""", [kind, kind]).fetchall()
        for key, want, have, out_of_range in rows:
            if have != want:
                problems.append(Problem(ROW_COUNTS, f"scan {key}: {table} has {have} rows, "
                                                    f"scans.{count_column} says {want}"))
            elif out_of_range:
                problems.append(Problem(ROW_COUNTS, f"scan {key}: {table} has {out_of_range} rows with "
                                                    f"{id_column} outside 0..{want - 1}"))
    return problems


def response_length_problems(db: Database) -> list[Problem]:
    rows = db.conn.execute("""
        SELECT s.scan_key, s.n_neurons, count(*), min(len(r.response)), max(len(r.response))
        FROM scans s JOIN responses r USING (scan_key)
        WHERE len(r.response) <> s.n_neurons
        GROUP BY ALL ORDER BY 1""").fetchall()
    return [Problem(RESPONSE_LENGTHS, f"scan {key}: {bad} response rows hold {low}..{high} values, "
                                      f"not n_neurons = {n}") for key, n, bad, low, high in rows]


def image_row_problems(db: Database) -> list[Problem]:
    missing = db.conn.execute("""
        SELECT t.scan_key, count(*), any_value(t.image_hash) FROM trials t
        WHERE t.image_hash NOT IN (SELECT image_hash FROM images) GROUP BY 1 ORDER BY 1""").fetchall()
    unused = db.conn.execute(
        "SELECT image_hash FROM images WHERE image_hash NOT IN (SELECT image_hash FROM trials) ORDER BY 1"
    ).fetchall()
    return ([Problem(IMAGE_ROWS_MISSING, f"scan {key}: {count} trials name images the images table lacks "
                                         f"(e.g. {digest})") for key, count, digest in missing]
            + [Problem(IMAGE_ROWS_UNUSED, f"image {digest}: row no trial uses") for (digest,) in unused])


def store_problems(db: Database, stores: list[tuple[Store, set[str]]]) -> list[Problem]:
    """The store folder is there and is this database's: a database file moved without its
    store (or beside another database's) is damage, said once rather than once per file.
    ``stores``: each store with the keys rows reference (``orphans.stores_and_references``)."""
    n_files = db.conn.execute("""
        SELECT (SELECT count(*) FROM images) + (SELECT count(*) FROM response_matrices)
             + (SELECT count(*) FROM scan_files WHERE stored_as IS NOT NULL)
             + (SELECT count(*) FROM modalities WHERE path IS NOT NULL)""").fetchone()[0]
    if not n_files:
        return []
    store = db.store
    beside = f" beside {db.path.name}" if db.path is not None else ""
    if not store.root.is_dir():
        return [Problem(STORE_PROBLEMS, f"store {store.root}: missing ({n_files:,} files its rows name are "
                                        f"kept there; move the store folder back{beside})")]
    strange = [f"{kind.prefix}/" if kind.prefix else "images" for kind, keys in stores if foreign(kind, keys)]
    if strange:
        return [Problem(STORE_PROBLEMS, f"store {store.root}: holds none of the files its rows name in "
                                        f"{', '.join(strange)} (another database's store, or emptied)")]
    return []


def image_file_problems(db: Database) -> tuple[list[Problem], int]:
    """Every referenced image file exists and its content hashes to its name (the digest
    ingest recorded for it); returns the problems and the number of files checked."""
    problems = []
    store = db.store
    copies = FrameStore(store)
    rows = db.conn.execute("SELECT image_hash, path, shape, dtype, pack_offset, pack_length FROM images "
                           "ORDER BY path, pack_offset, image_hash").fetchall()
    packs = packed(row[1] for row in rows)
    if packs:
        store.prefetch(packs)  # each pack downloaded once, whole, rather than block by block
    for digest, path, shape, dtype, offset, length in rows:
        problem = _check_image_file(store, path, digest, tuple(shape), dtype, offset, length)
        if problem:
            kind, text = problem
            where = f"image file {shown(db, path)}" if offset is None else \
                f"image {digest} in pack {shown(db, path)} (at byte {offset})"
            problems.append(Problem(kind, f"{where}: {text}"))
        elif store.exists(copies.key(digest)):
            text = _check_frame_copy(store, copies.key(digest), path)
            if text:
                problems.append(Problem(FRAME_COPY_CHANGED, f"video copy {shown(db, copies.key(digest))}: {text}"))
    return problems, len(rows)


def _check_frame_copy(store: Folder, copy: str, video: str) -> str | None:
    """A time-major copy holds its (checked) video's values, bit for bit, time first."""
    try:
        frames = npyfile.load(store.read(copy))
    except (OSError, npyfile.NpyError) as exc:
        return f"unreadable ({exc}); delete it and reads fall back to the video"
    source = npyfile.load(store.read(video))
    expected = np.moveaxis(source, -1, 0)
    if (frames.shape != expected.shape or frames.dtype != expected.dtype
            or not np.array_equal(frames.view(np.uint8), np.ascontiguousarray(expected).view(np.uint8))):
        return (f"not the values of {PurePosixPath(video).name} time first (changed or damaged on disk); delete it and "
                "reads fall back to the video")
    return None


def _check_image_file(store: Folder, key: str, digest: str, shape: tuple[int, ...], dtype: str,
                      offset: int | None = None, length: int | None = None) -> tuple[Kind, str] | None:
    try:
        raw = read_image_file(store, key, offset, length)
    except FileNotFoundError:
        return IMAGE_MISSING, "missing"
    except OSError as exc:
        return IMAGE_DAMAGED, f"cannot read ({exc.strerror or exc})"
    try:
        header = npyfile.parse_header(raw)
        npyfile.load(raw)
    except npyfile.NpyError as exc:
        return IMAGE_DAMAGED, f"damaged ({exc})"
    if header.shape != shape or header.dtype.str != dtype:
        return IMAGE_CHANGED, f"holds {header.shape} {header.dtype.str}, the images row says {shape} {dtype}"
    if image_hash(header, raw) != digest:
        return IMAGE_CHANGED, "content does not match its hash (changed or damaged on disk)"
    return None


def meta_file_problems(db: Database) -> list[Problem]:
    """Each member kept as a file (``scan_files.stored_as``) exists and its bytes still hash
    to its name; a row holds its content or names a file."""
    problems = []
    rows = db.conn.execute("SELECT scan_key, path, stored_as FROM scan_files "
                           "WHERE stored_as IS NOT NULL OR content IS NULL ORDER BY ALL").fetchall()
    for scan, member, stored_as in rows:
        if stored_as is None:
            problems.append(Problem(META_FILE_PROBLEMS, f"scan {scan}: {member} has neither content nor a file"))
            continue
        if not db.store.exists(stored_as):
            problems.append(Problem(META_FILE_PROBLEMS, f"meta file {shown(db, stored_as)} ({member} of scan {scan}): "
                                                        "missing"))
        elif not intact(db.store, stored_as):
            problems.append(Problem(META_FILE_PROBLEMS, f"meta file {shown(db, stored_as)} ({member} of scan {scan}): content "
                                                        "does not match its hash (changed or damaged on disk)"))
    return problems


def session_array_problems(db: Database) -> list[Problem]:
    """Each experanto session's stored array (``modalities.path``) exists, its bytes still
    hash to its name, and it has the shape and dtype its row says."""
    from ..store.sessions import intact as session_intact

    problems = []
    rows = db.conn.execute("SELECT scan_key, name, kind, path, n_samples, n_signals, dtype FROM modalities "
                           "WHERE path IS NOT NULL ORDER BY ALL").fetchall()
    for scan, name, kind, key, n_samples, n_signals, dtype in rows:
        where = f"session array {shown(db, key)} ({name} of session {scan})"
        if not db.store.exists(key):
            problems.append(Problem(SESSION_ARRAY_PROBLEMS, f"{where}: missing"))
            continue
        if not session_intact(db.store, key):
            problems.append(Problem(SESSION_ARRAY_PROBLEMS, f"{where}: content does not match its hash "
                                                            "(changed or damaged on disk)"))
            continue
        try:
            with db.store.open(key) as f:
                header = npyfile.parse_header(f.read(npyfile.MAX_HEADER + 12))
        except (OSError, npyfile.NpyError) as exc:
            problems.append(Problem(SESSION_ARRAY_PROBLEMS, f"{where}: unreadable ({exc})"))
            continue
        shape = (n_samples, n_signals) if kind == "sequence" else (n_samples,)
        if header.shape != shape or header.dtype.str != dtype:
            problems.append(Problem(SESSION_ARRAY_PROBLEMS, f"{where}: holds {header.shape} {header.dtype.str}, "
                                                            f"the modalities row says {shape} {dtype}"))
    return problems


def prediction_file_problems(db: Database) -> list[Problem]:
    """Each model's video predictions file exists, its bytes still hash to its name, and its
    rows are the ones ``predictions`` names."""
    problems = []
    rows = db.conn.execute("""
        SELECT m.model, m.scan_key, m.path, m.n_rows, count(p.trial_id), count(DISTINCT p.row), max(p.row)
        FROM prediction_matrices m LEFT JOIN predictions p USING (model, scan_key)
        GROUP BY ALL ORDER BY ALL""").fetchall()
    for model, scan, key, n_rows, n_trials, n_distinct, last in rows:
        where = f"predictions file {shown(db, key)} (model {model}, scan {scan})"
        if not db.store.exists(key):
            problems.append(Problem(PREDICTION_PROBLEMS, f"{where}: missing"))
        elif not intact(db.store, key):
            problems.append(Problem(PREDICTION_PROBLEMS, f"{where}: content does not match its hash (changed or "
                                                         "damaged on disk)"))
        if not (n_trials == n_distinct == n_rows and (last is None or last == n_rows - 1)):
            problems.append(Problem(PREDICTION_PROBLEMS, f"{where}: {n_rows} rows, but predictions names "
                                                         f"{n_distinct} of them for {n_trials} trials"))
    return problems


def matrix_problems(db: Database) -> list[Problem]:
    """Each scan's response matrix exists, has its shape, and holds exactly the values of
    the scan's ``responses`` rows (bit for bit, NaN included)."""
    problems = []
    rows = db.conn.execute("SELECT s.scan_key, s.n_trials, s.n_neurons, m.path, s.kind, s.image_shape[-1] "
                           "FROM scans s LEFT JOIN response_matrices m USING (scan_key) ORDER BY 1").fetchall()
    for scan, n_trials, n_neurons, path, kind, frames in rows:
        if path is None:
            if kind == "dynamic":
                problems.append(Problem(MATRIX_PROBLEMS, f"scan {scan}: no response_matrices row (a dynamic "
                                                         "scan's responses are only there)"))
            continue  # a static scan ingested without a response matrix: read from SQL
        where = f"response matrix {shown(db, path)} of scan {scan}"
        try:
            matrix = np.load(db.store.path(path), mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            problems.append(Problem(MATRIX_PROBLEMS, f"{where}: missing"))
            continue
        except (OSError, ValueError) as exc:
            problems.append(Problem(MATRIX_PROBLEMS, f"{where}: unreadable ({exc})"))
            continue
        shape = (n_trials, frames, n_neurons) if kind == "dynamic" else (n_trials, n_neurons)
        if matrix.shape != shape or matrix.dtype != np.float32:
            problems.append(Problem(MATRIX_PROBLEMS, f"{where}: {matrix.shape} {matrix.dtype}, "
                                                     f"expected {shape} float32"))
            continue
        if kind == "dynamic":
            continue  # the matrix is the only copy of a dynamic scan's responses: its sha256 is the check
        differing = trials_differing(db, scan, matrix)
        if differing:
            problems.append(Problem(MATRIX_PROBLEMS, f"{where}: {plural(len(differing), 'trial')} "
                                                     f"{'differs' if len(differing) == 1 else 'differ'} from the "
                                                     f"responses table (first: trial {differing[0]})"))
    return problems


def trials_differing(db: Database, scan: str, matrix: np.ndarray) -> list[int]:
    """Trials whose response list is not bit for bit the matrix row, read in bounded
    batches (lists of the wrong length are the response-length check's)."""
    n_neurons = matrix.shape[1]
    differing = []
    reader = db.conn.execute("SELECT trial_id, response FROM responses WHERE scan_key = ? ORDER BY trial_id",
                             [scan]).to_arrow_reader(COMPARED_PER_BATCH)
    for batch in reader:
        trials = batch.column(0).to_numpy()
        lists = batch.column(1)
        values = lists.flatten().to_numpy(zero_copy_only=False)
        in_range = trials[(trials >= 0) & (trials < len(matrix))]
        if len(values) != len(trials) * n_neurons or len(in_range) != len(trials):
            continue
        stored = values.astype(np.float32, copy=False).reshape(len(trials), n_neurons).view(np.uint32)
        same = (stored == np.asarray(matrix[trials]).view(np.uint32)).all(axis=1)
        differing += trials[~same].tolist()
    return differing


def orphan_file_problems(db: Database, stores: list[tuple[Store, set[str]]]) -> list[Problem]:
    return [Problem(ORPHANS, f"image file {shown(db, key)}: orphan (no row references it; the next "
                             "'scandb ingest' removes it)") for key in orphan_files(db, stores)]


def shown(db: Database, key: str) -> str:
    """A store file as messages name it: under the store folder's name (``lab.images/ab/...``)."""
    return f"{PurePosixPath(str(db.image_dir)).name}/{key}"
