"""The Dagster code location: wiring only."""

from rollout_pipeline.defs.location import build_definitions
from rollout_pipeline.defs.resources import resources_from_environment

# ROLLOUT_DATABASE_URL, ROLLOUT_TEARDOWN_COMMAND / _WEBHOOK / _ATTEMPTS as EnvVars; documented defaults when unset
defs = build_definitions(resources_from_environment())
