"""Validation as asset checks on the day summary; the log-quality suite blocks the decision."""


import dagster as dg

from rollout_pipeline.defs.assets import _partition, _rollout_for, day_summary
from rollout_pipeline.defs.partitions import DAY_MODEL
from rollout_pipeline.defs.resources import StoreResource
from rollout_pipeline.domain.summary import DaySummary
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.validation.suites import LATENCY, LOG_QUALITY, PREDICTIONS


def _run(context, store: StoreResource, summary: DaySummary, name: str) -> dg.AssetCheckResult:
    from rollout_pipeline.validation.suites import validate_day

    day, model = _partition(context)
    with store.engine.connect() as conn:
        rollout = _rollout_for(conn, model, day)
        stage = repo.state_before(conn, rollout, day).stage
    (suite,) = validate_day(summary, stage, rollout.policy, suites=(name,))
    table = ["| expectation | result | observed |", "|---|---|---|"] + [
        f"| {o.description} | {o.status} | {o.observed.replace('|', '/')} |" for o in suite.outcomes
    ]
    return dg.AssetCheckResult(
        passed=suite.passed,
        severity=dg.AssetCheckSeverity.ERROR if suite.blocking else dg.AssetCheckSeverity.WARN,
        metadata={
            "results": dg.MetadataValue.md("\n".join(table)),
            "failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in suite.failures) or "none"),
            "errored": suite.errored,
        },
    )


@dg.asset_check(asset=day_summary, name=LOG_QUALITY, blocking=True, partitions_def=DAY_MODEL,
                description="Log data quality (completeness, allowed values, pairing): blocks the decision.")
def log_quality(context, store: StoreResource, day_summary: DaySummary) -> dg.AssetCheckResult:
    return _run(context, store, day_summary, LOG_QUALITY)


@dg.asset_check(asset=day_summary, name=LATENCY, partitions_def=DAY_MODEL,
                description="Candidate p99 latency against the policy's SLO.")
def latency_slo(context, store: StoreResource, day_summary: DaySummary) -> dg.AssetCheckResult:
    return _run(context, store, day_summary, LATENCY)


@dg.asset_check(asset=day_summary, name=PREDICTIONS, partitions_def=DAY_MODEL,
                description="Candidate predictions: range, share of extremes, shift against the stable model.")
def prediction_distribution(context, store: StoreResource, day_summary: DaySummary) -> dg.AssetCheckResult:
    return _run(context, store, day_summary, PREDICTIONS)


CHECKS = [log_quality, latency_slo, prediction_distribution]


def check_evaluations(instance: dg.DagsterInstance, run_id: str) -> list[dg.AssetCheckEvaluation]:
    """The asset check evaluations a run recorded, in order."""
    entries = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return [e.dagster_event.asset_check_evaluation_data for e in entries if e.dagster_event]


def failure_lines(evaluation: dg.AssetCheckEvaluation) -> list[str]:
    """The failed expectations of an evaluation, as its ``failures`` metadata lists them (see ``_run``)."""
    md = evaluation.metadata.get("failures")
    return [line.removeprefix("- ") for line in (md.value if md else "").splitlines()
            if line.strip() and line.strip() != "none"]
