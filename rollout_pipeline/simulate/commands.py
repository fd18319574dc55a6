"""`rollout-pipeline simulate`: one synthetic day of traffic through the real Router."""

from __future__ import annotations

import contextlib

import click

from rollout_pipeline.simulate.scenarios import SCENARIO_NAMES, SCENARIOS

# The simulator holds a day's request plan in memory (a few hundred bytes a request): past this, split the day.
MAX_REQUESTS = 1_000_000
_SCENARIO_HELP = "; ".join(f"{name}: {text}" for name, (text, _) in SCENARIOS.items())


@click.command("simulate")
@click.option("--model", required=True, help="Model name in the store (its routing config decides the stage).")
@click.option("--date", "day", required=True, type=click.DateTime(["%Y-%m-%d"]),
              help="The UTC day to simulate (YYYY-MM-DD); timestamps are synthetic within it.")
@click.option("--requests", default=20_000, show_default=True, type=click.IntRange(0, MAX_REQUESTS),
              help=f"Requests in the day (at most {MAX_REQUESTS:,}: run several days for more).")
@click.option("--scenario", default="healthy", show_default=True, type=click.Choice(SCENARIO_NAMES),
              help=_SCENARIO_HELP)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**63 - 1),
              help="Random seed: the same seed and day index give the same traffic on any --date.")
@click.option("--day-index", default=0, show_default=True, type=click.IntRange(0, 1_000_000),
              help="Which day of a series this is (a different index, different traffic from the same seed).")
@click.option("--kind", default=None,
              help="Simulated model: diabetes, diabetes-first, cancer, wine or recs (default: the model name).")
@click.option("--knob", "knobs", multiple=True, metavar="NAME=VALUE",
              help="Override one scenario knob, e.g. --knob error_rate=0.9 (see docs/serving.md for the list).")
@click.option("--start-shadow", is_flag=True,
              help="If the model has no routing config, create a shadow-stage one first (actor 'simulator').")
@click.option("--sink", default=None, metavar="URL",
              help="Write the prediction rows and feedback to this Parquet lake (parquet:///abs/path, s3a://...) "
                   "instead of the database; the routing is still read from the database. Needs pyarrow.")
@click.option("--seeded-ids", is_flag=True,
              help="Correlation ids from the seed too (default: random), so the same arguments log the same rows "
                   "-- e.g. one day into the database and into a lake, to compare them.")
def simulate(model: str, day, requests: int, scenario: str, seed: int, day_index: int, kind: str | None,
             knobs: tuple[str, ...], start_shadow: bool, sink: str | None, seeded_ids: bool) -> None:
    """Replay a day of traffic for MODEL through the real Router into the log store (or a lake), with feedback.

    Follows the rollout's current stage: in shadow every request is mirrored to
    the candidate; in canary the candidate serves its share (sticky by entity).
    Fails if the model has no routing config, unless --start-shadow is given.
    """
    from rollout_pipeline.config import load_settings
    from rollout_pipeline.progress import progress_bar
    from rollout_pipeline.serving.router import NoRouting
    from rollout_pipeline.simulate.day import simulate_day, start_shadow_routing
    from rollout_pipeline.simulate.models import UnknownKind
    from rollout_pipeline.simulate.scenarios import UnknownScenario, parse_knobs
    from rollout_pipeline.store.engine import DatabaseUrlError, make_engine
    from rollout_pipeline.store.migrate import SchemaNotCurrent, SchemaRevisionError, require_current_schema
    from rollout_pipeline.store.lake import LakeWriter

    settings = load_settings()
    files: list[str] = []
    try:
        lake = LakeWriter(sink) if sink is not None else contextlib.nullcontext()  # bad URL / no pyarrow: first
        engine = make_engine(settings.database_url)
        with engine.connect() as connection:
            require_current_schema(connection)
        overrides = parse_knobs(knobs)
        if start_shadow:
            start_shadow_routing(engine, model, kind)
        with lake as writer, progress_bar(requests, f"simulate {model} {day.date()}", "req") as advance:
            summary = simulate_day(engine, model, day.date(), requests, scenario, seed, day_index=day_index,
                                   kind=kind, knobs=overrides,
                                   spill_dir=settings.state_dir / "spill" / f"simulate-{model}",
                                   sink=writer, seeded_ids=seeded_ids, progress=advance)
        files = writer.files if writer is not None else []
    except (NoRouting, UnknownKind, UnknownScenario, DatabaseUrlError, SchemaNotCurrent, SchemaRevisionError,
            ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if "engine" in locals():
            engine.dispose()
    click.echo(summary.describe())
    for path in files:
        click.echo(f"  wrote {path}")
