"""Partitions: one per day and model, both dimensions dynamic.

Models are added when a rollout starts (or a day of it is analysed); days are
added when a day is analysed, scheduled or forced. A fixed daily dimension would
have to start at some date before the first rollout and would show every day
since as a "missing" partition (2,000+ with a 2024 start); a dynamic one holds
exactly the days the pipeline was asked about (README: "Partitions").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import dagster as dg

from rollout_pipeline.defs.tags import PARTITION_DIMENSION_TAG, PARTITION_TAG

MODELS = dg.DynamicPartitionsDefinition(name="models")
DAYS = dg.DynamicPartitionsDefinition(name="days")
DAY_MODEL = dg.MultiPartitionsDefinition({"date": DAYS, "model": MODELS})


def partition_key(day: str | dt.date, model: str) -> dg.MultiPartitionKey:
    """The partition of ``model`` on ``day`` (a date or YYYY-MM-DD)."""
    return dg.MultiPartitionKey({"date": str(day), "model": model})


def day_and_model(key: str | dg.MultiPartitionKey) -> tuple[dt.date, str]:
    """(day, model) of a partition key, whether Dagster hands it over as a MultiPartitionKey or a string."""
    if not isinstance(key, dg.MultiPartitionKey):
        key = DAY_MODEL.get_partition_key_from_str(str(key))
    dims = key.keys_by_dimension
    return dt.date.fromisoformat(dims["date"]), dims["model"]


def partition_of(context) -> tuple[dt.date, str]:
    """(day, model) of the run's partition (an asset or check context)."""
    return day_and_model(context.partition_key)


def partition_from_tags(tags: Mapping[str, str]) -> tuple[dt.date, str] | None:
    """(day, model) of a run from its tags (the whole key or one tag per dimension); None if not partitioned."""
    if tags.get(PARTITION_TAG):
        return day_and_model(tags[PARTITION_TAG])
    day, model = tags.get(PARTITION_DIMENSION_TAG.format("date")), tags.get(PARTITION_DIMENSION_TAG.format("model"))
    if day and model:
        return dt.date.fromisoformat(day), model
    return None


def register_partitions(instance: dg.DagsterInstance, days: list[str], models: list[str]) -> None:
    """Add the days and models the instance does not know yet (names must be validated by the caller)."""
    for definition, keys in ((DAYS, days), (MODELS, models)):
        known = set(instance.get_dynamic_partitions(definition.name))
        missing = sorted(set(keys) - known)
        if missing:
            instance.add_dynamic_partitions(definition.name, missing)
