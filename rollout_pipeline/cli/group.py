"""The root command: its options, its help, its command groups (one module each) and the console script."""

from __future__ import annotations

import gc
import sys

import click

from rollout_pipeline import __version__
from rollout_pipeline.cli import admin, decide, lake, review, rollout
from rollout_pipeline.cli.base import VERBOSE, OneLineGroup
from rollout_pipeline.logs import configure_logging
from rollout_pipeline.serving.commands import serve
from rollout_pipeline.simulate.commands import simulate


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rollout-pipeline")
@click.option("--log-level", default=None,
              help="DEBUG, INFO, WARNING (default; INFO with --verbose) or ERROR; or set ROLLOUT_LOG_LEVEL.")
@click.option("--verbose", "-v", is_flag=True,
              help="Show INFO lines, Python's warnings, Dagster's step logs and the traceback of an error.")
@click.pass_context
def cli(ctx: click.Context, log_level: str | None, verbose: bool) -> None:
    """Take a new ML model from shadow through canary to production, one data-driven step a day.

    The database is named by ROLLOUT_DATABASE_URL (default: an embedded SQLite
    file in the state folder, ROLLOUT_STATE_DIR, default ./.state). Errors are one
    line on stderr; exit status 1: refused or bad input, 2: usage, 3: the database
    or a Dagster run failed, 4: internal error (--verbose shows the traceback).
    """
    ctx.meta[VERBOSE] = verbose
    # A quiet terminal: what went wrong, the command's own lines and a progress bar; INFO lines and Python's
    # warnings (Dagster's Preview/Beta, pandas, ...) only with --verbose (or an explicit level).
    configure_logging(log_level, default="INFO" if verbose else "WARNING")
    if not verbose:
        import warnings

        warnings.filterwarnings("ignore")


for group in (rollout, decide, review, lake, admin):
    for command in group.COMMANDS:
        cli.add_command(command)
cli.add_command(serve)  # the Router behind HTTP: its command lives with it (serving/commands.py)
cli.add_command(simulate)  # traffic from real models: its command lives with it (simulate/commands.py)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="rollout-pipeline")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    finally:
        # The command is done (atexit handlers, logging's flush among them, still run). At exit Python tears
        # its modules down and collects the cycles that leaves, over every object Dagster, Great Expectations,
        # pandas and SciPy created: 1.2-1.4 CPU-s of a 9 s `decide` (docs/performance.md). Objects frozen
        # into the permanent generation are left to the operating system, which frees the process anyway.
        gc.freeze()
