"""The daily analysis as assets: collect -> (validate) -> judge -> decide.

Thin wiring: each asset fetches, calls the pure layer, stores, and attaches metadata.
"""


import datetime as dt

import dagster as dg

from rollout_pipeline.defs.partitions import DAY_MODEL
from rollout_pipeline.defs.resources import StoreResource
from rollout_pipeline.domain.decide import Evidence, ForceError, decide, force_decision
from rollout_pipeline.domain.evaluate import Evaluation, evaluate
from rollout_pipeline.domain.summary import DaySummary
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.summary import collect_day

GROUP = "daily_analysis"
RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL)
ACTOR_TAG = "rollout/actor"


def _refuse(message: str) -> dg.Failure:
    """A failure that retrying cannot fix (bad input or a refused decision): no run retries."""
    return dg.Failure(description=message, allow_retries=False)


def _partition(context) -> tuple[dt.date, str]:
    keys = context.partition_key.keys_by_dimension
    return dt.date.fromisoformat(keys["date"]), keys["model"]


def _rollout_for(connection, model: str, day: dt.date) -> repo.Rollout:
    decided = repo.live_decision(connection, model, day)
    rollout = repo.active_rollout(connection, model) or repo.latest_rollout(connection, model)
    if decided is not None and rollout is not None and decided.rollout_id != rollout.id:
        raise _refuse(f"{model} {day} was decided under rollout {decided.rollout_id}, not the current one")
    if rollout is None:
        raise _refuse(f"{model} has no rollout: start one with `rollout-pipeline rollout start --model {model} ...`")
    return rollout


@dg.asset(partitions_def=DAY_MODEL, group_name=GROUP, retry_policy=RETRY, kinds={"sql"})
def day_summary(context: dg.AssetExecutionContext, store: StoreResource) -> DaySummary:
    """The day's logs of one model reduced SQL-side to per-variant aggregates and a bounded sample."""
    day, model = _partition(context)
    with store.engine.connect() as conn:
        rollout = _rollout_for(conn, model, day)
        summary = collect_day(conn, model, day, rollout.stable_variant, rollout.candidate_variant)
    context.add_output_metadata({
        "rows": summary.total_rows,
        "sample_rows": len(summary.sample),
        "stable": rollout.stable_variant,
        "candidate": rollout.candidate_variant,
        "collect_seconds": round(summary.collect_seconds, 3),
    })
    return summary


@dg.asset(partitions_def=DAY_MODEL, group_name=GROUP, kinds={"python"})
def judgement(context: dg.AssetExecutionContext, store: StoreResource, day_summary: DaySummary) -> dict:
    """Candidate vs stable, metric by metric (Kayenta-style), plus the day's validation results."""
    from rollout_pipeline.validation.suites import LOG_QUALITY, validate_day

    day, model = _partition(context)
    with store.engine.connect() as conn:
        rollout = _rollout_for(conn, model, day)
        state = repo.state_before(conn, rollout, day)
    evaluation = evaluate(day_summary, state.stage, rollout.policy)
    # Defence in depth: the blocking check already stops a run on bad logs, but a run
    # that selects this asset without its upstream checks must not promote either.
    (quality_suite,) = validate_day(day_summary, state.stage, rollout.policy, suites=(LOG_QUALITY,))
    quality = quality_suite.failures
    context.add_output_metadata({
        "score": evaluation.score if evaluation.score is not None else "n/a",
        "compared": evaluation.compared,
        "metrics": dg.MetadataValue.md(_metrics_table(evaluation)),
        "data_quality_failures": len(quality),
    })
    return {"evaluation": evaluation, "data_quality_failures": quality, "stage": state.stage}


class DecisionConfig(dg.Config):
    """Run config of the decision: force an action (with a reason) instead of the policy's."""

    force: str | None = None
    reason: str | None = None
    operator: str | None = None
    dry_run: bool = False


@dg.asset(partitions_def=DAY_MODEL, group_name=GROUP, retry_policy=RETRY, kinds={"python"})
def decision(context: dg.AssetExecutionContext, config: DecisionConfig, store: StoreResource, judgement: dict,
             day_summary: DaySummary) -> dict:
    """The day's decision (promote / hold / rollback) with its reasons, stored in the audit table."""
    from rollout_pipeline.review.content import build_review, review_from_record
    from rollout_pipeline.review.report import rollout_history

    day, model = _partition(context)
    evaluation: Evaluation = judgement["evaluation"]
    actor = config.operator or context.run.tags.get(ACTOR_TAG) or "dagster-ui"
    with store.engine.begin() as conn:
        rollout = _rollout_for(conn, model, day)
        latest = repo.latest_decided_day(conn, rollout.id)
        if latest is not None and day < latest and not config.force:
            raise _refuse(
                f"refusing to decide {model} {day}: {latest} is already decided and a canary never steps back "
                "in time; force an action with a reason to override"
            )
        seen = repo.live_decision(conn, model, day)  # a run deciding this day meanwhile makes ours fail, not double
        state = repo.state_before(conn, rollout, day)
        if config.force:
            try:
                result = force_decision(state, config.force, config.reason, rollout.policy, actor)
            except ForceError as exc:
                raise _refuse(str(exc)) from None
        else:
            if config.reason:
                raise _refuse("a reason is only taken with force (promote, hold or rollback)")
            evidence = Evidence(
                data_quality_failures=judgement["data_quality_failures"],
                candidate_requests=evaluation.candidate_requests,
                critical_failures=evaluation.critical_failures,
                score=evaluation.score,
                score_reasons=evaluation.failures,
                old_variant_deployable=repo.old_variant_deployable(conn, rollout),
            )
            result = decide(state, evidence, rollout.policy)
        metrics = {
            "score": evaluation.score,
            "candidate_requests": evaluation.candidate_requests,
            "stable_requests": evaluation.stable_requests,
            "compared": evaluation.compared,
            "checks": [
                {"name": c.name, "classification": c.classification, "criticality": c.criticality,
                 "stable": c.stable, "candidate": c.candidate, "reason": c.reason}
                for c in evaluation.checks
            ],
            "data_quality_failures": list(judgement["data_quality_failures"]),
        }
        # The review's numbers go with the decision, so `rollout-pipeline report` needs no Dagster run.
        metrics["review"] = build_review(
            model, day.isoformat(), result, actor, evaluation=evaluation, summary=day_summary,
            validations=_run_validations(context), data_quality_failures=judgement["data_quality_failures"],
        ).to_json()
        try:
            record = repo.record_decision(conn, rollout, day, result, actor=actor, metrics=metrics,
                                          run_id=context.run.run_id, expected_previous=seen.id if seen else None)
        except repo.ConcurrentDecision as exc:
            raise _refuse(str(exc)) from None
        history = rollout_history(repo.decision_history(conn, model), record)
        if config.dry_run:
            conn.rollback()  # computed and shown, never stored nor applied
    context.log.info("%s %s: %s (%s)", model, day, record.action, "; ".join(record.reasons))
    review = _review_metadata(review_from_record(record), history, write_report=not config.dry_run)
    context.add_output_metadata({
        "action": record.action,
        "reasons": review.pop("reasons"),
        "before": f"{record.stage_before} {record.percent_before}%",
        "after": f"{record.stage_after} {record.percent_after}%",
        "forced": record.forced,
        "score": evaluation.score if evaluation.score is not None else "n/a",
        "decision_id": record.id if not config.dry_run else "dry run: not stored",
        **review,
    })
    return decision_output(record, config.dry_run)


def _run_validations(context) -> tuple:
    """The validation suites (asset checks) evaluated in this run; none when the decision runs alone."""
    from rollout_pipeline.defs.checks import check_evaluations, failure_lines
    from rollout_pipeline.review.content import Validation

    return tuple(Validation(data.check_name, bool(data.passed), data.severity.value, tuple(failure_lines(data)))
                 for data in check_evaluations(context.instance, context.run.run_id))


def _review_metadata(review, history, *, write_report: bool) -> dict:
    """The review as metadata entries (markdown with plots), and the path of its HTML report."""
    from rollout_pipeline.review.plots import review_plots
    from rollout_pipeline.review.render import markdown_sections
    from rollout_pipeline.review.report import write_report as write

    plots = review_plots(review, history)
    meta = {key: dg.MetadataValue.md(text) for key, text in markdown_sections(review, history, plots).items()}
    meta["report"] = dg.MetadataValue.path(str(write(review, history, plots))) if write_report else "dry run: not written"
    return meta


def decision_output(record: repo.DecisionRecord, dry_run: bool) -> dict:
    """The decision as the asset returns it and the CLI prints it (``decide --json``)."""
    return {"decision_id": None if dry_run else record.id, "action": record.action,
            "forced": record.forced, "reasons": record.reasons, "dry_run": dry_run,
            "from": {"stage": record.stage_before, "canary_percent": record.percent_before},
            "to": {"stage": record.stage_after, "canary_percent": record.percent_after}}


def _metrics_table(evaluation: Evaluation) -> str:
    def fmt(x):
        return "" if x is None else f"{x:.4g}"

    lines = ["| metric | verdict | criticality | stable | candidate | why |", "|---|---|---|---|---|---|"]
    for c in evaluation.checks:
        lines.append(f"| {c.name} | {c.classification} | {c.criticality} | {fmt(c.stable)} | {fmt(c.candidate)} | "
                     f"{c.reason.replace('|', '/')} |")
    return "\n".join(lines)
