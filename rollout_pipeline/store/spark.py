"""One Spark session per process, for the log source over Parquet (issue #16).

``ROLLOUT_SPARK_MASTER`` picks the engine: ``local[*]`` (the default: Spark inside this
process's JVM, on this machine's cores), ``spark://host:7077`` for a standalone
cluster, ``sc://host:15002`` for Spark Connect. In local mode the driver binds to
127.0.0.1 only (Spark would otherwise bind the machine's external interface) and the
web UI is off. pyspark is imported only here and only when a session is asked for:
the database source never needs it (``pip install 'rollout-pipeline[spark]'`` adds it).

Sessions are reused: ``getOrCreate`` hands back the process's running session, so a
Dagster run (one process with the in-process executor), the CLI and a test session
each start Spark once (~6-20 s), never once per asset.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path

SPARK_MASTER_ENV = "ROLLOUT_SPARK_MASTER"  # read by config.py, which hands the value to spark_session
DEFAULT_MASTER = "local[*]"
LOOPBACK = "127.0.0.1"

# Small days are the common case: Spark's default of 200 shuffle partitions would make every
# grouped scan schedule 200 tiny tasks. Adaptive execution coalesces upwards as needed.
BASE_CONFIG = {
    "spark.app.name": "rollout-pipeline",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}
LOG_CONFIG = Path(__file__).with_name("spark-log4j2.properties")
LOCAL_CONFIG = {
    "spark.driver.host": LOOPBACK,
    "spark.driver.bindAddress": LOOPBACK,
    "spark.driver.memory": "2g",
    # The driver's JVM starts here: its log4j configuration can still be chosen (warnings and errors only).
    "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}",
}

_lock = threading.Lock()


class SparkUnavailable(RuntimeError):
    """Spark cannot be had here (pyspark missing, Java missing, a bad master URL): one line saying which."""


def spark_master(master: str | None = None) -> str:
    """The master URL to use: the argument (``Settings.spark_master``, from ``ROLLOUT_SPARK_MASTER``), else
    ``local[*]``; refused in one line when it is not one Spark takes."""
    chosen = (master or DEFAULT_MASTER).strip()
    if not (chosen.startswith(("local", "spark://", "sc://", "yarn", "k8s://"))):
        raise SparkUnavailable(f"unsupported Spark master {chosen!r} ({SPARK_MASTER_ENV}): use local[*], "
                               "spark://host:port, sc://host:port, yarn or k8s://...")
    return chosen


def _import_pyspark():
    try:  # pyspark's pandas-3 warning is silenced once for the package (rollout_pipeline/__init__.py)
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkUnavailable("the Parquet log source needs pyspark: pip install 'rollout-pipeline[spark]' "
                               "(and Java 17+)") from None
    return SparkSession


def spark_session(master: str | None = None, config: Mapping[str, str] | None = None):
    """The process's Spark session, started on first use with our defaults plus ``config``."""
    chosen = spark_master(master)
    SparkSession = _import_pyspark()
    settings = dict(BASE_CONFIG)
    if chosen.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
        settings.update(LOCAL_CONFIG)
    settings.update(config or {})
    with _lock:
        builder = SparkSession.builder.remote(chosen) if chosen.startswith("sc://") \
            else SparkSession.builder.master(chosen)
        for key, value in settings.items():
            builder = builder.config(key, value)
        try:
            session = builder.getOrCreate()
        except Exception as exc:  # pyspark raises its own error types for a JVM that will not start
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            hint = " (is Java 17+ installed? scripts/ensure-java installs it)" if "JAVA" in first.upper() else ""
            raise SparkUnavailable(f"Spark could not start on {chosen}: {first}{hint}") from exc
    if not chosen.startswith("sc://"):
        session.sparkContext.setLogLevel("ERROR")
    return session
