"""The daily analysis as assets: collect -> (validate) -> judge -> decide.

Thin wiring: each asset looks the rollout up once, calls the pure layer and the
store, and attaches metadata. The day's evidence lives in the pipeline's database
(``store.evidence``), not in Dagster's IO manager: each asset stores what it found
and returns a ``MaterializeResult``, and downstream assets depend on it with
``deps=`` and read it from the database. Dagster's docs say I/O managers are not
the best fit when "your pipeline manages I/O on its own" or runs SQL that writes a
table (docs.dagster.io, "Managing your own I/O"): such assets return a
``MaterializeResult`` (metadata only) and declare their upstream with ``deps``. So a
forced decision run alone, a re-run in another process or container, and the report
all read the same stored evidence, and two runs of a day never share a pickle.
"""


import urllib.parse

import dagster as dg

from rollout_pipeline.decisions import DecisionRequest, make_decision
from rollout_pipeline.defs.failures import database_errors, refuse
from rollout_pipeline.defs.partitions import DAY_MODEL, partition_of
from rollout_pipeline.defs.resources import Notifier, StoreResource
from rollout_pipeline.defs.tags import ACTION_TAG, ACTOR_TAG
from rollout_pipeline.domain.codec import encode
from rollout_pipeline.domain.evaluate import Evaluation, evaluate
from rollout_pipeline.review.plots import review_plots
from rollout_pipeline.review.render import Table, key_numbers, markdown_sections, md_table, num, why_lines
from rollout_pipeline.review.report import write_report
from rollout_pipeline.store import evidence as evidence_store
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.partitions import analyze_stale_day
from rollout_pipeline.store.summary import collect_day

GROUP = "daily_analysis"
# Transient database errors are retried; refusals and a database that rejects our credentials are not
# (``dg.Failure(allow_retries=False)`` from ``refuse`` and ``database_errors``).
RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL)


def lookup_rollout(connection, model: str, day) -> repo.Rollout:
    """The rollout the day is analysed under, or a refusal saying why there is none."""
    try:
        return repo.rollout_for_day(connection, model, day)
    except repo.RolloutError as exc:
        raise refuse(str(exc)) from None


def stored_evidence(connection, model: str, day, run_id: str) -> evidence_store.DayEvidence:
    """This run's analysis of the day (or the live one, for checks or a judge run alone); refused if none."""
    found = evidence_store.load_evidence(connection, model, day, run_id=run_id)
    if found is None:
        raise refuse(f"{model} {day} was never analysed: materialize day_summary first")
    return found


@dg.asset(partitions_def=DAY_MODEL, group_name=GROUP, retry_policy=RETRY, kinds={"sql"})
def day_summary(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    """The day's logs of one model reduced SQL-side to per-variant aggregates and a bounded sample (stored)."""
    day, model = partition_of(context)
    with database_errors():
        with store.engine.connect() as conn:
            rollout = lookup_rollout(conn, model, day)
            stage = repo.state_before(conn, rollout, day).stage
        # Statistics first: a day just loaded would otherwise be planned for a few dozen rows.
        analyzed = analyze_stale_day(store.engine, "prediction_log", day)
        with store.engine.connect() as conn:
            summary = collect_day(conn, model, day, rollout.stable_variant, rollout.candidate_variant,
                                  accuracy_day=rollout.policy.accuracy_day(day))
        with store.engine.begin() as conn:
            evidence_id = evidence_store.save_summary(conn, summary, rollout_id=rollout.id, stage=stage,
                                                      run_id=context.run.run_id)
    return dg.MaterializeResult(metadata={
        "rows": summary.total_rows,
        "sample_rows": len(summary.sample),
        "stable": rollout.stable_variant,
        "candidate": rollout.candidate_variant,
        "stage": stage,
        "evidence_id": evidence_id,
        "analyzed": analyzed or "statistics were current",
        "collect_seconds": round(summary.collect_seconds, 3),
    })


@dg.asset(partitions_def=DAY_MODEL, group_name=GROUP, retry_policy=RETRY, kinds={"python"}, deps=[day_summary])
def judgement(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    """Candidate vs stable, metric by metric (Kayenta-style), on the stored summary; the evaluation is stored."""
    day, model = partition_of(context)
    with database_errors():
        with store.engine.connect() as conn:
            found = stored_evidence(conn, model, day, context.run.run_id)
            rollout = repo.get_rollout(conn, found.rollout_id)
        evaluation = evaluate(found.summary, found.stage, rollout.policy)
        with store.engine.begin() as conn:
            evidence_store.save_evaluation(conn, found.id, evaluation)
    return dg.MaterializeResult(metadata={
        "score": evaluation.score if evaluation.score is not None else "n/a",
        "compared": evaluation.compared,
        "metrics": dg.MetadataValue.md(md_table(metrics_table(evaluation))),
        **{f"why: {c.name}": dg.MetadataValue.text(f"{c.classification}: {c.reason}") for c in evaluation.checks},
        "evaluation": dg.MetadataValue.json(encode(evaluation)),
        "evidence_id": found.id,
    })


class DecisionConfig(dg.Config):
    """Run config of the decision: force an action (with a reason) instead of the policy's."""

    force: str | None = None
    reason: str | None = None
    operator: str | None = None
    dry_run: bool = False


@dg.asset(partitions_def=DAY_MODEL, group_name=GROUP, retry_policy=RETRY, kinds={"python"}, deps=[judgement])
def decision(context: dg.AssetExecutionContext, config: DecisionConfig, store: StoreResource,
             notifier: Notifier) -> dg.MaterializeResult:
    """The day's decision (promote / hold / rollback) with its reasons: stored and applied in one transaction."""
    day, model = partition_of(context)
    actor = config.operator or context.run.tags.get(ACTOR_TAG) or "dagster-ui"
    request = DecisionRequest(model, day, actor, run_id=context.run.run_id, force=config.force,
                              reason=config.reason, dry_run=config.dry_run)
    with database_errors():
        try:
            outcome = make_decision(store.engine, request)
        except repo.RolloutError as exc:
            raise refuse(str(exc)) from None
    record = outcome.record
    context.log.info("%s %s: %s (%s)", model, day, record.action, "; ".join(record.reasons))
    if record.approval == "pending":
        context.log.info("decision %d waits for approval: `rollout-pipeline approve` (or reject) applies it",
                         record.id)
    elif outcome.unapplied_reason:
        context.log.warning("decision %d stored but not applied yet (the routing sensor will): %s",
                            record.id, outcome.unapplied_reason)
    review, report_file = review_metadata(outcome, write=not config.dry_run,
                                          report_base_url=notifier.report_base_url)
    if not config.dry_run:  # after the decision's transaction committed; a failed post never fails the decision
        review["notifications"] = notifier.announce_decision(outcome.output(), model=model, day=day.isoformat(),
                                                             actor=actor, run_id=context.run.run_id, log=context.log,
                                                             report=report_file)
        # The Runs list shows the outcome without opening the run.
        context.instance.add_run_tags(context.run.run_id, {ACTION_TAG: record.action})
    # Order is the UI's order: the report link and the plain numbers first (inline, no modal), tables after.
    report = {"report": review.pop("report")}
    return dg.MaterializeResult(metadata={
        **report,
        "action": record.action,
        "before": f"{record.stage_before} {record.percent_before}%",
        "after": f"{record.stage_after} {record.percent_after}%",
        "forced": record.forced,
        "applied": outcome.applied,
        "score": outcome.review.score if outcome.review.score is not None else "n/a",
        "decision_id": record.id if not config.dry_run else "dry run: not stored",
        **key_numbers(outcome.review),
        "reasons": review.pop("reasons"),
        **review,
        "decision": dg.MetadataValue.json(outcome.output()),
    })


def review_metadata(outcome, *, write: bool, report_base_url: str = "") -> tuple[dict, str | None]:
    """The review as metadata entries (markdown tables, one text entry per metric's "why", a link to the
    HTML report) and the report's path (None in a dry run).

    Markdown under 1,000 characters renders inline in the Dagster UI, longer markdown (the plots) only
    behind "Show Markdown"; so the tables are narrow and each reason is its own plain-text entry. The
    report is a markdown link showing its file name: a long path or URL as text is one unbreakable word
    that widens the whole metadata table past the window.
    """
    plots = review_plots(outcome.review, outcome.history)
    sections = markdown_sections(outcome.review, outcome.history, plots)
    sections.pop("why")
    meta: dict = {}
    path = None
    if write:
        path = write_report(outcome.review, outcome.history, plots)
        href = (f"{report_base_url.rstrip('/')}/{urllib.parse.quote(path.name)}" if report_base_url
                else path.resolve().as_uri())
        meta["report"] = dg.MetadataValue.md(
            f"[{path.name}]({href}): the whole review with its plots, in the state folder's reports "
            f"(`rollout-pipeline report --model {outcome.review.model} --date {outcome.review.day}` prints the path)")
    else:
        meta["report"] = "dry run: not written"
    meta.update({key: dg.MetadataValue.md(text) for key, text in sections.items()})
    meta.update({f"why: {name}": dg.MetadataValue.text(text) for name, text in why_lines(outcome.review)})
    return meta, None if path is None else str(path)


def metrics_table(evaluation: Evaluation) -> Table:
    """Every judged metric: verdict, criticality, both values (the reasons are separate entries)."""
    return Table(("metric", "verdict", "criticality", "stable", "candidate"),
                 tuple((c.name, c.classification, c.criticality, num(c.stable), num(c.candidate))
                       for c in evaluation.checks))
