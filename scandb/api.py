"""The Python layer: connect, select trials with SQL, fetch aligned numpy arrays.

``ScanDB`` is the one public object; the work happens in ``scandb.query`` (selections,
per-scan readers, fetch) and, for writes, in ``ingest`` and ``maintenance``. A selection is
anything naming trials by ``scan_key`` and ``trial_id`` (see ``scandb.query.selection``).
Arrays come back row by row in the selection's order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .catalog import DEFAULT_WAIT, default_db
from .catalog import snapshots as lake_snapshots
from .catalog.database import OFFLINE, Database, discard_new_database
from .catalog.lake import MissingSnapshot
from .catalog.transaction import explain
from .errors import BadScanError, DatabaseError, UsageError
from .keys import ARROW_BATCH
from .query import fetch as fetching
from .query import selection as selecting
from .query import statements as script
from .query.filters import check_known, filters, where as where_sql
from .query.frames import is_dataframe
from .query.neurons import Neurons
from .query.reader import read_statistic
from .query.readers import Readers
from .query.selection import Selection
from .source.npyfile import load as load_npy
from .store.meta import stored_content

if TYPE_CHECKING:
    import pandas

    from .export import ExportResult
    from .ingest import IngestResult
    from .ingest.writer import Progress
    from .catalog.snapshots import Snapshot
    from .maintenance.gc import GcResult
    from .maintenance.remove import RemoveResult
    from .maintenance.report import VerifyReport
    from .query.summary import ScanSummary
    from .report import ReportResult
    from .scoring.writer import PredictionResult


def connect(path: str | Path | None = None, read_only: bool = True, wait: float = DEFAULT_WAIT,
            data_path: str | Path | None = None, snapshot: int | None = None) -> "ScanDB":
    """Open a scandb database; read-only by default so many processes can read one file.

    The file is open only while a call runs SQL (a fetch of a scan already read runs none),
    so a connection left idle (a notebook) never blocks an ingest in another process. ``read_only=False`` is for ``ingest``, ``remove``
    and ``migrate`` (creating the file when there is none). ``wait`` is how many seconds
    each call waits for another process holding the file (saying so on the ``scandb``
    logger) before it fails: 60 by default, so neither a reader nor a writer fails because
    another process got the file between its calls or steps; 0 fails at once. Without
    ``path``: ``$SCANDB_DB``, else ``scandb.duckdb``.

    One DuckDB session serves every call: a ``SET VARIABLE``, temporary table or setting
    of one ``sql()`` call is there in the next, as in one DuckDB shell, while the file
    itself is closed between calls.

    ``path`` may also be a DuckLake, ``ducklake:sqlite:<file>`` or ``ducklake:postgres:<conninfo>``,
    where readers and writers never block each other. ``data_path`` is the folder for its
    files, stored when the lake is created; given later, it overrides the stored one for this
    connection (a machine that mounts the shared folder elsewhere).

    ``snapshot`` (a lake's snapshot id, see ``snapshots()``) reads the lake as it was after
    that commit, read-only; ``db.snapshot`` is the id a connection reads.
    """
    target = default_db() if path is None else path
    if snapshot is not None:
        snapshot = lake_snapshots.check_snapshot_id(snapshot)
        if not read_only:
            raise UsageError(f"{target}: a snapshot is the database as it was, read-only; connect without "
                             "snapshot= to write")
    try:
        db = Database(target, read_only=read_only, wait=wait, held=False, data_path=data_path, snapshot=snapshot)
    except MissingSnapshot:
        with Database(target, data_path=data_path) as now:
            raise lake_snapshots.no_such_snapshot(now.name, snapshot, lake_snapshots.snapshot_ids(now.conn)) from None
    try:
        if read_only:
            db.check_revision()
    except BaseException:
        db.close()
        raise
    if not db.held:  # a file; a lake stays attached (attaching again would cost as much again)
        db.release()
    return ScanDB(db)


def holding(method, creates: bool = False):
    """Run a ``ScanDB`` method with the file open, closing it when the call returns; cached
    per-scan readers are dropped when the file changed since they were read. Only a method
    that ``creates`` the database may run where there is none (nothing else makes a file);
    a DuckDB error escaping the method is one line (``catalog.transaction.explain``)."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if not creates and self.database.leases == 0:  # the outermost call looks once
            self._require_database()
        try:
            with self.database.lease():
                if self.database.leases == 1:  # the outermost call: one look per call is enough
                    self._readers.follow(self.database.stamp)
                return method(self, *args, **kwargs)
        except duckdb.Error as exc:
            raise explain(exc, f"{self.database.name}: {method.__name__}") from None
    return call


def creating(method):
    """``holding`` for a method that makes the database when there is none (migrate)."""
    return holding(method, creates=True)


class ScanDB:
    """A scandb database opened for queries (a context manager).

    A call that runs SQL opens the file and closes it when it returns (``conn`` opens it
    until the next call returns). Each scan's reader is kept between calls; a call first
    checks whether another process wrote since the last one, and drops the readers of
    scans that were replaced or removed. Use one ScanDB per thread or process.
    """

    def __init__(self, db: Database):
        self.database = db
        self._readers = Readers(db)
        self._results: duckdb.DuckDBPyConnection | None = None

    @property
    def conn(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection itself; it holds the file until the next call of this ScanDB
        returns, or ``release()``."""
        return self.database.conn

    @property
    def readers(self) -> Readers:
        """The per-scan readers kept across calls (what ``ScanDataset`` reads ahead from)."""
        return self._readers

    def release(self) -> None:
        """Close the file now (after using ``conn``); the next call opens it again."""
        self.database.release()

    # -- SQL ------------------------------------------------------------------------------

    @holding
    def sql(self, query: str, params: Sequence | Mapping | None = None) -> duckdb.DuckDBPyRelation | None:
        """A DuckDB relation: ``.df()``, ``.arrow()``, ``.fetchall()``; also a selection itself.

        The result is read when the call runs and kept in memory, so it stays usable after
        the file is closed (and whatever other processes write meanwhile).
        """
        try:
            relation = self.conn.sql(query) if params is None else self.conn.sql(query, params=params)
            if relation is None:
                return None
            result = relation.to_arrow_table(ARROW_BATCH)
        except duckdb.Error as exc:
            raise explain(exc, "query", users_sql=True) from None
        if self._results is None:
            self._results = duckdb.connect(config=OFFLINE)
        return self._results.from_arrow(result)

    @holding
    def run(self, query: str, params: Sequence | Mapping | None = None) -> tuple[list[str], list[tuple]]:
        """Column names and rows of one query; a failing query is a one-line UsageError."""
        try:
            relation = self.conn.execute(query, params or ())
            return [d[0] for d in relation.description or ()], relation.fetchall()
        except duckdb.Error as exc:
            raise explain(exc, "query", users_sql=True) from None

    def run_each(self, query: str) -> Iterator[tuple[list[str], list[tuple]] | None]:
        """Each statement of ``query`` (several separated by ';'), run in order as the DuckDB
        shell runs them: its columns and rows as soon as it ran, or None for a statement the
        shell prints nothing for (SET and the like). An error stops the rest."""
        statements = script.split(query)
        self._require_database()
        with self.database.lease():
            for statement in statements:
                columns, rows = self.run(statement.query)
                yield (columns, rows) if script.prints(statement) else None

    @holding
    def _df(self, query: str, params: Sequence = (), doing: str = "query") -> pandas.DataFrame:
        try:
            return self.conn.execute(query, params).df()
        except duckdb.Error as exc:
            raise explain(exc, doing, users_sql=True) from None

    # -- tables ---------------------------------------------------------------------------

    @holding
    def scans(self) -> pandas.DataFrame:
        return self._df("SELECT * FROM scans ORDER BY scan_key")

    @holding
    def trials(self, scan: str | Iterable[str] | None = None, tier: str | Iterable[str] | None = None,
               image_id: int | Iterable[int] | None = None, where: str | None = None,
               params: Sequence | None = None) -> pandas.DataFrame:
        """Trials with behavior and image path, filtered; ``where`` is extra SQL with ``?`` params.

        A scan, tier or image id that exists nowhere in the database is a ``UsageError``.
        """
        clauses, values = filters(self.conn, "trials", scan=("scan_key", scan), tier=("tier", tier),
                                  image_id=("image_id", image_id))
        if where:
            clauses.append(f"({where})")
            values.extend(params or ())
        return self._df(f"SELECT * FROM trials_full {where_sql(clauses)} ORDER BY scan_key, trial_id", values,
                        doing="trials(where=...)" if where else "trials()")

    @holding
    def neurons(self, scan: str | Iterable[str] | None = None, area: str | Iterable[str] | None = None,
                layer: str | Iterable[str] | None = None, unit_id: int | Iterable[int] | None = None,
                *, min_oracle_correlation: float | None = None, quality: bool = False) -> pandas.DataFrame:
        """Neurons filtered; a scan, area, layer or unit id found nowhere is a ``UsageError``.

        ``quality=True`` adds each neuron's ``neuron_quality`` columns (``tier``,
        ``n_repeats``, ``oracle_correlation``, ``oracle_correlation_conservative``,
        ``explainable_variance``, ``snr``: NULL for a scan without a repeat tier).
        ``min_oracle_correlation=r`` (implies ``quality``) keeps neurons whose leave-one-out
        oracle correlation is at least ``r``; neurons without one (withheld repeats) are left out.
        """
        clauses, values = filters(self.conn, "neurons", scan=("scan_key", scan), area=("area", area),
                                  layer=("layer", layer), unit_id=("unit_id", unit_id))
        source = "neurons"
        if quality or min_oracle_correlation is not None:
            source = "neurons LEFT JOIN neuron_quality USING (scan_key, neuron_idx)"
        if min_oracle_correlation is not None:
            clauses.append("oracle_correlation >= ?")
            values.append(float(min_oracle_correlation))
        return self._df(f"SELECT * FROM {source} {where_sql(clauses)} ORDER BY scan_key, neuron_idx", values)

    @holding
    def repeats(self, scan: str, tier: str = "test") -> dict[int, np.ndarray]:
        """Trial ids of each image shown in a tier, by image id (test images repeat ~10 times).

        Pass a group back with ``scan=``: ``db.responses(ids, scan=scan)``.
        """
        self._readers.get(scan)
        check_known(self.conn, "trials", "tier", [tier], "tier")
        rows = self.conn.execute(
            "SELECT image_id, list(trial_id ORDER BY trial_id) FROM trials WHERE scan_key = ? AND tier = ? "
            "GROUP BY image_id ORDER BY image_id", [scan, tier]).fetchall()
        return {image_id: np.array(ids, dtype=np.int64) for image_id, ids in rows}

    @holding
    def statistic(self, scan: str, variable: str, stat: str, source: str = "all") -> np.ndarray:
        """One meta/statistics array, with its stored dtype and shape."""
        self._readers.get(scan)
        found = read_statistic(self.conn, scan, variable, stat, source, store=self.database.store)
        if found is None:
            raise UsageError(f"no statistic {variable}/{source}/{stat} for scan {scan!r}")
        return found

    @holding
    def file(self, scan: str, path: str) -> np.ndarray | bytes:
        """A file the scan shipped outside data/ (meta arrays, config.json), as it was."""
        row = self.conn.execute("SELECT content, stored_as FROM scan_files WHERE scan_key = ? AND path = ?",
                                [scan, path]).fetchone()
        if row is None:
            self._readers.get(scan)
            raise UsageError(f"scan {scan!r} has no file {path!r}")
        content = row[0] if row[1] is None else stored_content(self.database.store, row[1])
        return load_npy(content).copy() if path.endswith(".npy") else content

    # -- arrays ---------------------------------------------------------------------------

    @holding
    def select(self, selection: Selection, params: Sequence | None = None, scan: str | None = None) -> pa.Table:
        """The selection as an Arrow table of ``scan_key`` and ``trial_id``, checked.

        Takes every kind of selection ``fetch`` takes; unknown scans and trial ids outside a
        scan are a ``UsageError``. ``scan=`` names the scan of bare trial ids.
        """
        if scan is not None:
            self._readers.get(scan)
        selected = selecting.resolve(self.database, selection, params, scan)
        selecting.check(selected, self._readers)
        return selected

    @holding
    def fetch(self, selection: Selection, *keys: str, normalize: bool = False, neurons: Neurons | None = None,
              per_scan: bool = False, image_dtype: str | np.dtype | None = None, params: Sequence | None = None,
              scan: str | None = None, frames: tuple[int, int] | None = None
              ) -> dict[str, np.ndarray] | dict[str, dict[str, np.ndarray]]:
        """Arrays for the selected trials, aligned row by row with the selection.

        ``keys`` are data keys (images, responses, behavior, pupil_center; all four when
        none are given) or trial columns of ``trials_full`` by name. ``neurons`` picks
        neurons, in order: for any selection a DataFrame with scan_key and neuron_idx (or
        unit_id) columns or a ``{scan_key: neuron_idx list}`` mapping; for a one-scan
        selection also a list, range, array, Series or boolean mask. With ``per_scan=True``
        the result is one dict of arrays per scan key, which allows scans of different
        sizes. ``scan=`` names the scan of bare trial ids (e.g. from ``repeats()``). An empty
        selection gives arrays with zero rows and the other dimensions of ``scan=``, of the
        scans ``neurons`` names, or else of the database's scans when they agree.

        Dynamic (video) scans give videos ``(n, H, W, T)``, responses ``(n, N, T)``, behavior
        and pupil_center ``(n, 2, T)``, NaN after each trial's end; ``frames=(start, stop)``
        cuts every array to that window. A selection mixing static and dynamic scans needs
        ``per_scan=True``. Without ``keys``, the four data keys of the scans' kind.
        """
        fetching.check_keys(self.database, keys)
        keys_given = bool(keys)
        selected = self.select(selection, params, scan)
        shape_scans = self._shape_scans(scan, neurons) if selected.num_rows == 0 else ()
        options = dict(normalize=normalize, neurons=neurons, image_dtype=image_dtype, shape_scans=shape_scans,
                       frames=frames)
        if not per_scan and not keys_given:
            keys = fetching.default_keys(self._readers, selected, shape_scans)
        if per_scan:
            out = {}
            for scan_key in dict.fromkeys(selected["scan_key"].to_pylist()):
                part = selected.filter(pc.equal(selected["scan_key"], scan_key))
                part_keys = keys if keys_given else fetching.default_keys(self._readers, part, ())
                out[scan_key] = fetching.fetch(self._readers, part, part_keys, **options)
            return out
        return fetching.fetch(self._readers, selected, keys, **options)

    def responses(self, selection: Selection, neurons: Neurons | None = None, normalize: bool = False, *,
                  scan: str | None = None, params: Sequence | None = None) -> np.ndarray:
        """The (n_trials, n_neurons) float32 response matrix, in the order asked."""
        return self.fetch(selection, "responses", neurons=neurons, normalize=normalize, scan=scan,
                          params=params)["responses"]

    def images(self, selection: Selection, dtype=None, normalize: bool = False, *,
               scan: str | None = None, params: Sequence | None = None) -> np.ndarray:
        """The (n_trials, *image_shape) images, in the stored dtype unless ``dtype`` is given."""
        return self.fetch(selection, "images", image_dtype=dtype, normalize=normalize, scan=scan,
                          params=params)["images"]

    @holding
    def _shape_scans(self, scan: str | None, neurons) -> list[str]:
        """The scans an empty selection takes its other dimensions from."""
        if scan is not None:
            return [scan]
        if is_dataframe(neurons) and "scan_key" in neurons.columns:
            return list(dict.fromkeys(neurons["scan_key"]))
        if isinstance(neurons, Mapping):
            return list(neurons)
        return self._readers.known()

    # -- out of the database ----------------------------------------------------------------

    @holding
    def export(self, selection: Selection, out: str | Path, neurons: "Neurons | str | None" = None, *,
               format: str = "scan", zip: bool = False, params: Sequence | None = None,
               scan: str | None = None, model: str | None = None) -> "ExportResult":
        """Write the selected trials under ``out``: scan folders in the source layout (one per
        scan, named like the source; ``zip=True`` for zips), ``format="parquet"`` for the
        selected rows of every table, or ``format="npz"`` for the aligned arrays in one file.
        ``format="submission"`` writes ``model``'s stored predictions of the selected trials as
        the Sensorium 2023 submission: ``predictions_<tier>.parquet`` per tier, columns
        ``mouse``, ``trial_indices``, ``prediction``, ``neuron_ids`` (``scandb.export.submission``);
        a selected trial the model has no prediction of is a ``UsageError``.
        ``neurons`` is anything ``fetch`` takes, or SQL returning scan_key and neuron_idx.
        """
        from .export import export

        return export(self, self._readers, selection, out, neurons, format=format, zip=zip, params=params,
                      scan=scan, model=model)

    @holding
    def report(self, scan: str, out: str | Path) -> "ReportResult":
        """PNG figures of one scan and an HTML page embedding them, written into ``out``
        (needs matplotlib: ``pip install "scandb[report]"``)."""
        from .query.scan_names import resolve_scan
        from .report import write_report

        scan = resolve_scan(self.conn, scan)
        self._readers.get(scan)
        return write_report(self, scan, Path(out))

    @holding
    def oracle(self, scan: str, tier: str | None = None) -> "pandas.DataFrame":
        """Per-neuron repeat reliability: each repeat's response correlated with the mean of
        the other repeats of its image, averaged over images (``tier``: default the test tier,
        or the oracle tier of dynamic scans). One row per neuron with its area and layer.
        For the repeat tier it is ``neuron_quality.oracle_correlation``, stored at ingest
        (``db.neurons(quality=True)`` gives the other measures too)."""
        from .report.numbers import oracle_frame

        self._readers.get(scan)
        return oracle_frame(self, scan, tier)

    @holding
    def sample(self, scan: str, times, modalities=None, return_valid: bool = False,
               config: Mapping | None = None) -> dict:
        """An experanto session's modalities at ``times`` (seconds on the session's clock), by
        experanto's rules (``scandb.session.sampling``): sequences "previous sample" by default
        (``linear`` on request), per-neuron phase shifts, screen frames by onset rescaled to
        144 x 256, times outside a modality's valid range dropped, values normalised as
        ChunkDataset does. ``modalities`` defaults to the default config's that the session
        has; ``config`` takes experanto's modality-config keys. Returns name -> values, or
        name -> (values, valid indexes into ``times``) with ``return_valid``. Read from the
        database's store (memory-mapped), not from the source folder."""
        from .query.scan_names import resolve_scan
        from .session.sampling import sample

        session = self._readers.session(resolve_scan(self.conn, scan))
        return sample(session, times, modalities, config=dict(config) if config else None,
                      return_valid=return_valid)

    # -- writing and upkeep ---------------------------------------------------------------

    def ingest(self, paths: str | Path | Iterable[str | Path], replace: bool = False, *,
               response_matrix: bool = True, keep_going: bool = False,
               progress: "Callable[[Path], Progress | None] | None" = None,
               on_result: "Callable[[IngestResult], None] | None" = None) -> list["IngestResult"]:
        """Load scans (zips or folders) and experanto sessions (a folder with modality folders,
        or an uncompressed tar of one), one transaction each; returns one result per path.

        Re-ingesting the same content does nothing; a different file for a scan already
        present raises ``BadScanError`` unless ``replace=True``. A bad scan raises
        ``BadScanError`` (the scans before it stay ingested); with ``keep_going=True`` it is
        returned as a result with status ``'failed'`` and the remaining paths go in. A file
        this call created is deleted again when no scan went in.
        """
        self._require_writable("ingest")
        new_file = self.database.path is not None and not self.database.path.exists()
        try:
            return self._ingest(paths, replace, response_matrix, keep_going, progress, on_result)
        finally:
            if new_file and self.database.path.exists() and self._holds_no_scans():  # nothing went in: leave no empty database behind
                self.database.release()
                discard_new_database(self.database.path)

    def _holds_no_scans(self) -> bool:
        """True only when the database is readable and has no scan (unknown counts as not empty)."""
        try:
            with self.database.lease():  # decided while holding the file
                return self.conn.execute("SELECT count(*) FROM scans").fetchone()[0] == 0
        except Exception:  # no schema, or a connection DuckDB invalidated (disk full): keep the file
            return False

    def _ingest(self, paths, replace, response_matrix, keep_going, progress, on_result) -> list["IngestResult"]:
        from .ingest import IngestResult, ingest as ingest_one
        from .maintenance.orphans import collect_orphans

        with self.database.lease(), self.database.writer_lock():
            self.database.retrying(self.database.ensure_schema, f"{self.database.name}: creating the schema")
            try:
                collect_orphans(self.database)
            except duckdb.Error as exc:  # reading the references (a lake's Parquet files)
                raise explain(exc, f"{self.database.name}: ingest") from None
        results = []
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        for number, path in enumerate(map(Path, paths)):
            if number:
                self.database.hand_over()
            try:
                # released between scans: readers (and, on a lake, other writers) get in between
                with self.database.lease(), self.database.writer_lock():
                    result = self.database.retrying(
                        lambda: ingest_one(self.database, path, replace=replace, response_matrix=response_matrix,
                                           progress=progress(path) if progress else None),
                        f"{path}: ingest")
            except BadScanError as exc:
                if not keep_going:
                    raise
                result = IngestResult(str(path), "", "failed", error=exc)
            self._readers.clear()
            results.append(result)
            if on_result:
                on_result(result)
        return results

    @holding
    def remove(self, scan: str) -> "RemoveResult":
        """Delete a scan's rows in one transaction. Its files stay for readers that started
        before (and, on a lake, for older snapshots) until ``gc``."""
        from .maintenance.remove import remove_scan

        self._require_writable("remove")
        self.database.check_revision()
        with self.database.writer_lock():
            result = self.database.retrying(lambda: remove_scan(self.database, scan), f"removing {scan}")
        self._readers.clear()
        return result

    # -- models and scores ------------------------------------------------------------------

    @holding
    def add_predictions(self, model: str, selection: Selection, predictions, config: Mapping | None = None, *,
                        replace: bool = False, params: Sequence | None = None,
                        scan: str | None = None) -> "PredictionResult":
        """Store a model's predictions of the selected trials and score them (``neuron_scores``).

        ``predictions`` is aligned with the selection's rows: for a one-scan selection an
        array ``(n_trials, n_neurons)`` (every neuron of the scan, ``neuron_idx`` order), or
        ``(n_trials, n_neurons, T)`` for video trials (frames after a trial's end are not
        read; the first 50, which the 2023 scorer skips, may be NaN); for several scans a dict
        ``{scan_key: array}``, each aligned with that scan's rows. ``config`` (JSON-able) is
        kept with the run. Scores are computed per tier as the Sensorium scorers do
        (``scandb.scoring.metrics``); a tier with withheld responses is not scored (a note
        says so). A wrong shape, NaN where a response is scored, an unknown trial or a name
        already used without ``replace=True`` is a ``UsageError``, and nothing is written.
        """
        from .scoring.run import add_predictions

        self._require_writable("add predictions")
        return add_predictions(self, model, selection, predictions, config, replace, params, scan)

    @holding
    def remove_predictions(self, model: str) -> int:
        """Delete a model's predictions and scores (one transaction); returns how many trials
        it predicted. Its video files stay until ``gc`` (on a lake, with older snapshots)."""
        from .scoring.run import remove_predictions

        self._require_writable("remove predictions")
        return remove_predictions(self.database, model)

    @holding
    def models(self) -> pandas.DataFrame:
        """Every model with predictions: name, config, when and by whom, trials and scans predicted."""
        return self._df("""
            SELECT m.name, m.config, m.config_hash, m.created_at, m.created_by, m.scandb_version,
                   count(p.trial_id) AS n_trials, count(DISTINCT p.scan_key) AS n_scans
            FROM models m LEFT JOIN predictions p ON p.model = m.name
            GROUP BY ALL ORDER BY m.name""")

    @holding
    def predictions(self, model: str, scan: str) -> tuple[np.ndarray, np.ndarray]:
        """A model's stored predictions of one scan: ``(trial_ids, values)``, trials in id
        order; values ``(n, n_neurons)`` for a static scan, ``(n, n_neurons, T)`` for a video
        scan (NaN after each trial's end)."""
        from .scoring.run import read_predictions

        self._readers.get(scan)
        return read_predictions(self.database, model, scan)

    @holding
    def scores(self, model: str | Sequence[str], scan: str | None = None, tier: str | None = "test"
               ) -> pandas.DataFrame:
        """Per-neuron scores of one model (or several): ``scan_key, neuron_idx, unit_id, area,
        layer, tier, single_trial_correlation, correlation_to_average, fev, feve`` (and
        ``model``, ``n_trials``). ``tier=None`` gives every scored tier; video scans' repeat
        tier is ``oracle``. The competition's FEVE is the mean over neurons with ``fev >= 0.15``."""
        from .scoring import leaderboard

        models = leaderboard.check_models(self.conn, [model] if isinstance(model, str) else list(model),
                                          self.database.name)
        if scan is not None:
            self._readers.get(scan)
        leaderboard.check_tier(self.conn, models, tier, self.database.name)
        query, values = leaderboard.scores_query(models, scan, tier)
        return self._df(query, values)

    @holding
    def score_summary(self, models: Sequence[str] | None = None, by: str = "area", tier: str | None = "test"
                      ) -> tuple[list[str], list[tuple]]:
        """The leaderboard: per model and group (``by``: area, layer, scan, area-layer or
        model), neurons, mean single-trial correlation and correlation to average, and FEVE
        over the neurons with FEV >= 0.15, as (columns, rows)."""
        from .scoring import leaderboard

        models = leaderboard.check_models(self.conn, list(models or []), self.database.name)
        leaderboard.check_tier(self.conn, models, tier, self.database.name)
        return self.run(*leaderboard.summary_query(models, by, tier))

    # -- snapshots (a lake) -----------------------------------------------------------------

    @property
    def snapshot(self) -> int | None:
        """The lake snapshot this connection reads: the one given to ``connect``, else the
        newest at the time of the call; None for a database file (it has no snapshots)."""
        if not self.database.has_snapshots:
            return None
        with self.database.lease():
            return self.database.catalog.current_snapshot(self.conn)

    @holding
    def snapshots(self) -> list["Snapshot"]:
        """Every snapshot of a lake, oldest first: id, time, author and what changed."""
        if not self.database.has_snapshots:
            raise UsageError(f"{self.database.name}: {lake_snapshots.FILE_HAS_NO_SNAPSHOTS}")
        return lake_snapshots.snapshots(self.conn)

    @holding
    def gc(self, older_than: float, *, dry_run: bool = False) -> "GcResult":
        """Free the space of removed and replaced scans once no reader can need it. On a lake:
        expire the snapshots a newer one replaced more than ``older_than`` days ago, then
        delete the store files no kept snapshot references. In a file: delete the files
        released (by remove or replace) more than ``older_than`` days ago that no scan uses
        again. ``dry_run`` only says what would go."""
        from .maintenance.gc import gc

        if older_than < 0:
            raise UsageError(f"older_than={older_than!r}: a number of days, 0 or more")
        if not dry_run or self.database.snapshot is not None:  # a snapshot cannot see newer references
            self._require_writable("collect garbage")
        self.database.check_revision()
        result = gc(self.database, older_than, dry_run=dry_run)
        self._readers.clear()
        return result

    @holding
    def verify(self) -> "VerifyReport":
        """Check the rows agree with each other and with the files on disk."""
        from .maintenance.verify import verify

        return verify(self.database)

    @holding
    def summary(self, scan: str) -> "ScanSummary":
        """What one scan holds: trials per tier, neurons per area and layer, images, statistics.
        ``scan`` is its key, folder name or source file name."""
        from .query.scan_names import resolve_scan
        from .query.summary import scan_summary

        return scan_summary(self.conn, resolve_scan(self.conn, scan))

    @creating
    def migrate(self, target: str = "head") -> tuple[str | None, str]:
        """Create the schema, or upgrade it to this scandb's revision; returns (before, after)."""
        self._require_writable("migrate")
        with self.database.writer_lock():
            return self.database.retrying(lambda: self.database.upgrade(target), f"{self.database.name}: migrating")

    def _require_database(self) -> None:
        """A file that is not there (never created, or deleted since) is one line: only
        ``ingest`` and ``migrate`` create one."""
        path = self.database.path
        if path is not None and not path.exists():
            raise DatabaseError(f"{path}: no database there (create one with db.ingest(paths) or db.migrate())",
                                cli_message=f"{path}: no database there (create one with 'scandb ingest')")

    def _require_writable(self, action: str) -> None:
        if self.database.snapshot is not None:
            raise UsageError(f"{self.database.name}: opened at snapshot {self.database.snapshot}, which is "
                             f"read-only; to {action}, connect without snapshot=")
        if self.database.read_only:
            raise UsageError(f"{self.database.name}: opened read-only; to {action}, open it with "
                             "scandb.connect(path, read_only=False)")

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        self._readers.clear()  # kept sessions' memory maps too
        self.database.close()
        if self._results is not None:
            self._results.close()
            self._results = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
