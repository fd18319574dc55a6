"""One run for a night of many models: the assets and checks iterate the run's partitions.

The nightly schedule asks for the night's partitions (day x every active model) as
one run per contiguous range of the models dimension (``dg.BackfillPolicy.single_run()``
on the assets lets a backfill from the UI do the same). A run of one partition (the
CLI, a forced decision, a re-run from the UI) behaves as before: a failure is the
step's, and Dagster's blocking check stops the decision.

In a range run every partition gets its own materialization and metadata
(``context.add_asset_metadata(..., partition_key=...)``) and its own check
evaluations (``dg.AssetCheckEvaluation(partition=...)``). Dagster cannot fail one
partition of a step (dagster-io/dagster#17836), so one model's failure is kept to
that model: its one line is logged and put in that partition's metadata
(``failed``), later steps skip it, its decision is not materialized, and the run
fails at the end naming it, after every other model's decision was stored,
applied, notified and materialized. A day whose blocking log-quality check failed
is decided as a hold in the same run (the decision service's ``blocked`` source,
as the run-failure sensor does for a run of one partition).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

import dagster as dg

from rollout_pipeline.defs.failures import first_line
from rollout_pipeline.defs.partitions import day_and_model

FAILED = "failed"  # the metadata entry of a partition a range run could not do
# Range runs are not retried after a step failure: the retry would decide again every model the run decided.
# A crashed run worker (not a step failure) is still retried by the instance's run_retries.
NO_RETRY_ON_STEP_FAILURE = {"dagster/retry_on_asset_or_op_failure": "false"}
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def is_range(context) -> bool:
    """Whether the run was asked for a range of partitions rather than one."""
    return context.has_partition_key_range


def failure_line(exc: BaseException) -> str:
    """The one line saying why a partition failed (a refusal's description, or the error's first line)."""
    if isinstance(exc, dg.Failure) and exc.description:
        return exc.description.strip().splitlines()[0]
    return f"{type(exc).__name__}: {first_line(exc)}"


def failed_partitions(context) -> dict[str, str]:
    """Partitions of this run an earlier step could not do, with why (``failed`` in their materialization)."""
    failed = {}
    for entry in context.instance.all_logs(context.run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization is None or materialization.partition is None:
            continue
        value = materialization.metadata.get(FAILED)
        if value is not None:
            failed.setdefault(str(materialization.partition), f"{materialization.asset_key.to_user_string()}: "
                              f"{value.value}")
    return failed


def each_partition(context: dg.AssetExecutionContext,
                   work: Callable[[dt.date, str], dict]) -> dg.MaterializeResult:
    """Materialize every partition of the run with its own metadata (``work(day, model)`` returns it).

    One partition: ``work``'s errors fail the step, as they always did. A range:
    a partition that fails (or failed upstream in this run) gets ``failed`` metadata
    and is left out of later steps; the others go on.
    """
    if not is_range(context):
        day, model = day_and_model(context.partition_key)
        return dg.MaterializeResult(metadata=work(day, model))
    skip = failed_partitions(context)
    for key in context.partition_keys:
        day, model = day_and_model(key)
        if str(key) in skip:
            metadata = {FAILED: f"not done: {skip[str(key)]}"}
        else:
            try:
                metadata = work(day, model)
            except Exception as exc:  # one model's failure stays that model's (module docstring)
                metadata = {FAILED: failure_line(exc)}
                context.log.error("%s %s failed: %s", model, day, metadata[FAILED])
        context.add_asset_metadata(metadata, partition_key=key)
    return dg.MaterializeResult()


def range_check_evaluations(context, asset_key: dg.AssetKey, check_name: str,
                            work: Callable[[dt.date, str], dg.AssetCheckResult]) -> Iterable:
    """One evaluation per partition of a range run (the partitions upstream could not do are left out).

    A failed blocking suite does not fail the step here (Dagster would then skip the
    judgement and the decision of every model): the decision holds that day instead.
    """
    skip = failed_partitions(context)
    for key in context.partition_keys:
        if str(key) in skip:
            continue
        day, model = day_and_model(key)
        try:
            result = work(day, model)
        except Exception as exc:
            context.log.error("%s %s: %s not evaluated: %s", model, day, check_name, failure_line(exc))
            continue
        yield dg.AssetCheckEvaluation(
            asset_key=asset_key, check_name=check_name, passed=result.passed, metadata=result.metadata,
            severity=result.severity, description=result.description, partition=str(key), blocking=False)
    yield dg.Output(None)


def failed_blocking_checks(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """Failed ERROR-severity check names of a run by partition (the run's evaluations that carry one)."""
    out: dict[str, list[str]] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        data = entry.dagster_event.asset_check_evaluation_data if entry.dagster_event else None
        if data is not None and data.partition and not data.passed and data.severity.value == "ERROR":
            out.setdefault(str(data.partition), []).append(data.check_name)
    return out


def partition_ranges(models_in_order: list[str], wanted: Iterable[str]) -> list[tuple[str, str]]:
    """The wanted models as contiguous (first, last) ranges of the models dimension's order."""
    wanted = set(wanted)
    ranges: list[tuple[str, str]] = []
    start = last = None
    for model in models_in_order:
        if model in wanted:
            start = start or model
            last = model
        elif start is not None:
            ranges.append((start, last))
            start = None
    if start is not None:
        ranges.append((start, last))
    return ranges
