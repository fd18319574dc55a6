"""The day's checks (``day_checks``) as asset checks on the day summary; the log-quality suite blocks the decision.

Each check runs on the summary stored by ``day_summary`` (a validation suite, or the
judge's latency gates) and stores its result with the day's evidence (structured,
read by the decision and the review); the UI gets the same result as JSON and a table.
"""


import dagster as dg

from rollout_pipeline.day_checks import LATENCY
from rollout_pipeline.defs.assets import day_summary, stored_evidence
from rollout_pipeline.defs.failures import DATABASE_RETRY, database_errors
from rollout_pipeline.defs.night import is_range, range_check_evaluations
from rollout_pipeline.defs.partitions import DAY_MODEL, partition_of
from rollout_pipeline.defs.resources import StoreResource
from rollout_pipeline.domain.codec import encode
from rollout_pipeline.review.render import Table, md_table
from rollout_pipeline.steps import check_stored_day
from rollout_pipeline.validation.results import SuiteResult
from rollout_pipeline.validation.suites import LOG_QUALITY, PREDICTIONS


def run_suite(context, store: StoreResource, name: str):
    """Run check ``name`` on the day's stored summary, store the result, and report it to Dagster: one
    result for a run of one partition, one evaluation per partition for a range (defs/night.py)."""
    if is_range(context):
        yield from range_check_evaluations(context, day_summary.key, name,
                                           lambda day, model: suite_result(context, store, name, day, model))
        return
    day, model = partition_of(context)
    yield suite_result(context, store, name, day, model)


def suite_result(context, store: StoreResource, name: str, day, model: str) -> dg.AssetCheckResult:
    """Check ``name`` on ``model``'s ``day`` as this run stored it; the result is stored with the evidence."""
    with database_errors():
        with store.engine.connect() as conn:
            found = stored_evidence(conn, model, day, context.run.run_id)
        suite = check_stored_day(store.engine, found, name)
    # A gate with too little data to judge is no pass: the check fails as a warning saying "not judged"
    # (Dagster shows a passed check green whatever its severity).
    return dg.AssetCheckResult(
        passed=suite.passed,
        severity=dg.AssetCheckSeverity.ERROR if suite.blocking else dg.AssetCheckSeverity.WARN,
        description=suite.summary()[:500],
        metadata={
            # Inline in the UI (the table may be long enough to hide behind "Show Markdown").
            "outcome": dg.MetadataValue.text(f"{suite.outcome}: {suite.summary()}"),
            "results": dg.MetadataValue.md(md_table(outcomes_table(suite))),
            "failures": dg.MetadataValue.json(list(suite.failures)),
            "not judged": dg.MetadataValue.json(list(suite.not_judged)),
            "suite": dg.MetadataValue.json(encode(suite)),
            "errored": suite.errored,
            "evidence_id": found.id,
        },
    )


def outcomes_table(suite: SuiteResult) -> Table:
    return Table(("expectation", "result", "observed"),
                 tuple((o.description, o.status, o.observed) for o in suite.outcomes))


@dg.asset_check(asset=day_summary, name=LOG_QUALITY, blocking=True, partitions_def=DAY_MODEL,
                retry_policy=DATABASE_RETRY,
                description="Log data quality (completeness, allowed values, pairing): blocks the decision.")
def log_quality(context, store: StoreResource):
    yield from run_suite(context, store, LOG_QUALITY)


@dg.asset_check(asset=day_summary, name=LATENCY, partitions_def=DAY_MODEL, retry_policy=DATABASE_RETRY,
                description="The decision's latency gates on the day (candidate p99 bound against the SLO and the "
                            "stable's p99 + the allowed regression; latency distribution): the check and the "
                            "decision say the same.")
def latency_slo(context, store: StoreResource):
    yield from run_suite(context, store, LATENCY)


@dg.asset_check(asset=day_summary, name=PREDICTIONS, partitions_def=DAY_MODEL, retry_policy=DATABASE_RETRY,
                description="Candidate predictions: range, share of extremes, shift against the stable model.")
def prediction_distribution(context, store: StoreResource):
    yield from run_suite(context, store, PREDICTIONS)


CHECKS = [log_quality, latency_slo, prediction_distribution]


def check_evaluations(instance: dg.DagsterInstance, run_id: str) -> list[dg.AssetCheckEvaluation]:
    """The asset check evaluations a run recorded, in order."""
    entries = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return [e.dagster_event.asset_check_evaluation_data for e in entries if e.dagster_event]


def blocked(evaluations) -> list[str]:
    """Names of the failed blocking (ERROR) checks among ``evaluations``."""
    return [c.check_name for c in evaluations if not c.passed and c.severity.value == "ERROR"]
