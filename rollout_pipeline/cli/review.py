"""The morning review: `status`, `history`, `report`, `digest` (read the store; write only report files)."""

from __future__ import annotations

import click

from rollout_pipeline.cli.base import echo_json, engine, parse_day, refused


@click.command()
@click.option("--model", default=None, help="One model (default: every model with a rollout).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(model: str | None, as_json: bool) -> None:
    """Show each model's stage, canary share and routing."""
    from rollout_pipeline.views import model_status

    db = engine()
    try:
        items = model_status(db, model)
    finally:
        db.dispose()
    if as_json:
        echo_json(items[0] if model else items)
        return
    if not items:
        click.echo("no rollouts yet: start one with `rollout-pipeline rollout start`")
        return
    click.echo(status_table(items))
    for it in items:
        if it["plan"]:
            click.echo(f"{it['model']}: {it['plan']['says']}")
        if it["approval"]:
            a = it["approval"]
            click.echo(f"{it['model']}: waiting for approval of {a['date']}'s promotion to {a['to']['stage']} "
                       f"{a['to']['canary_percent']}% (until {a['expires_after']}): `rollout-pipeline approve "
                       f"--model {it['model']} --date {a['date']} --reason ...` or `reject`")


def status_table(items: list[dict]) -> str:
    """One row per model and routed variant: stage and share of the rollout, then each variant's route."""
    header = ("model", "stage", "share", "rollout", "routing", "variant", "role", "traffic", "shadow")
    rows = []
    for it in items:
        lead = (it["model"], it["stage"] or "-", "-" if it["canary_percent"] is None else f"{it['canary_percent']}%",
                "active" if it["active"] else "finished",
                "-" if it["routing_version"] is None else f"v{it['routing_version']}")
        for k, x in enumerate(it["routing"] or [None]):
            route = ("-", "-", "-", "") if x is None else (
                x["variant"], x["role"], f"{x['traffic_percent']:.1f}%", "shadow" if x["shadow"] else "")
            rows.append((lead if k == 0 else ("",) * len(lead)) + route)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


@click.command()
@click.option("--model", required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per event, each with its kind.")
@click.option("--all", "include_superseded", is_flag=True, help="Include superseded decisions.")
def history(model: str, as_json: bool, include_superseded: bool) -> None:
    """A model's audit on one timeline: its decisions (with their reasons), routing changes and teardowns."""
    from rollout_pipeline.review.timeline import lines
    from rollout_pipeline.views import audit_timeline

    db = engine()
    try:
        events = audit_timeline(db, model, include_superseded)
    finally:
        db.dispose()
    if as_json:
        echo_json([e.as_dict() for e in events])
        return
    if not events:
        click.echo(f"no decisions for {model}")
    for line in lines(events):
        click.echo(line)


@click.command()
@click.option("--model", required=True)
@click.option("--date", "day", default=None, help="The decided UTC day, YYYY-MM-DD (default: the latest decided day).")
def report(model: str, day: str | None) -> None:
    """Write the HTML review of a model's decision (plots included) to <state>/reports and print its path."""
    from rollout_pipeline.review.report import NoDecision, report_for

    the_day = parse_day(day) if day else None
    db = engine()
    try:
        with db.connect() as conn, refused(NoDecision):
            path = report_for(conn, model, the_day)
    finally:
        db.dispose()
    click.echo(str(path))


@click.command()
@click.option("--date", "day", required=True, help="The decided UTC day (the night's analysis of it), YYYY-MM-DD.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def digest(day: str, as_json: bool) -> None:
    """The morning digest: every rollout's decision of that day, pending approvals first, with report links."""
    from rollout_pipeline.review.digest import to_json
    from rollout_pipeline.views import morning_digest

    the_day = parse_day(day)
    db = engine()
    try:
        rows, undecided, path = morning_digest(db, the_day)
    finally:
        db.dispose()
    if as_json:
        echo_json({"date": the_day.isoformat(), "digest": str(path), "decisions": to_json(rows),
                   "undecided": list(undecided)})
        return
    if not rows:
        click.echo(f"no decisions on {the_day}")
    for r in rows:
        waiting = f" [approval {r.approval}]" if r.approval else ""
        click.echo(f"{r.model}: {r.action.upper()}{' (forced)' if r.forced else ''}{waiting} {r.before} -> {r.after} "
                   f"(#{r.decision_id} by {r.actor}) {path.parent / r.report}")
    if undecided:
        click.echo(f"no decision that night for active rollouts: {', '.join(undecided)}")
    click.echo(str(path))


COMMANDS = (status, history, report, digest)
