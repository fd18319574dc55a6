"""Settings are read from the environment in config.py only, and reach the rest of the package as values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rollout_pipeline.config import (
    DEFAULT_SPARK_MASTER,
    ENV_LOGS_URL,
    ENV_SPARK_MASTER,
    SettingsError,
    load_settings,
)
from rollout_pipeline.sources import DatabaseLogs, LakeLogs, configured_log_source, log_source
from rollout_pipeline.store import lake, spark

PACKAGE = Path(__file__).resolve().parents[1] / "rollout_pipeline"
# A read of the environment: os.getenv(...), os.environ.get(...), os.environ[...] not assigned to, environ.get(...)
# on the process's mapping. Writing a variable for a child process or a library (Dagster, Spark) is not a read.
READ = re.compile(r"os\.getenv\(|os\.environ\.get\(|os\.environ\[[^\]]+\](?!\s*=[^=])|dg\.EnvVar\([^)]*\)\.get_value")


def test_only_config_reads_the_environment_for_a_setting():
    readers = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "config.py":
            continue
        hits = [line.strip() for line in path.read_text().splitlines() if READ.search(line)]
        if rel == "defs/resources.py":  # Dagster's EnvVar: resolved per run, the variable's name shown, never its value
            hits = [h for h in hits if "EnvVar" not in h]
        if hits:
            readers[rel] = hits
    assert readers == {}


def test_the_settings_carry_the_log_source_and_the_log_level(monkeypatch, tmp_path):
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("ROLLOUT_DATABASE_URL", raising=False)
    monkeypatch.setenv("ROLLOUT_LOGS_URL", f"parquet://{tmp_path}/lake ")
    monkeypatch.setenv("ROLLOUT_SPARK_MASTER", "local[2]")
    monkeypatch.setenv("ROLLOUT_LOG_LEVEL", "DEBUG")
    settings = load_settings()
    assert settings.database_url.startswith("sqlite:///") and settings.state_dir == tmp_path.resolve()
    assert (settings.logs_url, settings.spark_master, settings.log_level) == (
        f"parquet://{tmp_path}/lake", "local[2]", "DEBUG")
    assert configured_log_source(settings) == LakeLogs(url=f"parquet://{tmp_path}/lake", master="local[2]")
    monkeypatch.setenv("ROLLOUT_TEARDOWN_ATTEMPTS", "0")
    with pytest.raises(SettingsError, match="ROLLOUT_TEARDOWN_ATTEMPTS"):
        load_settings()


def test_one_function_chooses_the_log_source():
    assert log_source() == log_source("  ", "spark://x:7077") == DatabaseLogs()
    assert log_source().kind == "database" and log_source().describe() == "the database"
    lake = log_source("parquet:///tmp/lake", "")
    assert lake == LakeLogs(url="parquet:///tmp/lake", master="local[*]") and lake.kind == "parquet"
    lake.check()  # a good URL and master: nothing to refuse, and Spark is not started
    with pytest.raises(Exception, match="unsupported Spark master"):
        log_source("parquet:///tmp/lake", "mesos://x").check()


def test_the_store_names_the_same_variables_as_the_settings():
    """The store does not import config.py (a lower layer); its messages name the same variables."""
    assert (lake.LOGS_URL_ENV, spark.SPARK_MASTER_ENV, spark.DEFAULT_MASTER) == (
        ENV_LOGS_URL, ENV_SPARK_MASTER, DEFAULT_SPARK_MASTER)
