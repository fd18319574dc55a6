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
from rollout_pipeline.defs.night import each_partition, failed_blocking_checks, failed_partitions, failure_line, is_range
from rollout_pipeline.defs.partitions import DAY_MODEL, day_and_model, partition_of
from rollout_pipeline.defs.resources import LogsResource, Notifier, StoreResource
from rollout_pipeline.defs.tags import ACTION_TAG, ACTOR_TAG
from rollout_pipeline.domain.codec import encode
from rollout_pipeline.domain.evaluate import Evaluation, evaluate
from rollout_pipeline.review.plots import review_plots
from rollout_pipeline.review.render import Table, key_numbers, markdown_sections, md_table, num, why_lines
from rollout_pipeline.review.report import write_report
from rollout_pipeline.sources import SourceError
from rollout_pipeline.store import evidence as evidence_store
from rollout_pipeline.store import rollouts as repo

GROUP = "daily_analysis"
# Transient database errors are retried; refusals and a database that rejects our credentials are not
# (``dg.Failure(allow_retries=False)`` from ``refuse`` and ``database_errors``).
RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL)
# A night's partitions (one day, many models) in one run: the assets iterate the run's partitions (defs/night.py).
ONE_RUN = dg.BackfillPolicy.single_run()


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


@dg.asset(partitions_def=DAY_MODEL, group_name=GROUP, retry_policy=RETRY, kinds={"sql"}, backfill_policy=ONE_RUN)
def day_summary(context: dg.AssetExecutionContext, store: StoreResource, logs: LogsResource) -> dg.MaterializeResult:
    """The day's logs of one model reduced to per-variant aggregates and a bounded sample (stored), by SQL in the
    database or by Spark SQL over Parquet (``logs``)."""
    return each_partition(context, lambda day, model: summarize_day(context, store, logs, day, model))


def summarize_day(context: dg.AssetExecutionContext, store: StoreResource, logs: LogsResource, day,
                  model: str) -> dict:
    """One partition of ``day_summary``: collect and store the day; its metadata."""
    source = logs.source
    with database_errors():
        with store.engine.connect() as conn:
            rollout = lookup_rollout(conn, model, day)
            stage = repo.state_before(conn, rollout, day).stage
        try:
            collected = source.collect(store.engine, model, day, rollout.stable_variant, rollout.candidate_variant,
                                       accuracy_day=rollout.policy.accuracy_day(day))
        except SourceError as exc:
            raise refuse(str(exc)) from None
        summary = collected.summary
        with store.engine.begin() as conn:
            evidence_id = evidence_store.save_summary(conn, summary, rollout_id=rollout.id, stage=stage,
                                                      run_id=context.run.run_id)
    return {
        "rows": summary.total_rows,
        "sample_rows": len(summary.sample),
        "stable": rollout.stable_variant,
        "candidate": rollout.candidate_variant,
        "stage": stage,
        "evidence_id": evidence_id,
        "log_source": collected.source,
        "analyzed": collected.note,
        "collect_seconds": round(summary.collect_seconds, 3),
    }


@dg.asset(partitions_def=DAY_MODEL, group_name=GROUP, retry_policy=RETRY, kinds={"python"}, deps=[day_summary],
          backfill_policy=ONE_RUN)
def judgement(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    """Candidate vs stable, metric by metric (Kayenta-style), on the stored summary; the evaluation is stored."""
    return each_partition(context, lambda day, model: judge_day(context, store, day, model))


def judge_day(context: dg.AssetExecutionContext, store: StoreResource, day, model: str) -> dict:
    """One partition of ``judgement``: evaluate the stored summary and store the evaluation; its metadata."""
    with database_errors():
        with store.engine.connect() as conn:
            found = stored_evidence(conn, model, day, context.run.run_id)
            rollout = repo.get_rollout(conn, found.rollout_id)
        evaluation = evaluate(found.summary, found.stage, rollout.policy)
        with store.engine.begin() as conn:
            evidence_store.save_evaluation(conn, found.id, evaluation)
    return {
        "score": evaluation.score if evaluation.score is not None else "n/a",
        "compared": evaluation.compared,
        "metrics": dg.MetadataValue.md(md_table(metrics_table(evaluation))),
        **{f"why: {c.name}": dg.MetadataValue.text(f"{c.classification}: {c.reason}") for c in evaluation.checks},
        "evaluation": dg.MetadataValue.json(encode(evaluation)),
        "evidence_id": found.id,
    }


class DecisionConfig(dg.Config):
    """Run config of the decision: force an action (with a reason) instead of the policy's."""

    force: str | None = None
    reason: str | None = None
    operator: str | None = None
    dry_run: bool = False


# Not every partition of a range run is decided (defs/night.py): its materializations are the decided ones.
@dg.asset(partitions_def=DAY_MODEL, group_name=GROUP, retry_policy=RETRY, kinds={"python"}, deps=[judgement],
          backfill_policy=ONE_RUN, output_required=False)
def decision(context: dg.AssetExecutionContext, config: DecisionConfig, store: StoreResource, notifier: Notifier):
    """The day's decision (promote / hold / rollback) with its reasons: stored and applied in one transaction."""
    if not is_range(context):
        day, model = partition_of(context)
        metadata, action = decide_day(context, config, store, notifier, day, model)
        if action is not None:  # the Runs list shows the outcome without opening the run
            context.instance.add_run_tags(context.run.run_id, {ACTION_TAG: action})
        yield dg.MaterializeResult(metadata=metadata)
        return
    if config.force:
        raise refuse("a forced decision takes one partition (one model's day), not a range")
    skip, blocked = failed_partitions(context), failed_blocking_checks(context.instance, context.run.run_id)
    failed, actions = {}, {}
    for key in context.partition_keys:
        day, model = day_and_model(key)
        if str(key) in skip:
            failed[model] = f"not done: {skip[str(key)]}"
            continue
        try:
            # A day whose blocking check failed is held here, as the run-failure sensor holds a run of one partition.
            metadata, action = decide_day(context, config, store, notifier, day, model,
                                          source="blocked" if str(key) in blocked else "analysis")
        except Exception as exc:  # one model's failure stays that model's
            failed[model] = failure_line(exc)
            context.log.error("%s %s not decided: %s", model, day, failed[model])
            continue
        if action is not None:
            actions[action] = actions.get(action, 0) + 1
        yield dg.AssetMaterialization(asset_key=context.asset_key, partition=str(key), metadata=metadata)
    if actions:
        context.instance.add_run_tags(context.run.run_id,
                                      {ACTION_TAG: ", ".join(f"{n} {a}" for a, n in sorted(actions.items()))})
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} of {len(context.partition_keys)} models not decided: "
                        + "; ".join(f"{m}: {why}" for m, why in sorted(failed.items())),
            allow_retries=False, metadata={"not decided": dg.MetadataValue.json(failed)})


def decide_day(context: dg.AssetExecutionContext, config: DecisionConfig, store: StoreResource, notifier: Notifier,
               day, model: str, source: str = "analysis") -> tuple[dict, str | None]:
    """One partition of ``decision``: decide, store, apply and notify; its metadata and the action (None in a
    dry run)."""
    actor = config.operator or context.run.tags.get(ACTOR_TAG) or "dagster-ui"
    request = DecisionRequest(model, day, actor, run_id=context.run.run_id, force=config.force,
                              reason=config.reason, dry_run=config.dry_run, source=source)
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
    # Order is the UI's order: the report link and the plain numbers first (inline, no modal), tables after.
    report = {"report": review.pop("report")}
    return {
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
    }, None if config.dry_run else record.action


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
