"""Deciding: `decide` (a day's analysis, or a forced action), `approve` and `reject` (a person's verdict on a
promotion waiting for approval), `rollback`. The decision service stores, applies and announces each decision."""

from __future__ import annotations

import datetime as dt

import click

from rollout_pipeline.cli.base import (CliError, cli_actor, dagster_log_level, echo_json, engine, parse_day,
                                       quiet_dagster, refused, valid_model)
from rollout_pipeline.cli.rollout import backtest_rows, load_policy


@click.command()
@click.option("--model", required=True)
@click.option("--date", "day", required=True, help="The UTC day to analyse, YYYY-MM-DD.")
@click.option("--force", type=click.Choice(["promote", "hold", "rollback"]), default=None,
              help="Override the policy's decision (needs --reason; kept in the audit).")
@click.option("--reason", default=None, help="Why the decision is forced.")
@click.option("--dry-run", is_flag=True, help="Compute and print the decision; store and apply nothing.")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False), default=None,
              help="With --dry-run: what this policy (YAML over --preset) would decide, from the stored evidence.")
@click.option("--preset", type=click.Choice(["default", "first-model"]), default=None,
              help="With --dry-run: the shipped policy under --policy (default: default).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--operator", default=None, help="Who decides (default: the OS user); audited as 'NAME (cli)'.")
def decide(model: str, day: str, force: str | None, reason: str | None, dry_run: bool, policy_path: str | None,
           preset: str | None, as_json: bool, operator: str | None) -> None:
    """Analyse a model's day (collect, validate, judge, decide); the decision is stored and applied at once."""
    valid_model(model)
    the_day = parse_day(day)
    if force and not (reason and reason.strip()):
        raise CliError("--force needs --reason: forced decisions are audited")
    if reason and not force:
        raise CliError("--reason is only used with --force")
    if policy_path or preset:
        if not dry_run or force:
            raise CliError("--policy/--preset answer a what-if: only with --dry-run and without --force "
                           "(a rollout's policy is set when it starts)")
        what_if(model, the_day, load_policy(policy_path, preset), as_json)
        return
    quiet_dagster()
    from rollout_pipeline.defs.runner import decide_day

    # A blocked day's hold is decided after the run, and announced, by the decision service.
    out = decide_day(model, the_day, force, reason, dry_run, actor=cli_actor(operator), log_level=dagster_log_level())
    if as_json:
        echo_json(out)
        return
    click.echo(describe(out))


def what_if(model: str, day: dt.date, policy, as_json: bool) -> None:
    """``decide --dry-run --policy``: the day re-decided from its stored evidence under ``policy``."""
    (row,) = backtest_rows(model, day, day, policy)
    out = {"model": model, "date": day.isoformat(), "dry_run": True, "applied": False, "policy_what_if": True,
           **row.as_dict()}
    if as_json:
        echo_json(out)
        return
    click.echo(f"{model} {day} [dry run, what-if policy] from {row.state}: now {row.now}; then {row.then}"
               f"{'' if row.differs else ' (same)'}")
    click.echo("\n".join(f"    - {r}" for r in row.reasons or (row.difference,)))


def describe(out: dict) -> str:
    """A decision as the terminal shows it: the move on one line, then its reasons."""
    f, t = out["from"], out["to"]
    head = (f"{out['model']} {out['date']}: {out['action'].upper()}{' (forced)' if out['forced'] else ''} "
            f"{f['stage']} {f['canary_percent']}% -> {t['stage']} {t['canary_percent']}%"
            f"{' [dry run]' if out.get('dry_run') else ''}"
            + (" [approval " + out["approval"] + "]" if out.get("approval") else ""))
    return "\n".join([head, *(f"    - {r}" for r in out["reasons"])])


@click.command()
@click.option("--model", required=True)
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--operator", default=None, help="Who rolls back (default: the OS user); audited as 'NAME (cli)'.")
def rollback(model: str, reason: str, as_json: bool, operator: str | None) -> None:
    """Roll a model back at once: the candidate to 0%, or after promotion the previous stable back to 100%.

    Works within the retention window, while the previous stable variant is
    still deployable; after its teardown it explains why it cannot.
    """
    from rollout_pipeline.domain.routing import InvalidName
    from rollout_pipeline.rollback import roll_back
    from rollout_pipeline.store.rollouts import RolloutError

    if not reason.strip():
        raise CliError("--reason must say why (it is kept in the audit trail)")
    actor = cli_actor(operator)
    db = engine()
    try:
        with refused(RolloutError, InvalidName):
            outcome = roll_back(db, model, reason, actor=actor)  # stored, applied, then announced
    finally:
        db.dispose()
    out = outcome.output()
    out.update({"model": model, "date": outcome.record.day.isoformat()})
    if as_json:
        echo_json(out)
        return
    click.echo(describe(out))


def verdict(model: str, day: str, reason: str, operator: str | None, given: str, rollback_: bool,
            as_json: bool) -> None:
    """``approve`` and ``reject``: a person's verdict on a promotion waiting for approval, through the decision
    service (which stores, applies and announces it)."""
    from rollout_pipeline.decision_requests import Approval
    from rollout_pipeline.decisions import make_approval
    from rollout_pipeline.store.rollouts import RolloutError

    valid_model(model)
    the_day = parse_day(day)
    if not reason.strip():
        raise CliError("--reason must say why (it is kept in the audit trail)")
    operator = cli_actor(operator)  # audited as "NAME (cli)", NAME defaulting to the OS user
    db = engine()
    try:
        with refused(RolloutError):
            outcome = make_approval(db, Approval(model, the_day, operator, given, reason, rollback=rollback_))
    finally:
        db.dispose()
    out = outcome.output()
    out.update({"model": model, "date": the_day.isoformat(), "operator": operator})
    if as_json:
        echo_json(out)
        return
    click.echo(describe(out))


@click.command()
@click.option("--model", required=True)
@click.option("--date", "day", required=True, help="The UTC day whose promotion waits for approval, YYYY-MM-DD.")
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@click.option("--operator", default=None, help="Who approves (default: the OS user); audited as 'NAME (cli)'.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def approve(model: str, day: str, reason: str, operator: str | None, as_json: bool) -> None:
    """Approve a promotion waiting for approval: it is applied to the routing at once."""
    verdict(model, day, reason, operator, "approve", False, as_json)


@click.command()
@click.option("--model", required=True)
@click.option("--date", "day", required=True, help="The UTC day whose promotion waits for approval, YYYY-MM-DD.")
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@click.option("--operator", default=None, help="Who rejects (default: the OS user); audited as 'NAME (cli)'.")
@click.option("--rollback", "rollback_", is_flag=True, help="Roll the candidate back instead of holding.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def reject(model: str, day: str, reason: str, operator: str | None, rollback_: bool, as_json: bool) -> None:
    """Reject a promotion waiting for approval: the rollout holds where it stands (or, with --rollback, rolls back)."""
    verdict(model, day, reason, operator, "reject", rollback_, as_json)


COMMANDS = (decide, rollback, approve, reject)
