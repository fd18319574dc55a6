"""The lake: `export-logs` copies days of the log tables into Parquet (the Spark path reads them there)."""

from __future__ import annotations

import datetime as dt

import click

from rollout_pipeline.cli.base import CliError, engine, parse_day


@click.command("export-logs")
@click.option("--date", "day", required=True, help="The (first) UTC day to export, YYYY-MM-DD.")
@click.option("--through", default=None,
              help="The last UTC day to export (default: --date). A day's feedback may arrive up to two days "
                   "later and is filed under its own day: --through D+2 exports all of day D's feedback.")
@click.option("--to", "url", required=True, metavar="URL",
              help="The lake: parquet:///abs/path (local) or s3a://bucket/path, gs://, abfss://, hdfs://.")
@click.option("--model", "models", multiple=True, metavar="MODEL",
              help="Only this model's rows (repeatable); the lake keeps the other models' rows of those days.")
@click.option("--batch-rows", default=50_000, show_default=True, type=click.IntRange(1),
              help="Rows read from the database and written to Parquet at a time (a row group; bounds memory).")
def export_logs(day: str, through: str | None, url: str, models: tuple[str, ...], batch_rows: int) -> None:
    """Copy days of prediction_log and feedback from the database into a Parquet lake.

    Writes <URL>/<table>/day=YYYY-MM-DD/part-<id>.parquet for both tables (rows under
    the day of their own ts) and REPLACES those days in the lake: re-running never
    doubles a day, and a failed export leaves the lake as it was. Reads the database
    named by ROLLOUT_DATABASE_URL a batch at a time, never a whole day in memory.
    Run it before the retention job (ROLLOUT_LOG_RETENTION_DAYS) drops a day's
    partitions, to keep that day in the lake. Needs pyarrow (the 'spark' extra).
    """
    from rollout_pipeline.domain.routing import validate_name
    from rollout_pipeline.store.export import NoLogTables, export_days
    from rollout_pipeline.store.lake import LakeUrlError, lake_root

    first = parse_day(day)
    last = parse_day(through) if through is not None else first
    if last < first:
        raise click.BadParameter(f"{through} is before --date {day}", param_hint="--through")
    try:
        lake_root(url)
        for name in models:
            validate_name("model", name)
    except ValueError as exc:
        raise CliError(str(exc)) from exc

    from rollout_pipeline.progress import progress_bar

    db = engine()
    seen: dict[tuple[str, dt.date], int] = {}
    try:
        with progress_bar(None, f"export {first}..{last}", "rows") as advance:
            def progress(table: str, on: dt.date, rows: int) -> None:  # rows so far of that table's day
                advance(rows - seen.get((table, on), 0))
                seen[(table, on)] = rows

            result = export_days(db, url, first, last, models=models or None, batch_rows=batch_rows,
                                 progress=progress)
    except (LakeUrlError, NoLogTables) as exc:
        raise CliError(str(exc)) from exc
    finally:
        db.dispose()
    for path in result.files:
        click.echo(path)
    span = str(first) if last == first else f"{first} .. {last}"
    kept = sum(result.kept.values())
    click.echo(f"exported {span}: prediction_log {result.rows['prediction_log']:,} rows, feedback "
               f"{result.rows['feedback']:,} rows" + (f" (kept {kept:,} rows of other models)" if models else "")
               + f"; {len(result.files)} file{'' if len(result.files) == 1 else 's'} under {result.root}")


COMMANDS = (export_logs,)
