"""`rollout-pipeline demo`: three rollouts, day by day, on the embedded default.

A real regression model and a better candidate go from shadow through each
canary step to production; a second candidate that answers too slowly is rolled
back; a first model goes to production over a constant baseline (the
`first-model` preset). Decisions depend on fixed seeds, never on the date. Traffic comes from the simulator, through the real Router, into the
embedded SQLite store; each day runs the same Dagster job as the schedule.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import click

from rollout_pipeline.config import ENV_DAGSTER_HOME, ENV_DATABASE_URL, ENV_STATE_DIR, embedded_database_url, state_dir
from rollout_pipeline.domain.policy import PRESETS, Policy, parse_policy

@dataclass(frozen=True)
class DemoRollout:
    """One rollout of the demo: the model, its two variants, the simulated day, and the policy it starts with."""

    model: str
    stable: str
    candidate: str
    scenario: str
    kind: str  # the simulated model pair: see simulate/models.py
    preset: str = "default"
    policy: tuple[tuple[str, object], ...] = ()


# The seed's steps, 1% -> 20% -> 50% -> production, one a night: at 16,000 requests a day the 1% step serves
# ~160 requests, and the candidate answers the rest in shadow (shadow_candidate_during_canary), so its latency,
# errors and outputs are judged pair by pair on the whole day at every step (docs/policy.md, "Pacing").
GOOD = DemoRollout("diabetes", "v1", "v2", "healthy", "diabetes")
BAD = DemoRollout("cancer", "v1", "v2", "slow", "cancer")
# A first model: a constant (the training mean) serves today; the candidate must beat it on actual outcomes.
FIRST = DemoRollout("diabetes-first", "baseline", "v1", "healthy", "diabetes-first", preset="first-model",
                    policy=(("prediction_bounds", (0.0, 400.0)),))
ROLLOUTS = (GOOD, BAD, FIRST)
DEMO_REQUESTS = 16_000
DEMO_SEED = 20261201  # traffic depends on (seed, model, day index) only: the same decisions on any date


def demo_state() -> Path:
    """The demo's own folder inside the state folder (wiped at each demo)."""
    return state_dir() / "demo"


def demo_policy(rollout: DemoRollout) -> Policy:
    """The policy a demo rollout starts with: its preset, with the demo's fields over it."""
    return parse_policy({**PRESETS[rollout.preset], **dict(rollout.policy)}, f"demo {rollout.model}")


def run_demo(days: int = 6, requests: int = DEMO_REQUESTS, echo=click.echo, log_level: str = "INFO") -> list[dict]:
    """Run the demo's rollouts day by day; returns every day's decision (the CLI's JSON objects).

    Traffic depends on fixed seeds only (never the date), so the decisions are the
    same on any day the demo runs; the dates shown end yesterday.
    """
    # Dagster and the simulator's models take seconds to import: only when the demo runs.
    from rollout_pipeline.defs.runner import decide_day
    from rollout_pipeline.simulate.day import simulate_day
    from rollout_pipeline.store.engine import make_engine
    from rollout_pipeline.store.migrate import upgrade
    from rollout_pipeline.store.rollouts import active_rollout, start_rollout

    folder = demo_state()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    os.environ[ENV_STATE_DIR] = str(folder)
    database_url = embedded_database_url(folder)
    # The runs below read their settings from the environment (config.py), as the CLI's would.
    os.environ[ENV_DATABASE_URL] = database_url
    os.environ[ENV_DAGSTER_HOME] = str(folder / "dagster")
    engine = make_engine(database_url)
    upgrade(engine)
    echo(f"demo state: {folder} (SQLite log store + Dagster storage; no server needed)")

    first = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days)
    outcomes = []
    for r in ROLLOUTS:
        policy = demo_policy(r)
        with engine.begin() as conn:
            start_rollout(conn, r.model, r.stable, r.candidate, policy, actor="demo")
        what = "a first model over its baseline" if r.preset == "first-model" else f"scenario {r.scenario!r}"
        echo(f"\n== {r.model}: {r.candidate} ({what}) rolls out over {r.stable}; "
             f"steps {', '.join(f'{s}%' for s in policy.canary_steps)} ==")
        for k in range(days):
            day = first + dt.timedelta(days=k)
            with engine.connect() as conn:
                if active_rollout(conn, r.model) is None:
                    break
            t0 = time.perf_counter()
            sim = simulate_day(engine, r.model, day, requests, r.scenario, seed=DEMO_SEED, day_index=k, kind=r.kind,
                               spill_dir=folder / "spill")
            sim_s = time.perf_counter() - t0
            out = decide_day(r.model, day, None, None, dry_run=False, actor="demo", log_level=log_level)
            outcomes.append(out)
            f, t = out["from"], out["to"]
            echo(f"{day} {r.model}: {out['action'].upper():8} {f['stage']} {f['canary_percent']}% -> "
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

    last = next((o for o in reversed(outcomes) if o["model"] == GOOD.model), None)
    day = last["date"] if last else "<day>"
    env = f"ROLLOUT_STATE_DIR={folder}"
    echo("\nThe morning review, in the Dagster UI:  make ui   then open http://127.0.0.1:3000  (Ctrl-C stops it)")
    echo(f"  1. The decision of {GOOD.model} on {day}:"
         f" http://127.0.0.1:3000/assets/decision?view=partitions&partition={quote(f'{day}|{GOOD.model}')}")
    echo("     (or Catalog > decision > Partitions, then a day and a model): the action and why, stage and share")
    echo("     before -> after, one metrics table (each gate's verdict, both numbers and what they count), the")
    echo("     validation, the plots inline, the extreme predictions with their correlation ids.")
    echo(f"  2. {BAD.model}: the slow candidate's rollback, and its p99 against the limit in the reasons.")
    echo(f"  3. {FIRST.model}: a first model against a constant baseline, judged on actual outcomes.")
    echo("  4. Catalog > day_summary > Checks: the day's validation suites; Runs: one daily_analysis run per day.")
    echo("  5. Jobs > force_decision > Launchpad: force any past day (model, date, action, reason).")
    echo(f"  The same as an HTML page: http://127.0.0.1:3000/reports/{GOOD.model}-{day}.html "
         f"({folder / 'reports' / f'{GOOD.model}-{day}.html'})")
    echo(f"  From a terminal:  {env} {_command()} status | history --model {GOOD.model} | report --model {GOOD.model}")


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
