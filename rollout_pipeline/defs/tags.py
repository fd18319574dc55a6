"""Run tags the pipeline reads and writes (Dagster's own partition tags included)."""

ACTOR_TAG = "rollout/actor"  # who asked for the run: schedule, cli, demo, sensor, or an operator
ACTION_TAG = "rollout/action"  # decision runs: the action decided (promote, hold, rollback), for the Runs list
DECISION_TAG = "rollout/decision_id"  # routing runs: the decision they apply
DRY_RUN_TAG = "rollout/dry_run"  # the analysis of a CLI dry run: nothing is decided from it (no hold either)
MODEL_TAG = "rollout/model"
DAY_TAG = "rollout/day"
# Set by Dagster itself on partitioned runs: the whole key ("2026-11-27|diabetes") and, for a
# multi-partitioned job, one tag per dimension. A GraphQL or UI launch may carry only the first.
PARTITION_TAG = "dagster/partition"
PARTITION_DIMENSION_TAG = "dagster/partition/{}"
