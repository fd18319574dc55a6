"""What each path imports (issue #23): a fresh interpreter per case, since a test process has imported everything.

Module lists, not timers: the seconds are measured by benchmarks/bench_small_day.py.
"""

import importlib.util
import json
import subprocess
import sys

import pytest

_LOADED = "import json, sys; print(json.dumps(sorted(m for m in {mods} if m in sys.modules)))"


def _loaded_after(code: str, mods: tuple[str, ...]) -> list[str]:
    probe = code + "\n" + _LOADED.format(mods=repr(mods))
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", probe], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_help_imports_neither_dagster_nor_great_expectations():
    code = ("from click.testing import CliRunner\nfrom rollout_pipeline.cli import cli\n"
            "assert CliRunner().invoke(cli, ['--help']).exit_code == 0")
    heavy = ("dagster", "great_expectations", "pandas", "scipy", "matplotlib", "pyspark")
    assert _loaded_after(code, heavy) == []


def test_the_judge_imports_scipy_only_when_a_metric_is_judged():
    """``status``, ``report`` and ``history`` reach the judge's module through the decision service and the
    review, and never judge: SciPy's stats (~1 s to import) waits for the first metric."""
    reach = "import rollout_pipeline.domain.evaluate, rollout_pipeline.review.content, rollout_pipeline.decisions"
    assert _loaded_after(reach, ("scipy", "scipy.stats")) == []
    judge = (reach + "\nfrom rollout_pipeline.domain.judge import classify_metric\n"
             "assert classify_metric([1.0, 2.0, 3.0], [1.5, 2.5, 3.5]).p_value is not None")
    assert _loaded_after(judge, ("scipy.stats",)) == ["scipy.stats"]


@pytest.mark.skipif(importlib.util.find_spec("pyspark") is None, reason="pyspark is not installed: nothing to keep out")
def test_the_validation_suites_load_great_expectations_without_pyspark():
    """GX imports pyspark whenever it is installed; the suites never give it a Spark frame, so a database-path
    process keeps pyspark out -- and the lake path can still import it afterwards."""
    code = ("from rollout_pipeline.validation.suites import gx_context\ngx, ctx = gx_context()\n"
            "import sys\nassert 'pyspark' not in sys.modules and 'matplotlib' not in sys.modules\n"
            "import pyspark.sql")
    assert _loaded_after(code, ("great_expectations", "pyspark", "pyspark.sql")) == [
        "great_expectations", "pyspark", "pyspark.sql"]
