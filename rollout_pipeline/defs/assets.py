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


import dagster as dg

from rollout_pipeline.decision_requests import day_request
from rollout_pipeline.decisions import make_decision
from rollout_pipeline.defs.failures import DATABASE_RETRY, database_errors, refuse
from rollout_pipeline.defs.night import each_partition, failed_blocking_checks, failed_partitions, failure_line, is_range
from rollout_pipeline.defs.partitions import DAY_MODEL, day_and_model, partition_of
from rollout_pipeline.defs.resources import LogsResource, Notifier, StoreResource
from rollout_pipeline.defs.tags import ACTION_TAG, ACTOR_TAG
from rollout_pipeline.domain.codec import encode
from rollout_pipeline.domain.evaluate import Evaluation
from rollout_pipeline.review.plots import review_plots
from rollout_pipeline.review.links import report_href
from rollout_pipeline.review.render import Table, markdown_sections, md_table, num, why_lines
from rollout_pipeline.review.report import write_plots, write_report
from rollout_pipeline.sources import SourceError
from rollout_pipeline.steps import collect_day, judge_stored_day
from rollout_pipeline.store import evidence as evidence_store
from rollout_pipeline.store import rollouts as repo

GROUP = "daily_analysis"
RETRY = DATABASE_RETRY  # the one retry policy of every step (defs/failures.py)
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
        try:
            done = collect_day(store.engine, source, rollout, day, context.run.run_id)
        except SourceError as exc:
            raise refuse(str(exc)) from None
    state, collected, summary = done.state, done.collected, done.collected.summary
    return {
        "rows": summary.total_rows,
        "sample_rows": len(summary.sample),
        "stable": rollout.stable_variant,
        "candidate": rollout.candidate_variant,
        "stage": state.stage,
        "canary_percent": state.canary_percent,
        "routing_version": done.routing_version if done.routing_version is not None else "none",
        "evidence_id": done.evidence_id,
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
        evaluation = judge_stored_day(store.engine, found)  # the step's nights pooled with this one
    return {
        "score": evaluation.score if evaluation.score is not None else "n/a",
        "compared": evaluation.compared,
        "pooled": evaluation.pooled,
        "metrics": dg.MetadataValue.md(md_table(metrics_table(evaluation))),
        **{f"why: {c.name}": dg.MetadataValue.text(f"{c.classification}: {c.reason}") for c in evaluation.checks},
        "evaluation": dg.MetadataValue.json(encode(evaluation)),
        "evidence_id": found.id,
    }


class DecisionConfig(dg.Config):
    """Run config of the decision: force an action (with a reason) instead of the policy's.

    There is no dry run here: a what-if must not become the partition's decision (`decide --dry-run` computes
    through the decision service without materializing this asset)."""

    force: str | None = None
    reason: str | None = None
    operator: str | None = None


# Not every partition of a range run is decided (defs/night.py): its materializations are the decided ones.
@dg.asset(partitions_def=DAY_MODEL, group_name=GROUP, retry_policy=RETRY, kinds={"python"}, deps=[judgement],
          backfill_policy=ONE_RUN, output_required=False)
def decision(context: dg.AssetExecutionContext, config: DecisionConfig, store: StoreResource, notifier: Notifier):
    """The day's decision (promote / hold / rollback) with its reasons: stored and applied in one transaction."""
    if not is_range(context):
        day, model = partition_of(context)
        metadata, action = decide_day(context, config, store, notifier, day, model)
        # The Runs list shows the outcome without opening the run.
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
                                          blocked=str(key) in blocked)
        except Exception as exc:  # one model's failure stays that model's
            failed[model] = failure_line(exc)
            context.log.error("%s %s not decided: %s", model, day, failed[model])
            continue
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
               day, model: str, blocked: bool = False) -> tuple[dict, str]:
    """One partition of ``decision``: decide, store, apply and notify; its metadata and the action."""
    actor = config.operator or context.run.tags.get(ACTOR_TAG) or "dagster-ui"
    with database_errors():
        try:
            request = day_request(model, day, actor, run_id=context.run.run_id, force=config.force,
                                  reason=config.reason, blocked=blocked)
            outcome = make_decision(store.engine, request)
        except repo.RolloutError as exc:
            raise refuse(str(exc)) from None
    return decision_metadata(outcome, notifier, model, day, actor, context.run.run_id, context.log), \
        outcome.record.action


def decision_metadata(outcome, notifier: Notifier, model: str, day, actor: str, run_id: str, log) -> dict:
    """A stored decision's metadata (the review, in the UI's order), its report written and its notification
    posted (after the decision's transaction committed; a failed post never fails the decision)."""
    record = outcome.record
    log.info("%s %s: %s (%s)", model, day, record.action, "; ".join(record.reasons))
    if record.approval == "pending":
        log.info("decision %d waits for approval: `rollout-pipeline approve` (or reject) applies it", record.id)
    elif outcome.unapplied_reason:
        log.warning("decision %d stored but not applied yet (the routing sensor will): %s",
                    record.id, outcome.unapplied_reason)
    review, report_file = review_metadata(outcome, report_base_url=notifier.report_base_url)
    review["notifications"] = notifier.announce_decision(outcome.output(), model=model, day=day.isoformat(),
                                                         actor=actor, run_id=run_id, log=log, report=report_file)
    # Order is the UI's order: the report link and the decision first (inline, no modal), the tables after.
    report = {"report": review.pop("report")}
    return {
        **report,
        "action": record.action,
        "before": f"{record.stage_before} {record.percent_before}%",
        "after": f"{record.stage_after} {record.percent_after}%",
        "forced": record.forced,
        "applied": outcome.applied,
        "approval": record.approval or "not needed",
        "score": num(outcome.review.score),
        "decision_id": record.id,
        "reasons": review.pop("reasons"),
        **review,
        "decision": dg.MetadataValue.json(outcome.output()),
    }


def review_metadata(outcome, *, report_base_url: str = "") -> tuple[dict, str]:
    """The review as metadata entries and the report's path: the report link, the reasons as sentences, the
    one metrics table (with what each number counts), the validation, the plots as served images, and one text
    entry per gate's reason.

    Markdown under 1,000 characters renders inline in the Dagster UI, longer markdown only behind "Show
    Markdown": so the plots are images served beside the report (`rollout-pipeline ui` serves the reports
    folder at /reports, same origin), not data URIs, and the tables are narrow. Links are relative, so they work
    on whatever host and port the UI runs.
    """
    review = outcome.review
    plots = review_plots(review, outcome.history)
    path = write_report(review, outcome.history, plots)
    plot_links = [(title, report_href(name, report_base_url)) for title, name in write_plots(review, plots)]
    sections = markdown_sections(review, outcome.history, plot_links)
    meta: dict = {"report": dg.MetadataValue.md(
        f"[{path.name}]({report_href(path.name, report_base_url)}): the whole review with its plots "
        f"(`rollout-pipeline report --model {review.model} --date {review.day}` rewrites it)")}
    meta.update({key: dg.MetadataValue.md(text) for key, text in sections.items()})
    if review.plan:  # plain text (it wraps): the nights left to production at this traffic
        meta["plan"] = dg.MetadataValue.text(review.plan)
    meta.update({f"why: {name}": dg.MetadataValue.text(text) for name, text in why_lines(review)})
    return meta, str(path)


def metrics_table(evaluation: Evaluation) -> Table:
    """Every judged metric: verdict, criticality, both values (the reasons are separate entries)."""
    return Table(("metric", "verdict", "criticality", "stable", "candidate"),
                 tuple((c.name, c.classification, c.criticality, num(c.stable), num(c.candidate))
                       for c in evaluation.checks))
