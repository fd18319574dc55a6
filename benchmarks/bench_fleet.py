"""A night of a fleet (issue #16): the nightly schedule's path against the same analysis without Dagster.

Run from the repository root::

    python benchmarks/bench_fleet.py                       # or: make bench-fleet  (200 models, 4,000 rows each)
    python benchmarks/bench_fleet.py --fleet 20 --sample 3

What it measures (PostgreSQL on this machine, one day of ``--requests`` requests per
model, served + shadow pairs, a rollout started for every model):

1. **without Dagster**: one fresh process calls the layers the assets and checks call,
   model by model, on its own copy of the database: ``collect_day`` + ``save_summary``,
   the three checks the asset checks run (``day_checks.run_check``: two GX suites, the latency gates; +
   ``save_validation``), ``evaluate`` + ``save_evaluation``, ``make_decision``, and the
   review the decision asset attaches (plots and the HTML report). Per model: the
   process's wall time (interpreter, imports and all) divided by the models;
2. **the nightly schedule's path**: the real ``nightly_analysis`` schedule evaluated
   with ``dagster.build_schedule_context`` on a Dagster instance whose storage is
   PostgreSQL (as docker/dagster.yaml), then every RunRequest it returns executed the
   way the daemon's DefaultRunLauncher does: in a fresh interpreter that imports the
   code location and executes the run in-process (the job's executor), sequentially.
   When the schedule asks for more runs than ``--sample``, ``--sample`` of them (spread
   over the list) are executed and the rest extrapolated from their mean (the runs are
   alike: the same job on equally sized days). Per model: schedule evaluation plus the
   runs' process wall times, divided by the models.

It prints both per-model costs and their ratio (nightly / without Dagster).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_nightly import DAY, prepare, step_breakdown  # noqa: E402

DAGSTER_YAML = """\
telemetry:
  enabled: false
storage:
  postgres:
    postgres_db:
      scheme: postgresql+psycopg2
      hostname: {host}
      port: {port}
      username: {user}
      password: "{password}"
      db_name: {db}
"""


# --- children -------------------------------------------------------------------------------


def child_direct(models: list[str]) -> dict:
    """The day of every model through the layers alone (no Dagster), timed per model."""
    t0 = time.perf_counter()
    from rollout_pipeline.decision_requests import Nightly
    from rollout_pipeline.decisions import make_decision
    from rollout_pipeline.defs.assets import review_metadata
    from rollout_pipeline.domain.evaluate import evaluate
    from rollout_pipeline.store import evidence as evidence_store
    from rollout_pipeline.store import rollouts as repo
    from rollout_pipeline.store.engine import make_engine
    from rollout_pipeline.store.partitions import analyze_stale_day
    from rollout_pipeline.store.summary import collect_day
    from rollout_pipeline.day_checks import CHECKS, run_check

    imports = time.perf_counter() - t0
    engine = make_engine(os.environ["ROLLOUT_DATABASE_URL"])
    per_model, actions, parts = [], {}, {"collect": 0.0, "validate": 0.0, "evaluate": 0.0, "decide": 0.0,
                                         "review": 0.0}
    run_id = "bench-direct"
    for model in models:
        m0 = time.perf_counter()
        with engine.connect() as conn:
            rollout = repo.rollout_for_day(conn, model, DAY)
            stage = repo.state_before(conn, rollout, DAY).stage
        analyze_stale_day(engine, "prediction_log", DAY)
        with engine.connect() as conn:
            summary = collect_day(conn, model, DAY, rollout.stable_variant, rollout.candidate_variant,
                                  accuracy_day=rollout.policy.accuracy_day(DAY))
        with engine.begin() as conn:
            evidence_id = evidence_store.save_summary(conn, summary, rollout_id=rollout.id, stage=stage,
                                                      run_id=run_id)
        m1 = time.perf_counter()
        for name in CHECKS:  # one result per asset check, each stored on its own as the checks do
            suite = run_check(name, summary, stage, rollout.policy)
            with engine.begin() as conn:
                evidence_store.save_validation(conn, evidence_id, name, suite)
        m2 = time.perf_counter()
        evaluation = evaluate(summary, stage, rollout.policy)
        with engine.begin() as conn:
            evidence_store.save_evaluation(conn, evidence_id, evaluation)
        m3 = time.perf_counter()
        outcome = make_decision(engine, Nightly(model, DAY, "bench", run_id=run_id))
        m4 = time.perf_counter()
        review_metadata(outcome, write=True)
        m5 = time.perf_counter()
        for key, a, b in (("collect", m0, m1), ("validate", m1, m2), ("evaluate", m2, m3), ("decide", m3, m4),
                          ("review", m4, m5)):
            parts[key] += b - a
        per_model.append(m5 - m0)
        actions[outcome.record.action] = actions.get(outcome.record.action, 0) + 1
    engine.dispose()
    return {"import_s": imports, "per_model": per_model, "parts": parts, "actions": actions}


def child_run(request: dict) -> dict:
    """One run the schedule asked for, executed in this (fresh) process as the run worker does."""
    t0 = time.perf_counter()
    import dagster as dg

    from rollout_pipeline.defs.runner import job_now

    imports = time.perf_counter() - t0
    with dg.DagsterInstance.get() as instance:
        job = job_now(request["job"])
        result = job.execute_in_process(
            run_config=request["run_config"] or None, instance=instance, partition_key=request["partition_key"],
            tags=request["tags"], raise_on_error=False,
        )
        breakdown = step_breakdown(instance, result.run_id)
        decided = len([e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"
                       and e.asset_key.path == ["decision"]])
    return {"import_s": imports, "run_s": time.perf_counter() - t0 - imports, "success": result.success,
            "run_id": result.run_id, "steps": breakdown["steps"], "decisions": decided}


def run_child(args: list[str], env: dict) -> tuple[dict, float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[:2]} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


# --- the schedule ---------------------------------------------------------------------------


def evaluate_schedule(env: dict) -> tuple[list[dict], float]:
    """The real nightly schedule's RunRequests for the night after DAY, as the daemon resolves them."""
    import dagster as dg

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from rollout_pipeline.definitions import defs
        from rollout_pipeline.defs.resources import resources_from_environment

        repository = defs.get_repository_def()
        schedule = repository.get_schedule_def("nightly_analysis")
        job = repository.get_job(schedule.job_name)
        at = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(2), dt.UTC)
        t0 = time.perf_counter()
        with dg.DagsterInstance.get() as instance, dg.build_schedule_context(
                instance=instance, scheduled_execution_time=at, repository_def=repository,
                resources=resources_from_environment()) as context:
            result = schedule.evaluate_tick(context)
            requests = []
            for r in result.run_requests or []:
                if r.partition_key is not None:  # the daemon adds the partition's tags before creating the run
                    r = r.with_resolved_tags_and_config(job, [], instance)
                key = r.partition_key
                requests.append({"job": schedule.job_name, "partition_key": str(key) if key is not None else None,
                                 "tags": dict(r.tags), "run_config": r.run_config})
        seconds = time.perf_counter() - t0
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return requests, seconds


def spread(items: list, k: int) -> list:
    """``k`` items spread evenly over ``items`` (all when there are no more than ``k``)."""
    if len(items) <= k:
        return list(items)
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)] if k > 1 else [items[0]]


# --- main -----------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--fleet", type=int, default=200, help="models with a rollout")
    parser.add_argument("--requests", type=int, default=2_000, help="requests per model-day (2 rows each)")
    parser.add_argument("--sample", type=int, default=5,
                        help="runs executed when the schedule asks for more (the rest extrapolated)")
    parser.add_argument("--child", choices=["direct", "run"], help=argparse.SUPPRESS)
    parser.add_argument("--child-arg", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        out = child_direct(args.child_arg.split(",")) if args.child == "direct" else child_run(
            json.loads(args.child_arg))
        print(json.dumps(out, default=str))
        return 0

    import sqlalchemy as sa

    from rollout_pipeline.store.engine import redact
    from rollout_pipeline_tests.postgres import create_database, drop_database, postgres_server

    command = shlex.join([sys.executable, *(sys.argv if argv is None else [sys.argv[0], *argv])])
    models = [f"m{i:03d}" for i in range(1, args.fleet + 1)]
    load_before = os.getloadavg()
    created = []
    with postgres_server() as server, tempfile.TemporaryDirectory(prefix="bench-fleet-") as home:
        try:
            url = create_database(server, prefix="rp_bench_fleet")
            created.append(url)
            print(f"database {redact(url)}: {len(models)} models x {2 * args.requests:,} rows ...", flush=True)
            data = prepare(url, models, args.requests)
            direct_url = create_database(server, template=sa.make_url(url).database, prefix="rp_bench_fleet_direct")
            created.append(direct_url)
            dagster_url = sa.make_url(create_database(server, prefix="rp_bench_fleet_dagster"))
            created.append(dagster_url.render_as_string(hide_password=False))
            Path(home, "dagster.yaml").write_text(DAGSTER_YAML.format(
                host=dagster_url.host, port=dagster_url.port or 5432, user=dagster_url.username,
                password=dagster_url.password or "", db=dagster_url.database))
            env = {"ROLLOUT_DATABASE_URL": url, "DAGSTER_HOME": home, "ROLLOUT_STATE_DIR": home,
                   "ROLLOUT_LOG_LEVEL": "WARNING"}

            print(f"without Dagster: {len(models)} models in one fresh process ...", flush=True)
            direct, direct_wall = run_child(["--child", "direct", "--child-arg", ",".join(models)],
                                            {**env, "ROLLOUT_DATABASE_URL": direct_url})

            print("the nightly schedule: evaluating it ...", flush=True)
            requests, schedule_s = evaluate_schedule(env)
            chosen = spread(requests, args.sample)
            runs = []
            for i, request in enumerate(chosen, 1):
                print(f"run {i}/{len(chosen)} of the {len(requests)} requested, in a fresh process ...", flush=True)
                out, wall = run_child(["--child", "run", "--child-arg", json.dumps(request)], env)
                out["process_s"] = wall
                runs.append(out)
        finally:
            for made in created:
                try:
                    drop_database(server, made)
                except Exception as exc:
                    print(f"could not drop {redact(made)}: {exc}; drop it by hand", file=sys.stderr)

    report(command, data, len(models), args.requests, direct, direct_wall, requests, schedule_s, runs, load_before)
    return 0


def report(command, data, n, requests_per_model, direct, direct_wall, requests, schedule_s, runs,
           load_before) -> None:
    print()
    print("=== a night of the fleet ===")
    print(f"command:  {command}")
    print(f"machine:  {os.cpu_count()} cores, Python {platform.python_version()}; load average "
          f"{'/'.join(f'{x:.2f}' for x in load_before)} before, {'/'.join(f'{x:.2f}' for x in os.getloadavg())} after")
    print(f"data:     {n} models x {2 * requests_per_model:,} rows (served + shadow) on {DAY}, "
          f"written in {data['seconds']:.1f} s")
    print()
    loop = sum(direct["per_model"])
    direct_per = direct_wall / n
    print(f"(1) without Dagster, one fresh process: {direct_wall:.1f} s wall "
          f"(imports {direct['import_s']:.1f} s, the {n} models {loop:.1f} s)")
    parts = ", ".join(f"{k} {v / n:.3f} s" for k, v in direct["parts"].items())
    print(f"      per model: {direct_per:.3f} s (process wall / models); in the loop {parts}")
    print(f"      decisions: {direct['actions']}")
    print()
    print(f"(2) the nightly schedule: evaluated in {schedule_s:.2f} s, {len(requests)} run(s) requested")
    partitions = [r["tags"].get("dagster/partition") or
                  f"{r['tags'].get('dagster/asset_partition_range_start')} .. "
                  f"{r['tags'].get('dagster/asset_partition_range_end')}" for r in requests[:3]]
    print(f"      first requests: {'; '.join(partitions)}")
    for r in runs:
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in r["steps"].items())
        print(f"      a run in a fresh process: {r['process_s']:.1f} s (imports {r['import_s']:.1f} s, run "
              f"{r['run_s']:.1f} s; success {r['success']}; {r['decisions']} decision materialization(s)); "
              f"steps: {steps}")
    mean = sum(r["process_s"] for r in runs) / len(runs)
    total = schedule_s + mean * len(requests)
    how = ("all executed" if len(runs) == len(requests)
           else f"{len(runs)} of {len(requests)} executed, the rest extrapolated from their mean {mean:.2f} s")
    nightly_per = total / n
    print(f"      the night: {total:.1f} s ({how}); per model: {nightly_per:.3f} s")
    print()
    print(f"per model: nightly {nightly_per:.3f} s, without Dagster {direct_per:.3f} s; "
          f"ratio {nightly_per / direct_per:.2f} (target <= 2)")


if __name__ == "__main__":
    sys.exit(main())
