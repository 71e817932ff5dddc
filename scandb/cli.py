"""The command line: parses arguments, calls the library, prints. Nothing else."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from .catalog import DB_VARIABLE, DEFAULT_DB, DEFAULT_WAIT, is_lake
from .errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, ScandbError

EXIT_CODES_HELP = """Exit codes: 0 success; 1 internal error; 2 usage error; 3 bad input (a scan is
invalid, the summary says which and why); 4 database problem (in use, read-only, wrong
schema revision, disk full); 5 damage: found by verify, or a damaged database file."""

class DatabaseTarget(click.ParamType):
    """A database file (a Path), or a DuckLake attach string kept as it is."""

    name = "FILE|ducklake:..."

    def convert(self, value, param, ctx):
        if isinstance(value, Path) or is_lake(value):
            return value
        return click.Path(dir_okay=False, path_type=Path).convert(value, param, ctx)


def _remember_data_path(ctx: click.Context, param, value):
    if value is not None:
        if not value.startswith("s3://"):  # a bucket's URL stays as it is
            value = click.Path(file_okay=False, path_type=Path).convert(value, param, ctx)
        ctx.meta[DATA_PATH_KEY] = value
    return value


def db_option(command):
    """--db, and --data-path for a lake (read by ``connect`` through the click context)."""
    command = click.option("--data-path", type=str, default=None,
                           envvar=DATA_PATH_VARIABLE, show_envvar=True, expose_value=False,
                           callback=_remember_data_path, metavar="DIR|s3://BUCKET/PREFIX",
                           help="A lake's folder for its files, or a bucket (s3://bucket/prefix; credentials "
                                "from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL): "
                                "stored when the lake is created; later it overrides the stored one (a machine "
                                "mounting the share elsewhere).")(command)
    return click.option("--db", "db_path", type=DatabaseTarget(), default=DEFAULT_DB, show_default=True,
                        metavar="FILE|ducklake:...",
                        envvar=DB_VARIABLE, show_envvar=True,
                        help="Database file, or a DuckLake: ducklake:sqlite:<file> (one machine) or "
                             "ducklake:postgres:<conninfo> (many machines).")(command)
wait_option = click.option("--wait", type=click.FloatRange(min=0), default=DEFAULT_WAIT, show_default=True,
                           metavar="SECONDS",
                           help="How long to wait for another process that holds the database file "
                                "(says so on stderr when it waits); 0 fails at once.")


DATA_PATH_KEY = "scandb.data_path"
DATA_PATH_VARIABLE = "SCANDB_DATA_PATH"


def data_path() -> Path | str | None:
    """--data-path of the running command, if given."""
    return click.get_current_context().meta.get(DATA_PATH_KEY)


def connect(db_path: Path | str, wait: float, read_only: bool = True, snapshot: int | None = None):
    """The public API, imported only by the commands that need it (it brings pandas)."""
    from .api import connect as open_database

    return open_database(db_path, read_only=read_only, wait=wait, data_path=data_path(), snapshot=snapshot)


snapshot_option = click.option("--snapshot", type=click.IntRange(min=0), default=None, metavar="ID",
                               help="Read a lake as it was at this snapshot (ids: 'scandb snapshots'); "
                                    "default: the newest.")


def fail(message: str, code: int) -> None:
    click.echo(f"scandb: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(None, "-V", "--version", package_name="scandb", prog_name="scandb")
def cli() -> None:
    """Sensorium-style recording scans in one DuckDB database.

    Ingest scan zips or folders, query them across scans with SQL (in the DuckDB shell or
    from Python), and fetch any selection of trials as aligned numpy arrays.
    """


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@db_option
@click.option("--replace", is_flag=True, help="Swap in a different file for a scan already in the database.")
@click.option("--no-response-matrix", "response_matrix", flag_value=False, default=True,
              help="Keep responses only in the database: smaller on disk, slower Python fetches.")
@click.option("--nice", type=click.IntRange(0, 19), default=10, show_default=True, metavar="N",
              help="Run at this lower CPU priority (os.nice), so readers on the same machine "
                   "(notebooks, training jobs) keep their speed while scans go in; 0 for full speed.")
@wait_option
def ingest(paths: tuple[Path, ...], db_path: Path, replace: bool, response_matrix: bool, nice: int,
           wait: float) -> None:
    """Load scans (zips or folders) and experanto sessions (folders or uncompressed tars)
    into the database, one transaction each.

    Re-ingesting the same file does nothing; a different file for a scan already present
    is refused unless --replace. A bad scan is reported and skipped; the others go in.
    """
    if nice:
        os.nice(nice)  # inherited by the reader processes a big scan forks

    def report(result) -> None:
        failed = result.status == "failed"
        click.echo(("scandb: " if failed else "") + result.summary(), err=failed)

    with connect(db_path, wait=wait, read_only=False) as db:
        results = db.ingest(paths, replace=replace, response_matrix=response_matrix, keep_going=True,
                            progress=_progress, on_result=report)
    failures = [f"{r.source} ({r.error.problem})" for r in results if r.status == "failed"]
    if len(paths) > 1:
        from .ingest.batch import batch_line
        click.echo(batch_line(results), err=bool(failures))
    sys.exit(EXIT_BAD_INPUT if failures else EXIT_OK)


def _progress(path: Path):
    """A progress bar on a terminal; nothing otherwise (the summary line is printed anyway)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(desc=path.name[:40], total=total, unit="trial", leave=False, file=sys.stderr)
        bar.update(done)
        if bar.n >= total:
            bar.close()
    return update


@cli.command()
@db_option
@snapshot_option
@wait_option
def scans(db_path: Path, snapshot: int | None, wait: float) -> None:
    """List the scans a database holds."""
    from .render import render

    columns = ["scan_key", "kind", "n_trials", "n_neurons", "image_shape", "source_name", "ingested_at"]
    with connect(db_path, wait=wait, snapshot=snapshot) as db:
        table = db.scans()[columns]
    click.echo(render(columns, list(table.itertuples(index=False, name=None)), "table"))


@cli.command()
@db_option
@wait_option
def migrate(db_path: Path, wait: float) -> None:
    """Create the database, or upgrade its schema to this scandb's revision."""
    with connect(db_path, wait=wait, read_only=False) as db:
        before, after = db.migrate()
    if before == after:
        click.echo(f"{db_path}: schema already at revision {after}")
    else:
        click.echo(f"{db_path}: schema upgraded from {before or 'empty'} to revision {after}")


class QueryCommand(click.Command):
    """A command whose argument is SQL that may start with a ``--`` comment, as the README's
    examples do: such an argument (it holds whitespace and names no option) is the query,
    not an unknown option."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        options = {name for param in self.get_params(ctx) for name in param.opts + param.secondary_opts}
        if "--" not in args:
            sql = [a for a in args if a.startswith("--") and a.split(None, 1)[0].split("=", 1)[0] not in options
                   and any(c.isspace() for c in a)]
            if sql:
                args = [a for a in args if a not in sql] + ["--", *sql]
        return super().parse_args(ctx, args)


@cli.command(cls=QueryCommand)
@click.argument("query")
@db_option
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (values in full) instead of a table.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of objects per statement (values in full).")
@snapshot_option
@wait_option
def sql(query: str, db_path: Path, as_csv: bool, as_json: bool, snapshot: int | None, wait: float) -> None:
    """Run SQL (read-only) and print each statement's result.

    Several statements separated by ';' run in order in one DuckDB session (a SET VARIABLE
    or temporary table is there for the next ones), and each result is printed as it
    comes, as in the DuckDB shell; an error stops the rest. Tables shorten long values (a trial's response list) with '…';
    --csv and --json print them in full.

    Example: scandb sql "SELECT tier, count(*) FROM trials GROUP BY tier"
    """
    from .render import render

    if as_csv and as_json:
        raise click.UsageError("choose one of --csv and --json")
    fmt = "csv" if as_csv else "json" if as_json else "table"
    with connect(db_path, wait=wait, snapshot=snapshot) as db:
        printed = False
        for result in db.run_each(query):  # each result as soon as it is ready, as the DuckDB shell does
            if result is not None:
                if printed and fmt != "json":
                    click.echo()
                click.echo(render(*result, fmt))
                printed = True


@cli.command()
@db_option
@click.option("--write", is_flag=True,
              help="Open for writing, with scandb's small row groups (default: read-only, safe beside "
                   "other readers).")
def shell(db_path: Path | str, write: bool) -> None:
    """Open the DuckDB shell on the database.

    Read-only by default. With --write the file is attached as scandb attaches it when it
    writes (ROW_GROUP_SIZE 2048), so tables created in the shell stay small. A lake is
    attached (its extensions loaded from the lake extra's wheels) and used; on a lake the
    shell never blocks other readers or writers.
    """
    from .shell import shell_command

    command = shell_command(db_path, data_path(), write=write)
    os.execv(command[0], command)


@cli.command()
@click.argument("scan")
@db_option
@snapshot_option
@wait_option
def info(scan: str, db_path: Path, snapshot: int | None, wait: float) -> None:
    """Summarise one scan: trials per tier, neurons per area and layer, images, statistics."""
    with connect(db_path, wait=wait, snapshot=snapshot) as db:
        click.echo(db.summary(scan).text())


@cli.command()
@db_option
@wait_option
def verify(db_path: Path, wait: float) -> None:
    """Find rows or files changed since ingest, or disagreeing (exit 5).

    Recomputes each scan's recorded digests (every table's rows, the response matrix) and
    rehashes every image file; checks the schema revision, that each scan has its
    n_trials/n_neurons rows and full response lists, and that no file is orphaned. Prints
    one line per problem, counted by kind when there are many.
    """
    with connect(db_path, wait=wait) as db:
        report = db.verify()
    click.echo(report.text())
    sys.exit(report.exit_code)


@cli.command()
@click.argument("scan_key")
@db_option
@wait_option
def remove(scan_key: str, db_path: Path, wait: float) -> None:
    """Delete a scan's rows (all or nothing); its files stay until 'scandb gc'.

    A training job that started before keeps reading them; 'scandb gc --older-than DAYS'
    deletes files released more than DAYS ago (on a lake: once no kept snapshot holds them)."""
    with connect(db_path, wait=wait, read_only=False) as db:
        result = db.remove(scan_key)
    click.echo(result.summary())


@cli.command()
@db_option
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (full timestamps in UTC) instead of a table.")
@wait_option
def snapshots(db_path: Path | str, as_csv: bool, wait: float) -> None:
    """List a lake's snapshots: id, time (UTC), who committed, what changed.

    Every change to a lake is a snapshot ("ingested 26872-17-20", "removed ..."); read one
    with --snapshot ID on scans, sql, info and export, or scandb.connect(db, snapshot=ID).
    A database file has no snapshots.
    """
    from .render import render

    with connect(db_path, wait=wait) as db:
        history = db.snapshots()
    rows = [(s.id, s.when, s.author or "", s.change) for s in history]
    click.echo(render(["snapshot", "time_utc", "author", "change"], rows, "csv" if as_csv else "table"))


@cli.group()
def cache() -> None:
    """The local cache of a bucket's objects (a lake whose data path is s3://...).

    Where: $SCANDB_CACHE, else ~/.cache/scandb; size limit $SCANDB_CACHE_SIZE (default 20GB),
    least recently used objects go first. Objects never change, so a cached one is never stale.
    """


@cache.command("info")
def cache_info() -> None:
    """Where the cache is, how many objects (and blocks of objects read in parts) and bytes
    it holds, and its limit."""
    from .store.cache import Cache

    found = Cache().info()
    blocks = f" and {found['blocks']:,} blocks" if found["blocks"] else ""
    click.echo(f"{found['root']}: {found['objects']:,} objects{blocks}, {found['bytes'] / 1e6:,.1f} MB "
               f"(limit {found['limit'] / 1e9:,.1f} GB)")


@cache.command("clear")
def cache_clear() -> None:
    """Remove every cached object (they are downloaded again when read)."""
    from .store.cache import Cache

    cache = Cache()
    removed = cache.clear()
    click.echo(f"{cache.root}: removed {removed / 1e6:,.1f} MB")


@cache.command("warm")
@click.argument("query")
@db_option
@wait_option
def cache_warm(query: str, db_path: Path | str, wait: float) -> None:
    """Download the store objects of the trials QUERY selects (it returns scan_key, and
    trial_id to pick trials) into the cache, several at once: their images, and their scans'
    response matrices and meta files."""
    from .maintenance.warm import warm

    with connect(db_path, wait=wait) as db:
        count, size = warm(db, query)
    if not count:
        click.echo(f"{db_path}: the store is a local folder; nothing to cache")
    else:
        click.echo(f"cached {count:,} objects ({size / 1e6:,.1f} MB)")


@cli.command()
@db_option
@click.option("--older-than", "older_than", type=click.FloatRange(min=0), required=True, metavar="DAYS",
              help="Keep what a reader could have used in the last DAYS days (a job that started then finds "
                   "its data): files released, and snapshots replaced, earlier go. 0 keeps only what the newest "
                   "state uses.")
@click.option("--dry-run", is_flag=True, help="Only list the snapshots that would expire and the files that would "
                                              "be deleted.")
@wait_option
def gc(db_path: Path | str, older_than: float, dry_run: bool, wait: float) -> None:
    """Free space: delete the files of removed and replaced scans, expire old snapshots.

    remove and ingest --replace delete no file: a training job that started before keeps
    reading them. In a database file, gc deletes the files released more than DAYS ago that
    no scan uses. On a lake, a removed or replaced scan also stays readable at older
    snapshots: gc expires the snapshots replaced more than DAYS ago and deletes the files
    (and DuckLake's Parquet files) no kept snapshot references; unreferenced files younger
    than 6 hours stay (another machine's ingest may be writing them).
    """
    with connect(db_path, wait=wait, read_only=dry_run) as db:
        result = db.gc(older_than, dry_run=dry_run)
    click.echo(result.text())


@cli.command()
@click.argument("query")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--neurons", "neurons_query", metavar="QUERY", default=None,
              help="SQL returning scan_key and neuron_idx (or unit_id): the neurons to keep, in that order "
                   "(default: all of them).")
@click.option("--format", "fmt", type=click.Choice(["scan", "parquet", "npz", "submission"]), default="scan",
              show_default=True,
              help="scan: one folder per scan in the source layout, read by existing loaders; parquet: the "
                   "selected rows of every table, partitioned by scan_key; npz: the aligned arrays in one file; "
                   "submission: --model's predictions of the selected trials as the Sensorium 2023 submission, "
                   "predictions_<tier>.parquet per tier (mouse, trial_indices, prediction, neuron_ids).")
@click.option("--zip", "as_zip", is_flag=True, help="Write each scan as a zip (one top-level folder) instead of a folder; an "
              "experanto session as an uncompressed tar, as the release ships it.")
@click.option("--model", metavar="NAME", default=None,
              help="With --format submission: the model whose stored predictions are written.")
@db_option
@snapshot_option
@wait_option
def export(query: str, out: Path, neurons_query: str | None, fmt: str, as_zip: bool, model: str | None,
           db_path: Path, snapshot: int | None, wait: float) -> None:
    """Export the trials a query selects (scan_key, trial_id) into the folder OUT.

    Trials are numbered 0..n-1 in the query's order; meta arrays are taken for the selected
    trials and neurons, every other file the scan shipped is copied as it was, and
    meta/trials/source_trial_id.npy names each trial's id in the source scan. An experanto
    session is exported whole, as the folder (or with --zip the tar) it was ingested from,
    bit for bit: select all its trials.

    Example: scandb export "SELECT scan_key, trial_id FROM trials_full WHERE running_speed > 1
    ORDER BY ALL" out/ --neurons "SELECT scan_key, neuron_idx FROM neurons WHERE area IN ('V1', 'LM')"
    """
    with connect(db_path, wait=wait, snapshot=snapshot) as db:
        result = db.export(query, out, neurons_query, format=fmt, zip=as_zip, model=model)
    click.echo(result.summary())


@cli.command()
@click.argument("scan")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the PNG figures and report.html (created if missing).")
@db_option
@wait_option
def report(scan: str, out: Path, db_path: Path, wait: float) -> None:
    """Plot one scan: neurons per area and layer and their positions, trials per tier,
    responses per area and tier, behavior over presentation order, repeat reliability.

    Writes one PNG per figure and report.html with every figure embedded
    (needs matplotlib: pip install "scandb[report]").
    """
    with connect(db_path, wait=wait) as db:
        result = db.report(scan, out)
    click.echo(result.summary())


@cli.group()
def predictions() -> None:
    """A model's predictions, stored next to the data and scored as the Sensorium scorers do.

    Scores per neuron and tier land in neuron_scores (see 'scandb scores'); the run itself in
    models and predictions.
    """


@predictions.command("add")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--config", "config_json", metavar="JSON", default=None,
              help="The model's configuration as a JSON object, kept with the run, e.g. '{\"lr\": 3e-4}'.")
@click.option("--replace", is_flag=True, help="Swap the predictions of a model name already used.")
@db_option
@wait_option
def predictions_add(name: str, file: Path, config_json: str | None, replace: bool, db_path: Path,
                    wait: float) -> None:
    """Store and score the predictions in FILE as model NAME.

    FILE is an .npz with scan_key and trial_id per row and predictions aligned with them
    ((n, neurons) or, for video trials, (n, neurons, frames)), or a Sensorium 2023
    submission Parquet (mouse, trial_indices, prediction, neuron_ids).
    """
    import json

    from .errors import UsageError
    from .scoring.files import read

    try:
        config = json.loads(config_json) if config_json is not None else None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--config: not JSON ({exc})") from None
    with connect(db_path, wait=wait, read_only=False) as db:
        with db.database.lease():
            selected, values = read(file, db.conn)
            result = db.add_predictions(name, selected, values, config, replace=replace)
    click.echo(result.summary())


@predictions.command("list")
@db_option
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")
@snapshot_option
@wait_option
def predictions_list(db_path: Path, as_csv: bool, snapshot: int | None, wait: float) -> None:
    """List the models with predictions: configuration, when, by whom, trials and scans."""
    from .render import render

    with connect(db_path, wait=wait, snapshot=snapshot) as db:
        frame = db.models()
    rows = [tuple(row) for row in frame.itertuples(index=False)]
    click.echo(render(list(frame.columns), rows, "csv" if as_csv else "table"))


@predictions.command("remove")
@click.argument("name")
@db_option
@wait_option
def predictions_remove(name: str, db_path: Path, wait: float) -> None:
    """Delete model NAME's predictions and scores (all or nothing); its files stay until 'scandb gc'."""
    from .maintenance.report import plural

    with connect(db_path, wait=wait, read_only=False) as db:
        n = db.remove_predictions(name)
    click.echo(f"{name}: removed predictions of {plural(n, 'trial')} and their scores")


@cli.command()
@click.argument("models", nargs=-1)
@click.option("--by", type=click.Choice(["area", "layer", "scan", "area-layer", "model"]), default="area",
              show_default=True, help="Group each model's neurons by this.")
@click.option("--tier", default="test", show_default=True, help="The tier scored ('all' for every tier; video "
                                                                 "scans' repeat tier is 'oracle').")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")
@db_option
@snapshot_option
@wait_option
def scores(models: tuple[str, ...], by: str, tier: str, as_csv: bool, db_path: Path, snapshot: int | None,
           wait: float) -> None:
    """Summarise models' scores (all models without MODELS): per group, neurons, mean
    single-trial correlation and correlation to average, and FEVE as the competition reports
    it (the mean over neurons with FEV >= 0.15, counted in neurons_fev_015)."""
    from .render import render

    with connect(db_path, wait=wait, snapshot=snapshot) as db:
        columns, rows = db.score_summary(list(models), by=by, tier=None if tier == "all" else tier)
    click.echo(render(columns, rows, "csv" if as_csv else "table"))


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="example")
@click.option("--kind", type=click.Choice(["static", "dynamic", "experanto"]), default="static", show_default=True,
              help="static: image scans (Sensorium 2022); dynamic: video scans (Sensorium 2023); experanto: "
                   "sessions as the OmniMouse / Sensorium-XL release ships them (one tar each).")
@click.option("--count", type=click.IntRange(1, 100), default=3, show_default=True,
              help="How many scans (different animals) to write.")
@click.option("--trials", type=click.IntRange(20, 100_000), default=None,
              help="Trials per scan [default: 600 static, 60 dynamic]; static: about 10% test trials (each "
                   "test image shown 10 times); dynamic: 2 oracle videos shown 10 times, one trial per test "
                   "tier and one 'none'.")
@click.option("--neurons", type=click.IntRange(1, 100_000), default=200, show_default=True,
              help="Neurons per scan.")
@click.option("--image-size", type=(click.IntRange(8, 1024), click.IntRange(8, 1024)), default=None,
              metavar="HEIGHT WIDTH", help="Image or video height and width in pixels [default: 144 256 static, "
                                           "36 64 dynamic].")
@click.option("--frames", type=click.IntRange(2, 10_000), default=315, show_default=True,
              help="dynamic: frames every trial file holds (T); trials last 2/3 of that to all of it, "
                   "NaN after their end.")
@click.option("--seed", type=click.IntRange(0), default=None,
              help="Make the same scans (same keys and data) every time; default: new ones each call.")
def example(directory: Path, kind: str, count: int, trials: int | None, neurons: int,
            image_size: tuple[int, int] | None, frames: int, seed: int | None) -> None:
    """Write synthetic scans (zips) to try scandb and check an analysis on.

    Static scans: neurons respond to the images (a linear-nonlinear model plus noise), so
    responses to repeated test images agree as in real recordings; test images are shared
    by every scan. Dynamic scans: videos of 36x64 pixels, NaN-padded trials of different
    lengths in every Sensorium 2023 tier, with zero-filled test responses as released.
    experanto sessions: responses at 30 Hz, eye tracker at 20 Hz (NaN blinks), treadmill at
    100 Hz, each on its own clock, per-neuron phase shifts, 60-frame videos of 36x64 pixels
    with repeated test videos (--trials and --frames do not apply). Scan keys differ between
    calls unless --seed is given.
    """
    from .synthetic import write_dynamic_example, write_example, write_experanto_example

    if kind == "experanto":
        paths = write_experanto_example(directory, count, n_neurons=neurons, frame_shape=image_size or (36, 64),
                                        seed=seed)
    elif kind == "dynamic":
        paths = write_dynamic_example(directory, count, n_trials=trials or 60, n_neurons=neurons, n_frames=frames,
                                      video_shape=image_size or (36, 64), seed=seed)
    else:
        paths = write_example(directory, count, n_trials=trials or 600, n_neurons=neurons,
                              image_size=image_size or (144, 256), seed=seed)
    for path in paths:
        click.echo(str(path))


class _NotesOnStderr(logging.Handler):
    """The library's notes (e.g. that it waits for a lock) as one 'scandb: ...' line each
    on whatever stderr is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"scandb: {record.getMessage()}", err=True)


def _show_notes() -> None:
    logger = logging.getLogger("scandb")
    if not any(isinstance(h, _NotesOnStderr) for h in logger.handlers):
        logger.addHandler(_NotesOnStderr())
    logger.setLevel(logging.INFO)


def main() -> None:
    _show_notes()
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted", 130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ScandbError as exc:
        fail(f"error: {exc.cli_text()}", exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted; nothing half-written was kept", 130)
    except SystemExit:
        raise
    except Exception as exc:  # the last line of defence: no tracebacks for users
        if os.environ.get("SCANDB_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {exc} (please report it; "
             "set SCANDB_DEBUG=1 for the traceback)", EXIT_INTERNAL)

