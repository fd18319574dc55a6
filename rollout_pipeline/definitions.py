"""The Dagster code location: wiring only."""

import dagster as dg

from rollout_pipeline.defs.jobs import ALL_CHECKS, ASSETS, JOBS, SCHEDULES
from rollout_pipeline.defs.resources import StoreResource

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=JOBS,
    schedules=SCHEDULES,
    resources={"store": StoreResource()},
)
