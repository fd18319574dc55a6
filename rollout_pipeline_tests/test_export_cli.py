"""`rollout-pipeline export-logs`: a day from the database into the lake with progress and a final line; every
error one line naming its cause (bad URL, no pyarrow, unreachable or uninitialised database, bad date or name)."""

from __future__ import annotations

import datetime as dt
import os
import sys

import pytest

from rollout_pipeline_tests.extras import need
from click.testing import CliRunner

need("pyarrow")
import pyarrow.dataset as ds  # noqa: E402

from rollout_pipeline.cli import cli  # noqa: E402
from rollout_pipeline.store.engine import make_engine  # noqa: E402
from rollout_pipeline.store.logs import write_predictions  # noqa: E402
from rollout_pipeline_tests.factories import log_day  # noqa: E402

DAY = dt.date(2026, 3, 14)


@pytest.fixture
def env(tmp_path, monkeypatch, sqlite_url):
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        for k in range(3):
            write_predictions(engine, log_day("m", DAY + dt.timedelta(days=k), "s", "c", requests=250, seed=k))
    finally:
        engine.dispose()
    return tmp_path


def run(*args):
    return CliRunner().invoke(cli, ["export-logs", *args])


def one_line(result, code: int) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == code, (result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def lake_count(root, table="prediction_log"):
    path = os.path.join(root, table)
    return ds.dataset(path, format="parquet").count_rows() if os.path.isdir(path) else 0


def test_export_logs_advances_a_progress_bar_and_prints_the_files_and_rows_per_table(env, monkeypatch):
    import contextlib

    import rollout_pipeline.progress

    advances = []

    @contextlib.contextmanager
    def bar(total, description, unit="it"):
        yield advances.append

    monkeypatch.setattr(rollout_pipeline.progress, "progress_bar", bar)
    lake = env / "lake"
    result = run("--date", str(DAY), "--to", f"parquet://{lake}", "--batch-rows", "100")
    assert result.exit_code == 0, result.output
    assert [n for n in advances if n] == [100] * 5  # one batch of rows at a time, 500 in all
    assert result.stderr == ""  # quiet: the bar shows on a terminal only
    out = result.stdout.splitlines()
    assert out[-1] == f"exported {DAY}: prediction_log 500 rows, feedback 0 rows; 1 file under file://{lake}"
    assert [os.path.isfile(p) for p in out[:-1]] == [True]
    assert lake_count(lake) == 500

    again = run("--date", str(DAY), "--through", str(DAY + dt.timedelta(days=2)), "--to", f"parquet://{lake}")
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[-1].startswith(f"exported {DAY} .. {DAY + dt.timedelta(days=2)}: "
                                                    f"prediction_log 1,500 rows")
    assert lake_count(lake) == 1_500  # the first day replaced, not doubled

    one = run("--date", str(DAY), "--to", f"parquet://{lake}", "--model", "m", "--model", "other")
    assert one.exit_code == 0 and "(kept 0 rows of other models)" in one.stdout
    assert lake_count(lake) == 1_500


def test_help_says_it_replaces_days_how_to_get_feedback_and_when_to_run_it():
    text = " ".join(CliRunner().invoke(cli, ["export-logs", "--help"]).output.split())
    assert "REPLACES those days" in text and "--through D+2" in text and "retention job" in text


@pytest.mark.parametrize("url, says", [
    ("parquet://relative/lake", "three slashes"),
    ("postgresql://localhost/db", "unsupported logs URL"),
])
def test_a_bad_lake_url_is_one_line(env, url, says):
    assert says in one_line(run("--date", str(DAY), "--to", url), 1)


def test_no_pyarrow_is_one_line_naming_the_extra(env, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    line = one_line(run("--date", str(DAY), "--to", f"parquet://{env / 'lake'}"), 1)
    assert "pip install 'rollout-pipeline[spark]'" in line
    assert not (env / "lake").exists()


def test_an_unreachable_database_is_one_line_exit_3_and_leaves_no_files(env, monkeypatch):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", "postgresql://nobody:secret-pw@127.0.0.1:1/nothing")
    line = one_line(run("--date", str(DAY), "--to", f"parquet://{env / 'lake'}"), 3)
    assert line.startswith("Error: cannot connect to the database: ") and "secret-pw" not in line
    assert not [f for _, _, names in os.walk(env / "lake") for f in names]


def test_a_database_never_initialised_is_one_line(env, monkeypatch):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", f"sqlite:///{env / 'empty.db'}")
    line = one_line(run("--date", str(DAY), "--to", f"parquet://{env / 'lake'}"), 1)
    assert "was never migrated: run `rollout-pipeline init-db`" in line, line  # as every command says it


@pytest.mark.parametrize("args, code, says", [
    (["--date", "2026-02-30"], 2, "is not a date"),
    (["--date", "yesterday"], 2, "is not a date"),
    (["--date", str(DAY), "--through", "2026-03-13"], 2, "is before --date"),
    (["--date", str(DAY), "--model", "bad name!"], 1, "invalid model name"),
    (["--date", str(DAY), "--batch-rows", "0"], 2, "--batch-rows"),
])
def test_bad_dates_names_and_sizes_are_refused_before_anything_is_written(env, args, code, says):
    result = run(*args, "--to", f"parquet://{env / 'lake'}")
    assert result.exit_code == code and says in result.output + result.stderr, result.output
    assert not (env / "lake").exists()
