"""Where a day's prediction logs are read: the pipeline's database, or Parquet in a lake through Spark.

``ROLLOUT_LOGS_URL`` unset: the logs are the database's ``prediction_log`` and
``feedback`` tables (PostgreSQL, or the embedded SQLite file), scanned by
``store.summary``. Set to ``parquet:///abs/path`` or a URL Spark reads (``s3a://…``):
the two tables are read from that lake's day layout (``store.lake``) by Spark SQL
(``store.spark_summary``) on ``ROLLOUT_SPARK_MASTER`` (default ``local[*]``). Either
way the result is the same ``DaySummary``; decisions, routing and the audit stay in
the database.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import sqlalchemy as sa

from rollout_pipeline.domain.summary import DaySummary
from rollout_pipeline.store.lake import LOGS_URL_ENV, LakeUrlError, lake_root
from rollout_pipeline.store.spark import DEFAULT_MASTER, SPARK_MASTER_ENV, SparkUnavailable, spark_master

SourceError = (LakeUrlError, SparkUnavailable)


@dataclass(frozen=True)
class Collected:
    """A day's summary and, in one line, how it was read."""

    summary: DaySummary
    source: str  # "database" | "parquet"
    note: str


@dataclass(frozen=True)
class LogSource:
    """The configured log source: ``url`` empty for the database, else a lake read by Spark on ``master``."""

    url: str = ""
    master: str = DEFAULT_MASTER

    @classmethod
    def from_environment(cls) -> LogSource:
        return cls(url=os.environ.get(LOGS_URL_ENV, "").strip(),
                   master=os.environ.get(SPARK_MASTER_ENV, "").strip() or DEFAULT_MASTER)

    @property
    def kind(self) -> str:
        return "parquet" if self.url else "database"

    def check(self) -> None:
        """Refuse a bad URL or master before any work (``LakeUrlError`` / ``SparkUnavailable``, one line)."""
        if self.url:
            lake_root(self.url)
            spark_master(self.master)

    def describe(self) -> str:
        return f"Parquet at {lake_root(self.url)} through Spark ({self.master})" if self.url else "the database"

    def collect(self, engine: sa.Engine, model: str, day: dt.date, stable: str, candidate: str, *,
                accuracy_day: dt.date | None = None) -> Collected:
        """The day's summary from this source (the database's tables get fresh statistics first)."""
        if not self.url:
            from rollout_pipeline.store.partitions import analyze_stale_day
            from rollout_pipeline.store.summary import collect_day

            # Statistics first: a day just loaded would otherwise be planned for a few dozen rows.
            analyzed = analyze_stale_day(engine, "prediction_log", day)
            with engine.connect() as conn:
                summary = collect_day(conn, model, day, stable, candidate, accuracy_day=accuracy_day)
            return Collected(summary, "database", analyzed or "statistics were current")
        from rollout_pipeline.store.spark import spark_session
        from rollout_pipeline.store.spark_summary import collect_day_spark

        root = lake_root(self.url)
        summary = collect_day_spark(spark_session(self.master), root, model, day, stable, candidate,
                                    accuracy_day=accuracy_day)
        return Collected(summary, "parquet", f"read {root} with Spark ({self.master})")
