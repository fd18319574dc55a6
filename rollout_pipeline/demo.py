"""`rollout-pipeline demo`: two rollouts, day by day, on the embedded default.

A real regression model and a better candidate go from shadow through each
canary step to production; a second candidate that answers too slowly is rolled
back. Traffic comes from the simulator, through the real Router, into the
embedded SQLite store; each day runs the same Dagster job as the schedule.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from pathlib import Path

import click

from rollout_pipeline.config import ENV_DATABASE_URL, ENV_STATE_DIR, embedded_database_url, state_dir

# (model, stable, candidate, scenario, simulated model kind: see simulate/models.py)
GOOD = ("diabetes", "v1", "v2", "healthy", "diabetes")
BAD = ("cancer", "v1", "v2", "slow", "cancer")


def demo_state() -> Path:
    """The demo's own folder inside the state folder (wiped at each demo)."""
    return state_dir() / "demo"


def run_demo(days: int = 6, requests: int = 8000, echo=click.echo) -> list[dict]:
    """Run both demo rollouts; returns every day's decision (the CLI's JSON objects)."""
    from rollout_pipeline.runs import decide_day
    from rollout_pipeline.simulate.day import simulate_day
    from rollout_pipeline.store.engine import make_engine
    from rollout_pipeline.store.migrate import upgrade
    from rollout_pipeline.store.rollouts import active_rollout, start_rollout
    from rollout_pipeline.domain.policy import Policy

    folder = demo_state()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    os.environ[ENV_STATE_DIR] = str(folder)
    os.environ[ENV_DATABASE_URL] = embedded_database_url(folder)
    os.environ["DAGSTER_HOME"] = str(folder / "dagster")
    engine = make_engine(os.environ[ENV_DATABASE_URL])
    upgrade(engine)
    echo(f"demo state: {folder} (SQLite log store + Dagster storage; no server needed)")

    first = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days)
    outcomes = []
    for model, stable, candidate, scenario, kind in (GOOD, BAD):
        with engine.begin() as conn:
            start_rollout(conn, model, stable, candidate, Policy(), actor="demo")
        echo(f"\n== {model}: {candidate} (scenario {scenario!r}) rolls out over {stable} ==")
        for k in range(days):
            day = first + dt.timedelta(days=k)
            with engine.connect() as conn:
                if active_rollout(conn, model) is None:
                    break
            t0 = time.perf_counter()
            sim = simulate_day(engine, model, day, requests, scenario, seed=k, kind=kind,
                               spill_dir=folder / "spill")
            sim_s = time.perf_counter() - t0
            out = decide_day(model, day, None, None, dry_run=False, actor="demo")
            outcomes.append(out)
            f, t = out["from"], out["to"]
            echo(f"{day} {model}: {out['action'].upper():8} {f['stage']} {f['canary_percent']}% -> "
                 f"{t['stage']} {t['canary_percent']}%   ({sim.prediction_rows} log rows simulated in {sim_s:.1f} s, "
                 f"analysed in {out['seconds']:.1f} s)")
            for reason in out["reasons"][:6]:
                echo(f"      - {reason}")
    engine.dispose()
    _echo_review_hints(echo, folder, outcomes)
    return outcomes


def _echo_review_hints(echo, folder: Path, outcomes: list[dict]) -> None:
    """How to open the review of what the demo decided, and what to look at."""
    from urllib.parse import quote

    last = next((o for o in reversed(outcomes) if o["model"] == GOOD[0]), None)
    day = last["date"] if last else "<day>"
    env = f"ROLLOUT_STATE_DIR={folder}"
    echo("\nThe morning review, in the Dagster UI:  make ui   then open http://127.0.0.1:3000  (Ctrl-C stops it)")
    echo(f"  1. The decision of {GOOD[0]} on {day}:"
         f" http://127.0.0.1:3000/assets/decision?view=partitions&partition={quote(f'{day}|{GOOD[0]}')}")
    echo("     (or Catalog > decision > Partitions, then a day and a model): the action and why, stage and share")
    echo("     before -> after, stable vs candidate with each metric's verdict and the judge score, the validation")
    echo("     results, the extreme predictions with their correlation ids; `plots` > Show Markdown opens the plots.")
    echo(f"  2. {BAD[0]}: the slow candidate's rollback, and its p99 against the limit in the reasons.")
    echo("  3. Catalog > day_summary > Checks: the day's validation suites; Runs: one daily_analysis run per day.")
    echo(f"  The same as an HTML page: {folder / 'reports' / f'{GOOD[0]}-{day}.html'}")
    echo(f"  From a terminal:  {env} {_command()} status | history --model {GOOD[0]} | report --model {GOOD[0]}")


def _command() -> str:
    """How to call the CLI from here: its name when it is on PATH, else its path (e.g. .venv/bin/rollout-pipeline)."""
    import shutil
    import sys

    if shutil.which("rollout-pipeline"):
        return "rollout-pipeline"
    script = Path(sys.executable).parent / "rollout-pipeline"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)
