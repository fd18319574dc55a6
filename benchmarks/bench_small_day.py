"""A small day's decision (issue #23): ``decide --dry-run`` of a 4,000-request day against ``--help``.

Run from the repository root::

    python benchmarks/bench_small_day.py                    # or: make bench-small-day  (~2 min)
    python benchmarks/bench_small_day.py --repeat 7 --requests 4000

What it measures, on the embedded default (SQLite, a fresh state folder, Dagster's own
SQLite storage in it):

1. **the whole process**, as a person at a terminal runs it: ``rollout-pipeline decide
   --model diabetes --date 2026-11-01 --dry-run`` on a day of ``--requests`` requests
   (served + shadow: twice as many rows) written by ``rollout-pipeline simulate``,
   against ``rollout-pipeline --help``, alternately, ``--repeat`` times each after one
   warm-up of each. Per run: wall time, CPU time (user + sys of the process and the
   processes it waited for, from ``wait4``) and peak RSS. Medians, and the ratio
   decide / help of the same run;
2. **where a decision's seconds go**: one more ``decide --dry-run`` in a fresh interpreter
   that does the same work in steps, each timed (wall and CPU): the CLI's import,
   Dagster's import, the definitions' (pandas, SQLAlchemy, SciPy, our code), Great
   Expectations' import and context (which the first check step pays otherwise), then
   the command itself, split with Dagster's event log into the time before the run,
   each step and the run's own bookkeeping. The garbage collector's time is counted
   apart (``gc.callbacks``), and the interpreter's start is ``python -c pass``;
3. **the same analysis without Dagster**, ``--repeat`` times in a fresh process each: the layers the
   assets and checks call (``collect_day``, the three suites of ``validate_day``, ``evaluate``),
   with the CLI's garbage-collector settings: what a dry run that did not go through Dagster would
   cost at least (the decision itself, the state machine on the stored state, is ~0.1 s more).

CPU time is what the target is set in (load moves it less than wall time); the load
average before and after is printed with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import io
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAY = "2026-11-01"
MODEL = "diabetes"
# What the children must not inherit: they run on the benchmark's own embedded state.
CLEARED = ("ROLLOUT_DATABASE_URL", "ROLLOUT_LOGS_URL", "ROLLOUT_SPARK_MASTER", "DAGSTER_HOME", "ROLLOUT_LOG_LEVEL",
           "ROLLOUT_NOTIFY_WEBHOOK", "ROLLOUT_NOTIFY_SLACK_WEBHOOK")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "rollout-pipeline"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "rollout_pipeline.cli"]


def timed(cmd: list[str], env: dict) -> dict:
    """Run ``cmd`` to the end; its wall time, CPU time (itself and what it waited for) and peak RSS."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    # communicate() reaped the child; its rusage (children included) is in RUSAGE_CHILDREN's increase.
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {proc.returncode}:\n{err.decode()[-3000:]}")
    return {"wall": wall, "stdout": out.decode(), "stderr": err.decode()}


def measured(cmd: list[str], env: dict) -> dict:
    """``timed`` plus the CPU and peak RSS of that one child (RUSAGE_CHILDREN before and after)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = timed(cmd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out["rss_mb"] = after.ru_maxrss / 1024  # the largest child so far: monotone, read as "at most"
    return out


# --- the per-phase child --------------------------------------------------------------------


def child_phases() -> dict:
    """One ``decide --dry-run`` in this interpreter, in timed steps (see the module docstring)."""
    gc_time = [0.0, 0.0]

    def on_gc(phase, _info):
        if phase == "start":
            gc_time[1] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_time[1]

    gc.callbacks.append(on_gc)
    phases = []
    last = [time.perf_counter(), _cpu()]

    def mark(name: str) -> None:
        now, cpu = time.perf_counter(), _cpu()
        phases.append({"phase": name, "wall": now - last[0], "cpu": cpu - last[1]})
        last[0], last[1] = now, cpu

    import rollout_pipeline.cli as cli

    mark("import the CLI (click, our cli/ package)")
    cli.quiet_dagster()
    mark("import Dagster")
    import rollout_pipeline.defs.runner  # noqa: F401 - the definitions: pandas, SQLAlchemy, SciPy, our code

    mark("import the definitions (pandas, SQLAlchemy, SciPy, our code)")
    from rollout_pipeline.validation.suites import gx_context

    gx_context()
    mark("import Great Expectations + its context")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        cli.cli.main(["decide", "--model", MODEL, "--date", DAY, "--dry-run", "--json"], standalone_mode=False)
    mark("decide --dry-run (the command, imports done)")
    out = json.loads(buffer.getvalue())
    import dagster as dg

    from rollout_pipeline.defs.runner import ensure_dagster_home

    ensure_dagster_home()
    from bench_nightly import step_breakdown  # beside this script; its imports are the standard library's

    with dg.DagsterInstance.get() as instance:
        timing = step_breakdown(instance, out["run_id"])
    steps = timing["steps"]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"phases": phases, "steps": steps, "run_s": timing["run_s"],
            "run_day_s": out["seconds"], "action": out["action"], "gc_s": gc_time[0],
            "children_cpu": children.ru_utime + children.ru_stime, "cpu_total": _cpu(),
            "modules": len(sys.modules),
            "loaded": sorted(m for m in ("pyspark", "matplotlib", "scipy", "great_expectations", "altair")
                             if m in sys.modules)}


def child_layers() -> dict:
    """The day's analysis through the layers alone (no Dagster), with the CLI's collector settings."""
    from rollout_pipeline.cli import collect_less_often

    collect_less_often()
    t0, c0 = time.perf_counter(), _cpu()
    from rollout_pipeline.config import load_settings
    from rollout_pipeline.domain.evaluate import evaluate
    from rollout_pipeline.store import rollouts as repo
    from rollout_pipeline.store.engine import make_engine
    from rollout_pipeline.store.summary import collect_day
    from rollout_pipeline.validation.suites import gx_context, validate_day

    c_imports = _cpu() - c0
    gx_context()
    c_gx = _cpu() - c0 - c_imports
    day = dt.date.fromisoformat(DAY)
    engine = make_engine(load_settings().database_url)
    with engine.connect() as conn:
        rollout = repo.rollout_for_day(conn, MODEL, day)
        stage = repo.state_before(conn, rollout, day).stage
        summary = collect_day(conn, MODEL, day, rollout.stable_variant, rollout.candidate_variant)
    suites = validate_day(summary, stage, rollout.policy)
    evaluation = evaluate(summary, stage, rollout.policy)
    engine.dispose()
    return {"imports_cpu": c_imports, "gx_cpu": c_gx, "work_cpu": _cpu() - c0 - c_imports - c_gx,
            "wall": time.perf_counter() - t0, "dagster": "dagster" in sys.modules,
            "passed": all(s.passed for s in suites), "score": evaluation.score}


# --- main -----------------------------------------------------------------------------------


def prepare(env: dict, requests: int) -> None:
    """A fresh embedded store: schema, a rollout in shadow, one simulated day."""
    cli = _cli()
    timed([*cli, "init-db"], env)
    timed([*cli, "rollout", "start", "--model", MODEL, "--stable", "v1", "--candidate", "v2"], env)
    timed([*cli, "simulate", "--model", MODEL, "--date", DAY, "--requests", str(requests), "--seeded-ids"], env)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--requests", type=int, default=4_000, help="requests in the day (2 rows each)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each command (after one warm-up)")
    parser.add_argument("--child", choices=["phases", "layers"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child_phases() if args.child == "phases" else child_layers()))
        if args.child == "layers":
            gc.freeze()  # as the CLI's main() does: no collection of the whole heap at exit
        return 0

    command = shlex.join([sys.executable, *(sys.argv if argv is None else [sys.argv[0], *argv])])
    load_before = os.getloadavg()
    state = Path(tempfile.mkdtemp(prefix="bench-small-day-"))
    try:
        env = {k: v for k, v in os.environ.items() if k not in CLEARED}
        env.update({"ROLLOUT_STATE_DIR": str(state), "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)})
        print(f"state {state}: {args.requests:,} requests of {MODEL} on {DAY} ...", flush=True)
        prepare(env, args.requests)
        cli = _cli()
        decide = [*cli, "decide", "--model", MODEL, "--date", DAY, "--dry-run"]
        helps = [*cli, "--help"]
        warm = {"help": measured(helps, env), "decide": measured(decide, env)}
        runs = {"help": [], "decide": []}
        for i in range(args.repeat):
            print(f"run {i + 1}/{args.repeat} ...", flush=True)
            runs["help"].append(measured(helps, env))
            runs["decide"].append(measured(decide, env))
        bare = min(measured([sys.executable, "-c", "pass"], env)["wall"] for _ in range(3))
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", "phases"], env=env,
                              cwd=ROOT, capture_output=True, text=True)
        child_wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"the per-phase child failed:\n{proc.stderr[-3000:]}")
        phases = json.loads(proc.stdout.strip().splitlines()[-1])
        layers = []
        for _ in range(args.repeat):
            run = measured([sys.executable, str(Path(__file__).resolve()), "--child", "layers"], env)
            layers.append({**json.loads(run["stdout"].strip().splitlines()[-1]), "process_cpu": run["cpu"],
                           "process_wall": run["wall"]})
    finally:
        shutil.rmtree(state, ignore_errors=True)
    report(command, args, load_before, warm, runs, phases, child_wall, bare, layers)
    return 0


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report(command, args, load_before, warm, runs, phases, child_wall, bare, layers) -> None:
    load = lambda xs: "/".join(f"{x:.2f}" for x in xs)  # noqa: E731
    print()
    print("=== a small day's decision ===")
    print(f"command:  {command}")
    print(f"machine:  {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
          f"load average {load(load_before)} before, {load(os.getloadavg())} after")
    print(f"data:     {args.requests:,} requests ({2 * args.requests:,} rows, served + shadow) on SQLite, "
          f"the embedded default")
    print()
    d, h = runs["decide"], runs["help"]
    print(f"(1) the whole process, median of {args.repeat} (warm-up run apart):")
    print(f"      rollout-pipeline --help:             wall {_median(h, 'wall'):6.2f} s   CPU {_median(h, 'cpu'):6.2f} s")
    each_cpu = ", ".join(f"{r['cpu']:.2f}" for r in d)
    each_wall = ", ".join(f"{r['wall']:.2f}" for r in d)
    print(f"      rollout-pipeline decide --dry-run:   wall {_median(d, 'wall'):6.2f} s   CPU {_median(d, 'cpu'):6.2f} s"
          f"   (runs: CPU {each_cpu}; wall {each_wall})")
    print(f"      warm-up decide: wall {warm['decide']['wall']:.2f} s, CPU {warm['decide']['cpu']:.2f} s; "
          f"peak RSS of any child <= {max(r['rss_mb'] for r in d):.0f} MB")
    print(f"      ratio decide / help (same run): CPU {_median(d, 'cpu') / _median(h, 'cpu'):.1f}x, "
          f"wall {_median(d, 'wall') / _median(h, 'wall'):.1f}x")
    print(f"      target (issue #23): median <= 4 CPU-s and <= 5 s wall on a quiet machine: "
          f"CPU {'met' if _median(d, 'cpu') <= 4 else 'NOT met'}, wall {'met' if _median(d, 'wall') <= 5 else 'NOT met'}")
    print()
    p = phases
    print(f"(2) where the seconds go: one more decide --dry-run in timed steps ({child_wall:.2f} s wall, "
          f"{p['cpu_total']:.2f} s CPU in the process, {p['children_cpu']:.2f} s in its children; "
          f"{p['modules']} modules loaded; of them {', '.join(p['loaded']) or 'none of the heavy ones'}):")
    print(f"      {'interpreter start (python -c pass)':62s} wall {bare:6.2f} s")
    for ph in p["phases"]:
        print(f"      {ph['phase']:62s} wall {ph['wall']:6.2f} s   CPU {ph['cpu']:6.2f} s")
    steps_total = sum(p["steps"].values())
    print(f"        of the command: before the run (engine, instance, partitions, job) "
          f"{p['run_day_s'] - p['run_s']:.2f} s; the run {p['run_s']:.2f} s, of which steps:")
    for name, seconds in p["steps"].items():
        print(f"          {name:50s} {seconds:6.2f} s")
    print(f"          {'Dagster around the steps':50s} {p['run_s'] - steps_total:6.2f} s")
    print(f"      the garbage collector, over the whole process (wall): {p['gc_s']:.2f} s")
    print(f"      decision: {p['action']}")
    print()
    print(f"(3) the same analysis without Dagster (collect, the three suites, the judge), a fresh process each, "
          f"median of {len(layers)}:")
    print(f"      whole process: CPU {_median(layers, 'process_cpu'):.2f} s, wall {_median(layers, 'process_wall'):.2f} s"
          f" (runs: CPU {', '.join(f'{x:.2f}' for x in (r['process_cpu'] for r in layers))})")
    print(f"      of which imports (SQLAlchemy, NumPy, our layers) {_median(layers, 'imports_cpu'):.2f} CPU-s, "
          f"Great Expectations + context {_median(layers, 'gx_cpu'):.2f}, the analysis {_median(layers, 'work_cpu'):.2f}"
          f"; Dagster imported: {layers[0]['dagster']}; suites passed {layers[0]['passed']}, score {layers[0]['score']}")
    print(f"      ratio decide --dry-run / this (same run): CPU "
          f"{_median(runs['decide'], 'cpu') / _median(layers, 'process_cpu'):.2f}x")


if __name__ == "__main__":
    sys.exit(main())
