"""The Dagster code location: wiring only."""

import dagster as dg

from rollout_pipeline.defs.holds import blocked_day_hold
from rollout_pipeline.defs.jobs import ALL_CHECKS, ASSETS, JOBS, SCHEDULES
from rollout_pipeline.defs.resources import StoreResource
from rollout_pipeline.defs.retention import nightly_retention, retention
from rollout_pipeline.defs.routing import apply_routing, routing_sensor

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[*JOBS, apply_routing, retention],
    schedules=[*SCHEDULES, nightly_retention],
    sensors=[routing_sensor, blocked_day_hold],
    resources={"store": StoreResource()},
)
