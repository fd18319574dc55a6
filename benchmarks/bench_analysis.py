"""Benchmark of a day's analysis (collect + validate + judge + decide) against its floor and the naive way.

Run from the repository root::

    python benchmarks/bench_analysis.py                                  # 1M and 5M requests: 2M and 10M rows
    python benchmarks/bench_analysis.py --requests 50000,500000 --skip-naive-above 0   # issue #4: 100k vs 1M rows
    python benchmarks/bench_analysis.py --help

For each size (one day each, model ``bench``: stable ``v1`` served, candidate ``v2``
shadowing every request with the same correlation id) it:

1. generates the rows in chunks (numpy, vectorized) and writes them through
   ``rollout_pipeline.store.logs.write_predictions`` into the day-partitioned
   ``prediction_log`` of a throwaway PostgreSQL database (generation and ingest
   are timed apart);
2. runs ``VACUUM ANALYZE`` on the day's partition (what autovacuum does after a
   bulk load; without it the first scan of fresh rows also writes hint bits) --
   unless ``--fresh-day``: then the day is measured as loaded, autovacuum kept off
   its partition, as when a day is decided right after it arrived;
3. measures the floor: one plain aggregate scan of the day (count, mean and
   stddev of latency and prediction per variant), best of ``--repeat``;
4. runs the analysis in a fresh Python subprocess (so its peak RSS is this size's
   alone): ``collect_day`` -> ``validate_day`` (the three Great Expectations
   suites) -> ``evaluate`` -> ``decide``, exactly the functions the Dagster assets
   call; ``--repeat`` times, the best is compared with the floor (the first run
   also pays Great Expectations' context creation, reported apart);
5. the naive reference in another subprocess: ``pandas.read_sql`` of the whole day
   and the floor's statistics in pandas (skipped above ``--skip-naive-above`` rows);
6. optionally (``--dagster-size``) the same day through the full Dagster job
   (``rollout_pipeline.defs.runner.run_day``, in-process executor, fresh
   DAGSTER_HOME) in a subprocess: the orchestration overhead.

Targets (issue #23, 2 cores; issue #7's were 3x and 10x): analysis at the largest size <= 2x the floor; >= 20x
faster than naive; peak RSS < 500 MB and flat across sizes. The last lines say
PASS/FAIL per target; exit status 0 when all pass.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL, STABLE, CANDIDATE = "bench", "v1", "v2"
TARGET_FLOOR_RATIO = 2.0  # issue #23 (issue #7: 3x)
TARGET_NAIVE_SPEEDUP = 20.0  # issue #23 (issue #7: 10x)
TARGET_RSS_MB = 500.0
FLAT_TOLERANCE = 0.10  # "flat": the largest size's peak RSS within 10% of the smallest's


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def day_filter_sql() -> str:
    return "model_name = :m AND ts >= :lo AND ts < :hi"


def set_buckets(engine, day: dt.date, mode: str) -> str:
    """Make the day's rows carry their stored sample bucket (``stored``) or none (``null``); rewrites the partition
    compactly when it changed anything, so both modes scan a heap of the same size."""
    import sqlalchemy as sa

    from rollout_pipeline.store.partitions import partition_name

    if mode == "null":
        change = "SET sample_bucket = NULL WHERE sample_bucket IS NOT NULL"
    else:
        change = "SET sample_bucket = mod(abs(hashtext(correlation_id)::bigint), 10000) WHERE sample_bucket IS NULL"
    with engine.begin() as conn:
        changed = conn.execute(sa.text(f"UPDATE prediction_log {change} AND {day_filter_sql()}"),
                               day_params(day)).rowcount
    if changed:
        print(f"  {changed:,} rows' sample bucket set to {mode}; VACUUM FULL of the partition", flush=True)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f"VACUUM FULL {partition_name('prediction_log', day)}"))
    print(f"  sample buckets: {mode}", flush=True)
    return mode


def day_params(day: dt.date) -> dict:
    lo = dt.datetime.combine(day, dt.time(), dt.UTC)
    return {"m": MODEL, "lo": lo, "hi": lo + dt.timedelta(days=1)}


FLOOR_SQL = f"""
SELECT variant, served, count(*) AS n,
       avg(latency_ms) AS latency_mean, stddev(latency_ms) AS latency_std,
       avg(prediction) AS prediction_mean, stddev(prediction) AS prediction_std
FROM prediction_log WHERE {day_filter_sql()}
GROUP BY variant, served ORDER BY variant, served
"""


# --- data -----------------------------------------------------------------------------------


def generate_chunk(rng, first_request: int, requests: int, total_requests: int, day: dt.date) -> list[tuple]:
    """Rows of requests [first_request, first_request + requests) of a day of ``total_requests``.

    Each request: ``v1`` served and ``v2`` shadow (served=False), same correlation id
    and entity id; the shadow is logged 1-9 ms later. Latency lognormal (median ~20 ms,
    the candidate 15% slower), prediction normal (the candidate close to the stable
    answer), ~1% errors and ~0.2% timeouts with no prediction (the default policy's error limit is 2%).
    """
    import numpy as np

    n = requests
    step = 86_400_000_000 / total_requests
    offsets = ((np.arange(first_request, first_request + n) + rng.random(n) * 0.5) * step).astype(np.int64)
    base = np.datetime64(day.isoformat(), "us")
    ts_served = (base + offsets.astype("timedelta64[us]")).astype(object)
    ts_shadow = (base + (offsets + rng.integers(1000, 9000, n)).astype("timedelta64[us]")).astype(object)
    raw = rng.bytes(16 * n).hex()
    cids = [f"{raw[i:i + 8]}-{raw[i + 8:i + 12]}-4{raw[i + 13:i + 16]}-a{raw[i + 17:i + 20]}-{raw[i + 20:i + 32]}"
            for i in range(0, 32 * n, 32)]
    entities = [f"user-{e:07d}" for e in rng.integers(0, 5_000_000, n).tolist()]
    lat1 = rng.lognormal(3.0, 0.45, n).tolist()
    lat2 = (rng.lognormal(3.0, 0.45, n) * 1.15).tolist()
    truth = rng.normal(0.5, 0.15, n)
    pred1 = truth + rng.normal(0, 0.03, n)
    pred2 = truth + rng.normal(0.005, 0.03, n)

    def statuses():
        u = rng.random(n)
        return np.where(u < 0.988, "ok", np.where(u < 0.998, "error", "timeout")).tolist()

    st1, st2 = statuses(), statuses()
    p1 = [x if s == "ok" else None for x, s in zip(pred1.tolist(), st1)]
    p2 = [x if s == "ok" else None for x, s in zip(pred2.tolist(), st2)]
    rows: list[tuple] = []
    append = rows.append
    for i in range(n):
        append((cids[i], ts_served[i], MODEL, STABLE, True, entities[i], lat1[i], st1[i], p1[i], None))
        append((cids[i], ts_shadow[i], MODEL, CANDIDATE, False, entities[i], lat2[i], st2[i], p2[i], None))
    return rows


def ingest_day(engine, day: dt.date, requests: int, chunk_requests: int, seed: int) -> dict:
    """Generate and write a day; returns generation and ingest seconds."""
    import numpy as np

    from rollout_pipeline.store import logs

    rng = np.random.default_rng(seed)
    gen = write = 0.0
    written = 0
    for first in range(0, requests, chunk_requests):
        t0 = time.perf_counter()
        rows = generate_chunk(rng, first, min(chunk_requests, requests - first), requests, day)
        t1 = time.perf_counter()
        written += logs.write_predictions(engine, rows)
        t2 = time.perf_counter()
        gen += t1 - t0
        write += t2 - t1
        del rows
        print(f"    {written:,} rows written ({written / write:,.0f} rows/s ingest, generation {gen:.1f} s)",
              flush=True)
    return {"rows": written, "generate_s": gen, "ingest_s": write}


def day_rows(engine, day: dt.date) -> int:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM prediction_log WHERE {day_filter_sql()}"),
                            day_params(day)).scalar_one()


def keep_autovacuum_off(engine, day: dt.date) -> None:
    """Create the day's partition now and keep autovacuum away from it (for --fresh-day)."""
    import sqlalchemy as sa

    from rollout_pipeline.store.partitions import ensure_day_partitions, partition_name

    name = partition_name("prediction_log", day)
    with engine.begin() as conn:  # a day loaded before: drop it, rows and statistics with it
        conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
    ensure_day_partitions(engine, [day], tables=("prediction_log",))
    with engine.begin() as conn:
        conn.execute(sa.text(f'ALTER TABLE "{name}" SET (autovacuum_enabled = false)'))


def vacuum_day(engine, day: dt.date) -> float:
    import sqlalchemy as sa

    from rollout_pipeline.store.partitions import partition_name

    t0 = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'VACUUM ANALYZE "{partition_name("prediction_log", day)}"'))
    return time.perf_counter() - t0


def measure_floor(engine, day: dt.date, repeat: int) -> tuple[list[float], list]:
    import sqlalchemy as sa

    times, rows = [], None
    with engine.connect() as conn:
        for _ in range(repeat):
            t0 = time.perf_counter()
            rows = conn.execute(sa.text(FLOOR_SQL), day_params(day)).all()
            times.append(time.perf_counter() - t0)
    return times, [tuple(r) for r in rows]


# --- subprocesses ---------------------------------------------------------------------------


def child_analysis(url: str, day: dt.date, repeat: int, accuracy: bool) -> dict:
    """The pipeline's own functions on one day, timed; peak RSS of this process."""
    t0 = time.perf_counter()
    import sqlalchemy as sa

    from rollout_pipeline.domain.decide import Evidence, decide
    from rollout_pipeline.domain.evaluate import evaluate
    from rollout_pipeline.store import rollouts as repo
    from rollout_pipeline.store.engine import make_engine
    from rollout_pipeline.store.partitions import analyze_stale_day
    from rollout_pipeline.store.summary import collect_day
    from rollout_pipeline.validation.suites import LOG_QUALITY, gx_context, validate_day

    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    gx_context()  # Great Expectations' import and context: once per process, not per day
    t_gx = time.perf_counter() - t0
    rss_ready = current_rss_mb()
    engine = make_engine(url)
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        with engine.connect() as conn:
            rollout = repo.active_rollout(conn, MODEL)
            state = repo.state_before(conn, rollout, day)
            t1 = time.perf_counter()
            analyze_stale_day(engine, "prediction_log", day)  # the asset's explicit step before collect
            summary = collect_day(conn, MODEL, day, rollout.stable_variant, rollout.candidate_variant)
        t2 = time.perf_counter()
        suites = validate_day(summary, state.stage, rollout.policy)
        t3 = time.perf_counter()
        evaluation = evaluate(summary, state.stage, rollout.policy)
        t4 = time.perf_counter()
        quality = next(s for s in suites if s.name == LOG_QUALITY).failures
        result = decide(state, Evidence(quality, evaluation.candidate_requests, evaluation.critical_failures,
                                        evaluation.score, evaluation.failures), rollout.policy)
        t5 = time.perf_counter()
        runs.append({"state": t1 - t0, "collect": t2 - t1, "validate": t3 - t2, "judge": t4 - t3,
                     "decide": t5 - t4, "total": t5 - t0})
    out = {
        "import_s": t_import, "gx_context_s": t_gx, "rss_ready_mb": rss_ready, "runs": runs,
        "rows": summary.total_rows, "sample_rows": len(summary.sample),
        "action": result.action, "score": evaluation.score,
        "suites": {s.name: s.passed for s in suites},
        "variants": {f"{v.variant}/{'served' if v.served else 'shadow'}": {
            "requests": v.requests, "latency_mean": v.latency_mean, "latency_p50": v.latency_p50,
            "latency_p95": v.latency_p95, "latency_p99": v.latency_p99, "prediction_mean": v.prediction_mean,
            "prediction_std": v.prediction_std} for v in summary.variants},
        "pairing": None if summary.pairing is None else {
            "matched": summary.pairing.matched,
            "diff_abs_mean": summary.pairing.diff_abs_mean, "sample_fraction": summary.pairing.sample_fraction},
    }
    if accuracy:
        out["exact"] = exact_reference(engine, day)
    out["peak_rss_mb"] = peak_rss_mb()
    engine.dispose()
    return out


def exact_reference(engine, day: dt.date) -> dict:
    """Exact quantiles (sorts) and the full served/shadow join: what the shortcuts approximate."""
    import sqlalchemy as sa

    t0 = time.perf_counter()
    with engine.connect() as conn:
        q = conn.execute(sa.text(f"""
            SELECT variant, served,
                   percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms) AS q
            FROM prediction_log WHERE {day_filter_sql()} AND latency_ms >= 0
            GROUP BY variant, served"""), day_params(day)).all()
        j = conn.execute(sa.text(f"""
            SELECT count(*) AS matched,
                   avg(abs(c.prediction - s.prediction)) AS diff_abs_mean
            FROM (SELECT correlation_id, prediction FROM prediction_log
                  WHERE {day_filter_sql()} AND variant = :stable AND served) s
            JOIN (SELECT correlation_id, prediction FROM prediction_log
                  WHERE {day_filter_sql()} AND variant = :cand AND NOT served) c USING (correlation_id)"""),
            {**day_params(day), "stable": STABLE, "cand": CANDIDATE}).one()
    return {
        "seconds": time.perf_counter() - t0,
        "quantiles": {f"{r.variant}/{'served' if r.served else 'shadow'}": list(r.q) for r in q},
        "pairing": {"matched": j.matched,
                    "diff_abs_mean": float(j.diff_abs_mean) if j.diff_abs_mean is not None else None},
    }


def child_naive(url: str, day: dt.date) -> dict:
    """The anti-pattern: the whole day into pandas, then the floor's statistics there."""
    t0 = time.perf_counter()
    import pandas as pd
    import sqlalchemy as sa

    from rollout_pipeline.store.engine import make_engine

    engine = make_engine(url)
    t1 = time.perf_counter()
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text(f"SELECT * FROM prediction_log WHERE {day_filter_sql()}"), conn,
                            params=day_params(day))
    t2 = time.perf_counter()
    stats = frame.groupby(["variant", "served"]).agg(
        n=("latency_ms", "size"), latency_mean=("latency_ms", "mean"), latency_std=("latency_ms", "std"),
        prediction_mean=("prediction", "mean"), prediction_std=("prediction", "std"))
    t3 = time.perf_counter()
    engine.dispose()
    return {"import_s": t1 - t0, "read_sql_s": t2 - t1, "pandas_s": t3 - t2, "total_s": t3 - t1,
            "rows": len(frame), "stats": json.loads(stats.reset_index().to_json(orient="records")),
            "peak_rss_mb": peak_rss_mb()}


def child_dagster(url: str, day: dt.date) -> dict:
    """The day through the full Dagster job, in-process executor, fresh DAGSTER_HOME (set by the parent)."""
    t0 = time.perf_counter()
    from rollout_pipeline.defs.runner import run_day

    t_import = time.perf_counter() - t0
    # dry_run: decided and shown, not stored, so the rollout's state stays as the other sizes expect it.
    first = run_day(MODEL, day, actor="bench", dry_run=True)
    second = run_day(MODEL, day, actor="bench", dry_run=True)  # a re-run: Great Expectations is warm now
    return {"import_s": t_import, "first_run_s": first.seconds, "second_run_s": second.seconds,
            "action": first.result["action"], "success": first.success, "peak_rss_mb": peak_rss_mb()}


def run_child(mode: str, url: str, day: dt.date, extra: list[str] | None = None, env: dict | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--child-url", url,
           "--child-day", day.isoformat(), *(extra or [])]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall
    return out


# --- main -----------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A day's analysis (collect + validate + judge + decide) on PostgreSQL against one aggregate "
                    "scan (the floor) and pandas.read_sql of the whole day (naive). Uses ROLLOUT_TEST_DATABASE_URL, "
                    "else postgres@127.0.0.1:5432, else a throwaway cluster; creates and drops its own database "
                    "unless --db-url is given.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--requests", default="1000000,5000000",
                        help="comma-separated requests per day; each makes 2 rows (served + shadow), one day each")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the floor and of the analysis; best reported")
    parser.add_argument("--skip-naive-above", type=int, default=10_000_000,
                        help="skip the naive pandas reference for days of more rows than this (0: never run it)")
    parser.add_argument("--dagster-size", type=int, default=None,
                        help="requests of the size also run through the full Dagster job (default: the smallest; "
                             "0 to skip)")
    parser.add_argument("--no-accuracy", action="store_true",
                        help="skip the exact reference (percentile_cont, full pair join) for the shortcuts' error")
    parser.add_argument("--fresh-day", action="store_true",
                        help="decide each day as loaded: no VACUUM ANALYZE, autovacuum off for its partition "
                             "(the analysis then runs ANALYZE itself on its first run)")
    parser.add_argument("--buckets", choices=["stored", "null"], default="stored",
                        help="the day's sample buckets as the writer stores them, or NULL as in rows written before "
                             "migration 0008 (hashed when read: the old cost); switching rewrites the partition "
                             "(UPDATE + VACUUM FULL) on a reused database")
    parser.add_argument("--chunk-requests", type=int, default=250_000, help="requests generated and written per chunk")
    parser.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2026, 11, 1),
                        help="the first day (in the past: Dagster's daily partitions end today)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db-url", default=None,
                        help="use (and keep) this database; days already holding the right row count are reused")
    parser.add_argument("--child", choices=["analysis", "naive", "dagster"], help=argparse.SUPPRESS)
    parser.add_argument("--child-url", help=argparse.SUPPRESS)
    parser.add_argument("--child-day", type=dt.date.fromisoformat, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def fmt_s(x: float) -> str:
    return f"{x:.2f} s"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        if args.child == "analysis":
            out = child_analysis(args.child_url, args.child_day, args.repeat, not args.no_accuracy)
        elif args.child == "naive":
            out = child_naive(args.child_url, args.child_day)
        else:
            out = child_dagster(args.child_url, args.child_day)
        print(json.dumps(out, default=str))
        return 0

    import sqlalchemy as sa

    from rollout_pipeline.domain.policy import Policy
    from rollout_pipeline.store import rollouts as repo
    from rollout_pipeline.store.engine import make_engine, redact
    from rollout_pipeline.store.migrate import upgrade
    from rollout_pipeline.store.partitions import ensure_day_partitions
    from rollout_pipeline_tests.postgres import create_database, drop_database, postgres_server

    command = shlex.join([sys.executable, *(sys.argv if argv is None else [sys.argv[0], *argv])])
    sizes = [int(s) for s in args.requests.split(",") if s.strip()]
    dagster_size = min(sizes) if args.dagster_size is None else args.dagster_size
    days = [args.day + dt.timedelta(days=i) for i in range(len(sizes))]
    load_before = os.getloadavg()
    results = []

    def run(url: str) -> None:
        engine = make_engine(url)
        try:
            upgrade(engine)
            ensure_day_partitions(engine, days, ["prediction_log"])
            with engine.begin() as conn:
                if repo.active_rollout(conn, MODEL) is None:
                    repo.start_rollout(conn, MODEL, STABLE, CANDIDATE, Policy(), actor="bench")
            with engine.connect() as conn:
                facts = {k: conn.execute(sa.text(f"SHOW {k}")).scalar_one()
                         for k in ("server_version", "shared_buffers", "work_mem", "max_parallel_workers_per_gather")}
            print(f"PostgreSQL {facts['server_version']} at {redact(url)}", flush=True)
            for requests, day in zip(sizes, days):
                n_rows = 2 * requests
                print(f"\n== {requests:,} requests = {n_rows:,} rows on {day} ==", flush=True)
                res = {"requests": requests, "rows": n_rows, "day": day.isoformat(), "facts": facts}
                present = day_rows(engine, day)
                if present == n_rows and not args.fresh_day:
                    print("  reusing the rows already in the database (ingest not measured)", flush=True)
                    res["ingest"] = None
                else:
                    if args.fresh_day:
                        keep_autovacuum_off(engine, day)  # a new partition: the day's old rows go with the old one
                    elif present:
                        with engine.begin() as conn:
                            conn.execute(sa.text(f"DELETE FROM prediction_log WHERE {day_filter_sql()}"),
                                         day_params(day))
                    res["ingest"] = ingest_day(engine, day, requests, args.chunk_requests, args.seed + requests)
                res["buckets"] = set_buckets(engine, day, args.buckets)
                res["vacuum_s"] = None if args.fresh_day else vacuum_day(engine, day)
                res["floor_runs"], res["floor_rows"] = measure_floor(engine, day, args.repeat)
                print(f"  floor: {', '.join(fmt_s(t) for t in res['floor_runs'])}", flush=True)
                extra = ["--repeat", str(args.repeat)] + (["--no-accuracy"] if args.no_accuracy else [])
                res["analysis"] = run_child("analysis", url, day, extra)
                a = res["analysis"]
                print(f"  analysis: {', '.join(fmt_s(r['total']) for r in a['runs'])}; "
                      f"peak RSS {a['peak_rss_mb']:.0f} MB", flush=True)
                if args.skip_naive_above and n_rows <= args.skip_naive_above:
                    print("  naive (pandas.read_sql of the whole day) ...", flush=True)
                    res["naive"] = run_child("naive", url, day)
                    print(f"  naive: {fmt_s(res['naive']['total_s'])}, peak RSS {res['naive']['peak_rss_mb']:.0f} MB",
                          flush=True)
                else:
                    res["naive"] = None
                if requests == dagster_size:
                    try:
                        with tempfile.TemporaryDirectory(prefix="bench-dagster-home-") as home:
                            res["dagster"] = run_child("dagster", url, day,
                                                       env={"DAGSTER_HOME": home, "ROLLOUT_DATABASE_URL": url,
                                                            "ROLLOUT_STATE_DIR": home, "ROLLOUT_LOG_LEVEL": "WARNING"})
                        print(f"  full Dagster run: first {fmt_s(res['dagster']['first_run_s'])}, "
                              f"re-run {fmt_s(res['dagster']['second_run_s'])}", flush=True)
                    except RuntimeError as exc:  # reported, the other figures still stand
                        print(f"  full Dagster run failed: {exc}", file=sys.stderr, flush=True)
                results.append(res)
        finally:
            engine.dispose()

    if args.db_url:
        run(args.db_url)
    else:
        with postgres_server() as server:
            url = create_database(server, prefix="rp_bench_analysis")
            try:
                run(url)
            finally:
                try:
                    drop_database(server, url)
                except Exception as exc:
                    print(f"could not drop {redact(url)}: {exc}; drop it by hand", file=sys.stderr)

    return report(results, command, load_before, os.getloadavg())


def report(results: list[dict], command: str, load_before, load_after) -> int:
    print()
    print("=== day analysis benchmark: prediction_log on PostgreSQL ===")
    print(f"command:    {command}")
    print(f"machine:    {os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}; "
          f"load average {'/'.join(f'{x:.2f}' for x in load_before)} before, "
          f"{'/'.join(f'{x:.2f}' for x in load_after)} after")
    facts = results[0]["facts"]
    print(f"postgresql: {facts['server_version']} (shared_buffers {facts['shared_buffers']}, work_mem "
          f"{facts['work_mem']}, max_parallel_workers_per_gather {facts['max_parallel_workers_per_gather']})")
    print(f"python:     {platform.python_version()}")
    verdicts = []
    for r in results:
        a = r["analysis"]
        best = min(a["runs"], key=lambda x: x["total"])
        floor = min(r["floor_runs"])
        n = r["rows"]
        print()
        print(f"--- {r['requests']:,} requests, {n:,} rows ({r['day']}) ---")
        if r["ingest"]:
            i = r["ingest"]
            print(f"ingest (write_predictions): {i['rows'] / i['ingest_s']:>10,.0f} rows/s ({i['ingest_s']:.1f} s); "
                  f"generation apart: {i['generate_s']:.1f} s; " + (
                      f"VACUUM ANALYZE {r['vacuum_s']:.1f} s" if r["vacuum_s"] is not None else
                      "no VACUUM ANALYZE (--fresh-day: as loaded, autovacuum off; the first analysis run "
                      "includes its own ANALYZE)"))
        print(f"(a) floor, one aggregate scan:     {floor:7.3f} s  {n / floor:>12,.0f} rows/s")
        print(f"    analysis, best of {len(a['runs'])}:          {best['total']:7.3f} s  {n / best['total']:>12,.0f} rows/s"
              f"  = {best['total'] / floor:.2f}x the floor")
        print(f"      collect {best['collect']:.3f} s, validate (3 GX suites) {best['validate']:.3f} s, judge "
              f"{best['judge']:.3f} s, decide {best['decide']:.4f} s, state {best['state']:.3f} s")
        totals = ", ".join(f"{x['total']:.3f}" for x in a["runs"])
        collects = ", ".join(f"{x['collect']:.3f}" for x in a["runs"])
        print(f"      all runs: {totals} s (collect {collects} s)")
        print(f"      process: imports {a['import_s']:.2f} s, GX context {a['gx_context_s']:.2f} s (once per process); "
              f"RSS {a['rss_ready_mb']:.0f} MB after imports, peak {a['peak_rss_mb']:.0f} MB; "
              f"sample {a['sample_rows']:,} rows; decision {a['action']}")
        if r["naive"]:
            nv = r["naive"]
            print(f"(b) naive, read_sql + pandas:      {nv['total_s']:7.3f} s  {n / nv['total_s']:>12,.0f} rows/s"
                  f"  (read_sql {nv['read_sql_s']:.1f} s, pandas {nv['pandas_s']:.2f} s), peak RSS "
                  f"{nv['peak_rss_mb']:,.0f} MB; analysis is {nv['total_s'] / best['total']:.1f}x faster")
        if r.get("dagster"):
            d = r["dagster"]
            print(f"full Dagster run (run_day, in-process executor): first {d['first_run_s']:.2f} s, re-run "
                  f"{d['second_run_s']:.2f} s (import {d['import_s']:.2f} s, process {d['process_wall_s']:.1f} s, "
                  f"peak RSS {d['peak_rss_mb']:.0f} MB); orchestration overhead over the pure functions "
                  f"~{d['second_run_s'] - best['total']:.2f} s")
        if a.get("exact"):
            print_accuracy(a)
    print()
    largest = results[-1]
    la = min(largest["analysis"]["runs"], key=lambda x: x["total"])["total"]
    lf = min(largest["floor_runs"])
    ratio = la / lf
    verdicts.append((f"analysis <= {TARGET_FLOOR_RATIO:g}x the floor at {largest['rows']:,} rows", f"{ratio:.2f}x",
                     ratio <= TARGET_FLOOR_RATIO))
    naive = [r for r in results if r["naive"]]
    if naive:
        r = naive[-1]
        speed = r["naive"]["total_s"] / min(x["total"] for x in r["analysis"]["runs"])
        verdicts.append((f">= {TARGET_NAIVE_SPEEDUP:g}x faster than naive at {r['rows']:,} rows", f"{speed:.1f}x", speed >= TARGET_NAIVE_SPEEDUP))
    peaks = [r["analysis"]["peak_rss_mb"] for r in results]
    verdicts.append(("peak RSS < 500 MB", f"max {max(peaks):.0f} MB", max(peaks) < TARGET_RSS_MB))
    if len(results) > 1:
        growth = peaks[-1] / peaks[0] - 1
        verdicts.append((f"peak RSS flat from {results[0]['rows']:,} to {results[-1]['rows']:,} rows",
                         f"{peaks[0]:.0f} -> {peaks[-1]:.0f} MB ({growth:+.1%})", growth <= FLAT_TOLERANCE))
    for name, figure, ok in verdicts:
        print(f"target: {name:<55} {figure:<28} {'PASS' if ok else 'FAIL'}")
    return 0 if all(ok for *_, ok in verdicts) else 1


def print_accuracy(a: dict) -> None:
    ex = a["exact"]
    print(f"    precision of the shortcuts against exact SQL (percentile_cont, full pair join; {ex['seconds']:.1f} s):")
    for key, exact in sorted(ex["quantiles"].items()):
        v = a["variants"].get(key)
        if not v:
            continue
        errs = []
        for name, e in zip(("p50", "p95", "p99"), exact):
            got = v[f"latency_{name}"]
            errs.append(f"{name} {got:.3f} vs {e:.3f} ({(got - e) / e:+.2%})")
        print(f"      {key}: " + ", ".join(errs))
    p, ep = a["pairing"], ex["pairing"]
    if p and ep["matched"]:
        print(f"      pairing: sample of {p['matched']:,} pairs of {ep['matched']:,} (fraction {p['sample_fraction']:.4f}); "
              f"|diff| mean {p['diff_abs_mean']:.5f} vs "
              f"{ep['diff_abs_mean']:.5f} ({(p['diff_abs_mean'] - ep['diff_abs_mean']) / ep['diff_abs_mean']:+.2%})")


if __name__ == "__main__":
    sys.exit(main())
