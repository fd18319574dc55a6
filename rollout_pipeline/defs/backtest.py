"""The ``backtest`` job: re-decide a model's past days under another policy, from the UI with run config.

Thin wiring around ``rollout_pipeline.backtest``: reads only (a read-only
connection), never touches routing or the audit; the result is the op's metadata
(a table of the days, the differing ones marked) and its JSON rows.
"""

import dagster as dg

from rollout_pipeline.backtest import BacktestError, run_backtest, table
from rollout_pipeline.domain.policy import policy_from_yaml as parse_policy_text
from rollout_pipeline.defs.failures import DATABASE_RETRY, config_day, database_errors, refuse
from rollout_pipeline.defs.resources import StoreResource
from rollout_pipeline.domain.policy import PolicyError
from rollout_pipeline.domain.routing import InvalidName, validate_name
from rollout_pipeline.review.render import md_table


class BacktestConfig(dg.Config):
    """Which model and days, and the policy to test: YAML text over a preset (either may be left out)."""

    model: str
    date_from: str  # YYYY-MM-DD
    date_to: str  # YYYY-MM-DD, a day that is over (UTC)
    policy_yaml: str | None = None
    preset: str = "default"


@dg.op(retry_policy=DATABASE_RETRY, tags={"kind": "sql"})
def backtest_policy(context: dg.OpExecutionContext, config: BacktestConfig, store: StoreResource) -> list[dict]:
    """Re-decide each day from its stored evidence under the policy; the table of days is the op's metadata."""
    try:
        validate_name("model", config.model)
        policy = parse_policy_text(config.policy_yaml, config.preset)
    except (InvalidName, PolicyError) as exc:
        raise refuse(str(exc)) from None
    start, end = config_day("date_from", config.date_from), config_day("date_to", config.date_to)
    with database_errors():
        try:
            rows = run_backtest(store.engine, config.model, start, end, policy)
        except BacktestError as exc:
            raise refuse(str(exc)) from None
    differing = [r for r in rows if r.differs]
    context.log.info("%s %s..%s: %d of %d days would be decided differently", config.model, start, end,
                     len(differing), len(rows))
    context.add_output_metadata({
        "model": config.model,
        "days": len(rows),
        "differing": len(differing),
        "backtest": dg.MetadataValue.md(md_table(table(rows))),
        "rows": dg.MetadataValue.json([r.as_dict() for r in rows]),
    })
    return [r.as_dict() for r in rows]


@dg.job(description="Re-decide a model's past days under another policy (run config: model, date_from, date_to, "
                    "policy_yaml, preset); reads only, changes nothing.",
        tags={"dagster/retry_on_asset_or_op_failure": "false"})
def backtest():
    backtest_policy()
