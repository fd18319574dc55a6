"""The Dagster code location: wiring only."""

import dagster as dg

from rollout_pipeline.defs.approvals import approve_decision
from rollout_pipeline.defs.backtest import backtest
from rollout_pipeline.defs.force import force_decision
from rollout_pipeline.defs.guardrail import guardrail, hourly_guardrail
from rollout_pipeline.defs.holds import blocked_day_hold
from rollout_pipeline.defs.jobs import ALL_CHECKS, ASSETS, JOBS, SCHEDULES
from rollout_pipeline.defs.resources import resources_from_environment
from rollout_pipeline.defs.retention import nightly_retention, retention
from rollout_pipeline.defs.routing import apply_routing, routing_sensor

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[*JOBS, apply_routing, retention, backtest, guardrail, approve_decision, force_decision],
    schedules=[*SCHEDULES, nightly_retention, hourly_guardrail],
    sensors=[routing_sensor, blocked_day_hold],
    # ROLLOUT_DATABASE_URL, ROLLOUT_TEARDOWN_COMMAND / _WEBHOOK / _ATTEMPTS as EnvVars; documented defaults when unset
    resources=resources_from_environment(),
)
