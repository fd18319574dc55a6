"""Starting a rollout and planning it: `rollout start`, `plan`, `policy`, `backtest` (what a policy would decide)."""

from __future__ import annotations

import datetime as dt

import click

from rollout_pipeline.cli.base import (CliError, echo_json, engine, parse_day, quiet_dagster, refused, today,
                                       valid_model)


@click.group()
def rollout() -> None:
    """Start and inspect rollouts."""


@rollout.command("start")
@click.option("--model", required=True, help="Model name (letters, digits, '.', '_', '-').")
@click.option("--stable", required=True, help="The variant serving today (for a first model: a baseline).")
@click.option("--candidate", required=True, help="The new variant to roll out.")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False), default=None,
              help="Policy YAML over the preset (default: the documented defaults; see `rollout-pipeline policy`).")
@click.option("--preset", type=click.Choice(["default", "first-model"]), default="default", show_default=True,
              help="A shipped policy: first-model when the stable variant is a baseline (a constant, top-N items).")
@click.option("--first-model", "first_model", is_flag=True, help="Same as --preset first-model.")
def rollout_start(model: str, stable: str, candidate: str, policy_path: str | None, preset: str,
                  first_model: bool) -> None:
    """Register a rollout in stage shadow: the stable model serves 100%, the candidate shadows it."""
    from rollout_pipeline.domain.routing import InvalidName
    from rollout_pipeline.planning import plan_lines, start_planned
    from rollout_pipeline.store.rollouts import RolloutError

    policy = load_policy(policy_path, "first-model" if first_model else preset)
    db = engine()
    try:
        with refused(RolloutError, InvalidName):
            r, profile, steps = start_planned(db, model, stable, candidate, policy, actor="cli", today=today())
    finally:
        db.dispose()
    quiet_dagster()
    from rollout_pipeline.defs.runner import register_model

    register_model(model)
    click.echo(f"rollout {r.id} of {model} started: {candidate} shadows {stable} (policy {r.policy_version})")
    click.echo("\n".join(plan_lines(profile, steps)))


@click.command()
@click.option("--model", required=True, help="A model with a rollout (its policy) and some days of logs.")
@click.option("--days", type=click.IntRange(1, 60), default=7, show_default=True,
              help="The last UTC days of traffic the plan is made from.")
@click.option("--until", "until", default=None, help="The last of those days, YYYY-MM-DD (default: yesterday, UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def plan(model: str, days: int, until: str | None, as_json: bool) -> None:
    """Expected nights at each step and the gate that decides it, from the last days' traffic; warns when a step
    cannot decide within a week and says what would help."""
    from rollout_pipeline.planning import model_plan, plan_json, plan_lines

    valid_model(model)
    the_day = parse_day(until) + dt.timedelta(days=1) if until else today()
    db = engine()
    try:
        profile, steps = model_plan(db, model, today=the_day, days=days)
    finally:
        db.dispose()
    if as_json:
        echo_json({"model": model, **plan_json(profile, steps)})
        return
    click.echo("\n".join(plan_lines(profile, steps)))


@click.command()
@click.option("--preset", type=click.Choice(["default", "first-model"]), default="default", show_default=True,
              help="Print this shipped policy instead of the defaults.")
def policy(preset: str) -> None:
    """Print the default policy (or a preset) as YAML (copy it, edit it, pass it with --policy)."""
    from rollout_pipeline.domain.policy import default_policy_yaml

    click.echo(default_policy_yaml(preset), nl=False)


@click.command()
@click.option("--model", required=True)
@click.option("--from", "start", required=True, help="First UTC day, YYYY-MM-DD.")
@click.option("--to", "end", required=True, help="Last UTC day (over), YYYY-MM-DD.")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False), default=None,
              help="The policy to test: YAML over --preset (see `rollout-pipeline policy`).")
@click.option("--preset", type=click.Choice(["default", "first-model"]), default=None,
              help="The shipped policy under --policy (default: default).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def backtest(model: str, start: str, end: str, policy_path: str | None, preset: str | None, as_json: bool) -> None:
    """Re-decide past days from their stored evidence under another policy; never touches routing or the audit."""
    valid_model(model)
    first, last = parse_day(start), parse_day(end)
    if not (policy_path or preset):
        raise CliError("name the policy to test: --policy FILE and/or --preset NAME")
    rows = backtest_rows(model, first, last, load_policy(policy_path, preset))
    differing = [r for r in rows if r.differs]
    if as_json:
        echo_json({"model": model, "from": first.isoformat(), "to": last.isoformat(), "days": len(rows),
                   "differing": len(differing), "rows": [r.as_dict() for r in rows]})
        return
    from rollout_pipeline.backtest import table

    t = table(rows)
    widths = [max(len(str(x)) for x in col) for col in zip(t.header, *t.rows)]
    for line in (t.header, *t.rows):
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    for r in differing:  # why each differing day was decided then, and why it would be decided otherwise now
        click.echo(f"\ndiffers on {r.day} ({r.difference}):")
        click.echo("  then:" + "".join(f"\n    - {x}" for x in r.then_reasons or ("(no reasons stored)",)))
        click.echo("  now: " + "".join(f"\n    - {x}" for x in r.reasons or ("(none)",)))
    click.echo(f"{len(differing)} of {len(rows)} days would be decided differently")


def load_policy(path: str | None, preset: str | None):
    """The policy of ``--policy`` over ``--preset`` (default: default), refused in one line when invalid."""
    from rollout_pipeline.domain.policy import PolicyError, load_policy as load

    with refused(PolicyError):
        return load(path, preset or "default")


def backtest_rows(model: str, start: dt.date, end: dt.date, policy) -> list:
    """Re-decide the days read-only, with a progress bar; the input checked as ``decide`` checks it."""
    from rollout_pipeline.backtest import BacktestError, run_backtest
    from rollout_pipeline.progress import progress_bar

    db = engine()
    try:
        with progress_bar((end - start).days + 1, f"backtest {model}", "day") as advance, refused(BacktestError):
            return run_backtest(db, model, start, end, policy, progress=advance)
    finally:
        db.dispose()


COMMANDS = (rollout, plan, policy, backtest)
