"""Where a day's prediction logs are read: the pipeline's database, or Parquet in a lake through Spark.

Two implementations of one :class:`LogSource` interface, chosen by :func:`log_source`
alone. ``ROLLOUT_LOGS_URL`` unset (``Settings.logs_url`` empty): :class:`DatabaseLogs`,
the database's ``prediction_log`` and ``feedback`` tables (PostgreSQL, or the embedded
SQLite file), scanned by ``store.summary``. Set to ``parquet:///abs/path`` or a URL
Spark reads (``s3a://…``): :class:`LakeLogs`, the two tables read from that lake's day
layout (``store.lake``) by Spark SQL (``store.spark_summary``) on ``ROLLOUT_SPARK_MASTER``
(default ``local[*]``). Either way the result is the same ``DaySummary``; decisions,
routing and the audit stay in the database. pyspark is imported only when a lake is
collected (``store.spark.spark_session``): the database path never loads it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa

from rollout_pipeline.config import DEFAULT_SPARK_MASTER, Settings
from rollout_pipeline.domain.summary import DaySummary
# Through the module: a test (reliability_tests/test_faults.py) kills the connection inside collect_day.
from rollout_pipeline.store import summary as summary_store
from rollout_pipeline.store.lake import LakeUrlError, lake_root
from rollout_pipeline.store.partitions import analyze_stale_day
from rollout_pipeline.store.spark import SparkUnavailable, spark_master, spark_session
from rollout_pipeline.store.spark_summary import collect_day_spark

SourceError = (LakeUrlError, SparkUnavailable)


@dataclass(frozen=True)
class Collected:
    """A day's summary and, in one line, how it was read."""

    summary: DaySummary
    source: str  # "database" | "parquet"
    note: str


class LogSource(Protocol):
    """Where a day's logs are read; ``kind`` is "database" or "parquet"."""

    kind: str

    def check(self) -> None:
        """Refuse a source that cannot work before any work (``LakeUrlError`` / ``SparkUnavailable``, one line)."""

    def describe(self) -> str:
        """Where the logs are read, for people."""

    def collect(self, engine: sa.Engine, model: str, day: dt.date, stable: str, candidate: str, *,
                accuracy_day: dt.date | None = None) -> Collected:
        """The day's summary from this source."""


@dataclass(frozen=True)
class DatabaseLogs:
    """The database's ``prediction_log`` and ``feedback`` tables, scanned by SQL."""

    kind: str = "database"

    def check(self) -> None:
        return None

    def describe(self) -> str:
        return "the database"

    def collect(self, engine: sa.Engine, model: str, day: dt.date, stable: str, candidate: str, *,
                accuracy_day: dt.date | None = None) -> Collected:
        """The day's summary, the day's tables given fresh statistics first."""
        # Statistics first: a day just loaded would otherwise be planned for a few dozen rows.
        analyzed = analyze_stale_day(engine, "prediction_log", day)
        with engine.connect() as conn:
            summary = summary_store.collect_day(conn, model, day, stable, candidate, accuracy_day=accuracy_day)
        return Collected(summary, self.kind, analyzed or "statistics were current")


@dataclass(frozen=True)
class LakeLogs:
    """Parquet in a lake at ``url`` (its day layout), read by Spark SQL on ``master``."""

    url: str
    master: str = DEFAULT_SPARK_MASTER
    kind: str = "parquet"

    def check(self) -> None:
        lake_root(self.url)
        spark_master(self.master)

    def describe(self) -> str:
        return f"Parquet at {lake_root(self.url)} through Spark ({self.master})"

    def collect(self, engine: sa.Engine, model: str, day: dt.date, stable: str, candidate: str, *,
                accuracy_day: dt.date | None = None) -> Collected:
        """The day's summary by Spark (the process's session, started on first use)."""
        root = lake_root(self.url)
        summary = collect_day_spark(spark_session(self.master), root, model, day, stable, candidate,
                                    accuracy_day=accuracy_day)
        return Collected(summary, self.kind, f"read {root} with Spark ({self.master})")


def log_source(url: str = "", master: str = "") -> LogSource:
    """The source for a lake URL (empty: the database) and a Spark master (empty: ``local[*]``)."""
    url = url.strip()
    if not url:
        return DatabaseLogs()
    return LakeLogs(url=url, master=master.strip() or DEFAULT_SPARK_MASTER)


def configured_log_source(settings: Settings) -> LogSource:
    """The source the settings name (``ROLLOUT_LOGS_URL``, ``ROLLOUT_SPARK_MASTER``)."""
    return log_source(settings.logs_url, settings.spark_master)
