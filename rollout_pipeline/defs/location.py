"""What the code location holds, bound to a set of resources: the one list of assets, checks, jobs, schedules
and sensors, shared by ``definitions.py`` (the code location Dagster loads) and the in-process runner."""

import dagster as dg

from rollout_pipeline.defs.approvals import approve_decision
from rollout_pipeline.defs.backtest import backtest
from rollout_pipeline.defs.force import force_decision
from rollout_pipeline.defs.guardrail import guardrail, hourly_guardrail
from rollout_pipeline.defs.holds import blocked_day_hold
from rollout_pipeline.defs.jobs import ALL_CHECKS, ASSETS, JOBS, SCHEDULES
from rollout_pipeline.defs.retention import nightly_retention, retention
from rollout_pipeline.defs.routing import apply_routing, routing_sensor


def build_definitions(resources: dict) -> dg.Definitions:
    """The code location's definitions with ``resources``."""
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=[*JOBS, apply_routing, retention, backtest, guardrail, approve_decision, force_decision],
        schedules=[*SCHEDULES, nightly_retention, hourly_guardrail],
        sensors=[routing_sensor, blocked_day_hold],
        resources=resources,
    )
