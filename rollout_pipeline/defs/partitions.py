"""Partitions: one per day and model (models are a dynamic dimension, added when a rollout starts)."""

import dagster as dg

MODELS = dg.DynamicPartitionsDefinition(name="models")
DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC")
DAY_MODEL = dg.MultiPartitionsDefinition({"date": DAYS, "model": MODELS})


def partition_key(day: str, model: str) -> dg.MultiPartitionKey:
    """The partition of ``model`` on ``day`` (YYYY-MM-DD)."""
    return dg.MultiPartitionKey({"date": day, "model": model})
