"""Where the time of a nightly run goes: imports, Dagster, Great Expectations, the executor, the steps.

Run from the repository root::

    python benchmarks/bench_nightly.py                      # 20 models, 20,000 requests (40,000 rows) each
    python benchmarks/bench_nightly.py --models 5 --fresh-runs 1 --multiprocess-runs 0

What it measures (one throwaway PostgreSQL database, one day of ``--requests``
requests per model, served + shadow pairs, a rollout started for every model):

1. imports: ``python -X importtime`` of ``rollout_pipeline.definitions`` plus Great
   Expectations, cumulative time per top-level package, and the plain wall time of
   the same imports in a fresh interpreter;
2. one process, the CLI's path: ``rollout_pipeline.defs.runner.run_day`` for every
   model in turn (in-process executor; Great Expectations is imported once), each
   run's wall time, and for the first and a warm run the steps' times from Dagster's
   event log (the rest of the wall time is Dagster's own work: run creation, event
   storage, resources, checks' bookkeeping);
3. the schedule's path: the daemon launches each run of the nightly schedule in a
   fresh process (DefaultRunLauncher), so every model pays interpreter start,
   imports and Great Expectations again; ``--fresh-runs`` runs of ``run_day`` in a
   fresh interpreter each stand in for it and are extrapolated to all models;
4. the multiprocess executor (``dagster asset materialize`` without run config
   uses it): ``--multiprocess-runs`` runs of one model's day through the CLI with it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DAY = dt.date(2026, 11, 1)  # in the past: Dagster's daily partitions end today


# --- imports --------------------------------------------------------------------------------

IMPORTS = "import rollout_pipeline.definitions, great_expectations"
PACKAGES = ("sqlalchemy", "pandas", "scipy", "dagster", "great_expectations", "rollout_pipeline.definitions")


def _wall(code: str, repeat: int = 3) -> float:
    """Best wall time of a fresh interpreter running ``code``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def import_profile() -> dict:
    """Wall time of importing each heavy package alone in a fresh interpreter, and of everything a run imports.

    ``-X importtime`` of the whole set is parsed too: the self time of every module,
    summed by top-level package, says whose code the time is spent in (the
    instrumentation inflates it, so it is reported as shares).
    """
    bare = _wall("pass")
    alone = {name: _wall(f"import {name}") - bare for name in PACKAGES}
    everything = _wall(IMPORTS) - bare
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", IMPORTS], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    self_by_root: dict[str, int] = defaultdict(int)
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s*(\S+)", line)
        if m:
            self_by_root[m.group(3).split(".")[0]] += int(m.group(1))
    total = sum(self_by_root.values()) or 1
    shares = {k: v / total for k, v in sorted(self_by_root.items(), key=lambda kv: -kv[1])}
    return {"bare_s": bare, "alone_s": alone, "everything_s": everything, "self_share": shares}


# --- data -----------------------------------------------------------------------------------


def prepare(url: str, models: list[str], requests: int) -> dict:
    import numpy as np

    from bench_analysis import generate_chunk
    from rollout_pipeline.domain.policy import Policy
    from rollout_pipeline.store import logs
    from rollout_pipeline.store import rollouts as repo
    from rollout_pipeline.store.engine import make_engine
    from rollout_pipeline.store.migrate import upgrade
    from rollout_pipeline.store.partitions import ensure_day_partitions

    engine = make_engine(url)
    upgrade(engine)
    ensure_day_partitions(engine, [DAY])
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    written = 0
    for model in models:
        rows = [(r[0], r[1], model, *r[3:]) for r in generate_chunk(rng, 0, requests, requests, DAY)]
        written += logs.write_predictions(engine, rows)
        with engine.begin() as conn:
            repo.start_rollout(conn, model, "v1", "v2", Policy(), actor="bench")
    seconds = time.perf_counter() - t0
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE prediction_log")
    engine.dispose()
    return {"rows": written, "seconds": seconds}


# --- children -------------------------------------------------------------------------------


def step_breakdown(instance, run_id: str) -> dict:
    """Seconds per step (STEP_START -> STEP_SUCCESS/FAILURE) and of the run (RUN_START -> RUN_SUCCESS)."""
    starts, steps, run = {}, {}, {}
    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is None:
            continue
        kind = ev.event_type_value
        if kind == "STEP_START":
            starts[entry.step_key] = entry.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and entry.step_key in starts:
            steps[entry.step_key] = entry.timestamp - starts[entry.step_key]
        elif kind in ("RUN_START", "PIPELINE_START"):
            run["start"] = entry.timestamp
        elif kind in ("RUN_SUCCESS", "PIPELINE_SUCCESS", "RUN_FAILURE", "PIPELINE_FAILURE"):
            run["end"] = entry.timestamp
    return {"steps": steps, "run_s": run.get("end", 0) - run.get("start", 0)}


def child_inprocess(models: list[str]) -> dict:
    t0 = time.perf_counter()
    import dagster as dg

    from rollout_pipeline.defs.runner import ensure_dagster_home, run_day

    t_import = time.perf_counter() - t0
    ensure_dagster_home()
    runs = []
    with dg.DagsterInstance.get() as instance:
        for i, model in enumerate(models):
            r = run_day(model, DAY, actor="bench", instance=instance)
            item = {"model": model, "seconds": r.seconds, "action": r.result["action"]}
            if i in (0, min(2, len(models) - 1)):
                item["breakdown"] = step_breakdown(instance, r.run_id)
            runs.append(item)
    return {"import_s": t_import, "runs": runs}


def child_one(model: str) -> dict:
    t0 = time.perf_counter()
    from rollout_pipeline.defs.runner import run_day

    t_import = time.perf_counter() - t0
    r = run_day(model, DAY, actor="bench")
    return {"import_s": t_import, "run_s": r.seconds, "action": r.result["action"]}


def run_child(args: list[str], env: dict) -> tuple[dict, float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def multiprocess_run(model: str, env: dict) -> float:
    """One model's day by ``dagster asset materialize`` with the multiprocess executor."""
    select = "day_summary,judgement,decision"
    cmd = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "rollout_pipeline.definitions",
           "--select", select, "--partition", f"{DAY.isoformat()}|{model}",
           "--config-json", json.dumps({"execution": {"config": {"multiprocess": {}}}})]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"dagster asset materialize failed:\n{proc.stderr[-3000:]}")
    return wall


# --- main -----------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--models", type=int, default=20, help="models with a rollout, one run each")
    parser.add_argument("--requests", type=int, default=20_000, help="requests per model-day (2 rows each)")
    parser.add_argument("--fresh-runs", type=int, default=3, help="runs in a fresh interpreter each (0: skip)")
    parser.add_argument("--multiprocess-runs", type=int, default=1,
                        help="runs through `dagster asset materialize` with the multiprocess executor (0: skip)")
    parser.add_argument("--child", choices=["inprocess", "one"], help=argparse.SUPPRESS)
    parser.add_argument("--child-models", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        models = args.child_models.split(",")
        out = child_inprocess(models) if args.child == "inprocess" else child_one(models[0])
        print(json.dumps(out, default=str))
        return 0

    from rollout_pipeline.store.engine import redact
    from rollout_pipeline_tests.postgres import create_database, drop_database, postgres_server

    command = shlex.join([sys.executable, *(sys.argv if argv is None else [sys.argv[0], *argv])])
    models = [f"m{i:02d}" for i in range(1, args.models + 1)]
    load_before = os.getloadavg()
    print("import profile ...", flush=True)
    imports = import_profile()
    with postgres_server() as server, tempfile.TemporaryDirectory(prefix="bench-nightly-") as home:
        url = create_database(server, prefix="rp_bench_nightly")
        try:
            print(f"database {redact(url)}: {len(models)} models x {2 * args.requests:,} rows ...", flush=True)
            data = prepare(url, models, args.requests)
            env = {"ROLLOUT_DATABASE_URL": url, "DAGSTER_HOME": home, "ROLLOUT_STATE_DIR": home,
                   "ROLLOUT_LOG_LEVEL": "WARNING"}
            print(f"{len(models)} runs in one process (run_day, in-process executor) ...", flush=True)
            inproc, inproc_wall = run_child(["--child", "inprocess", "--child-models", ",".join(models)], env)
            fresh = []
            for model in models[:args.fresh_runs]:
                print(f"fresh-process run of {model} ...", flush=True)
                out, wall = run_child(["--child", "one", "--child-models", model], env)
                out["process_s"] = wall
                fresh.append(out)
            multi = []
            for model in models[:args.multiprocess_runs]:
                print(f"multiprocess-executor run of {model} (dagster asset materialize) ...", flush=True)
                multi.append(multiprocess_run(model, env))
        finally:
            try:
                drop_database(server, url)
            except Exception as exc:
                print(f"could not drop {redact(url)}: {exc}; drop it by hand", file=sys.stderr)

    report(command, imports, data, inproc, inproc_wall, fresh, multi, len(models), args.requests, load_before)
    return 0


def report(command, imports, data, inproc, inproc_wall, fresh, multi, n_models, requests, load_before) -> None:
    print()
    print("=== nightly run profile ===")
    print(f"command:  {command}")
    print(f"machine:  {os.cpu_count()} cores, Python {platform.python_version()}; load average "
          f"{'/'.join(f'{x:.2f}' for x in load_before)} before, {'/'.join(f'{x:.2f}' for x in os.getloadavg())} after")
    print(f"data:     {n_models} models x {2 * requests:,} rows (served + shadow) on {DAY}, "
          f"written in {data['seconds']:.1f} s")
    print()
    print(f"(1) imports, each alone in a fresh interpreter (bare interpreter {imports['bare_s']:.2f} s subtracted):")
    for name, sec in imports["alone_s"].items():
        print(f"      import {name:<30} {sec:5.2f} s")
    print(f"      `{IMPORTS}`: {imports['everything_s']:.2f} s in all")
    top = ", ".join(f"{k} {v:.0%}" for k, v in list(imports["self_share"].items())[:8])
    print(f"      whose modules the time is spent in (-X importtime self time): {top}")
    runs = inproc["runs"]
    secs = [r["seconds"] for r in runs]
    warm = secs[1:] or secs
    print()
    print(f"(2) one process, {n_models} models in turn (the CLI's path; in-process executor): "
          f"{inproc_wall:.1f} s wall for the process")
    print(f"      imports (dagster + rollout_pipeline): {inproc['import_s']:.2f} s")
    print(f"      first run {secs[0]:.2f} s (Great Expectations imported and its context created here), "
          f"then {sum(warm) / len(warm):.2f} s per model (min {min(warm):.2f}, max {max(warm):.2f})")
    print(f"      all {n_models} runs: {sum(secs):.1f} s; decisions: "
          f"{', '.join(sorted({r['action'] for r in runs}))}")
    for r in runs:
        if "breakdown" not in r:
            continue
        b = r["breakdown"]
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in b["steps"].items())
        inside = sum(b["steps"].values())
        print(f"      {r['model']} ({r['seconds']:.2f} s): steps {steps}; in steps {inside:.2f} s, "
              f"run start->end {b['run_s']:.2f} s, outside the steps (Dagster: run creation, event log, "
              f"check and asset bookkeeping) {r['seconds'] - inside:.2f} s")
    if fresh:
        per = [f["process_s"] for f in fresh]
        mean = sum(per) / len(per)
        print()
        print(f"(3) a fresh process per run (what the daemon's DefaultRunLauncher does for each scheduled run): "
              f"{', '.join(f'{x:.1f}' for x in per)} s per model")
        for f in fresh:
            print(f"      imports {f['import_s']:.2f} s + run_day {f['run_s']:.2f} s (+ interpreter, "
                  f"{f['process_s'] - f['import_s'] - f['run_s']:.2f} s)")
        print(f"      extrapolated to {n_models} models run one after another: ~{mean * n_models:.0f} s, against "
              f"{sum(secs) + inproc['import_s']:.0f} s in one process")
    if multi:
        print()
        print(f"(4) multiprocess executor (`dagster asset materialize`, one process per step): "
              f"{', '.join(f'{x:.1f}' for x in multi)} s for one model's day")


if __name__ == "__main__":
    sys.exit(main())
