"""Benchmark of a day's analysis over Parquet with Spark, against Spark's own floor and the PostgreSQL path.

Run from the repository root (or ``make bench-spark``)::

    python benchmarks/bench_spark.py                          # 1M and 5M requests: 2M and 10M rows (~15-20 min)
    python benchmarks/bench_spark.py --requests 100000 --repeat 2   # a quick look
    python benchmarks/bench_spark.py --help

For each size (one day each, model ``bench``: stable ``v1`` served, candidate ``v2``
shadowing every request with the same correlation id, the rows of
``bench_analysis.generate_chunk``) it:

1. generates the day and writes it into a throwaway PostgreSQL database with
   ``bench_analysis.ingest_day`` (then ``VACUUM ANALYZE``), exactly as
   ``benchmarks/bench_analysis.py`` does;
2. exports that day to a Parquet lake in a temporary folder with
   ``store.export.export_days`` (the ``export-logs`` command's function;
   ``<root>/prediction_log/day=YYYY-MM-DD/part-*.parquet``), timed, and lists the
   day's files, bytes and row groups;
3. in a fresh Python subprocess (so its peak RSS is this size's alone) starts Spark
   with ``store.spark.spark_session`` in local mode, ``local[2]`` (both cores of this
   machine; the driver bound to 127.0.0.1, no UI) -- the session start is reported
   apart -- and, ``--repeat`` times each, interleaved so both see the same machine:
   (a) the Spark floor: one aggregate scan of the day's files (count, mean and
   stddev of latency and prediction per variant, the same model/day filter) in that
   session; (b) the Spark path: ``collect_day_spark`` -> ``validate_day`` (the three
   Great Expectations suites) -> ``evaluate`` -> ``decide``, the rollout's state read
   from the database, as bench_analysis's child does for the database path. Each
   scan of ``SparkScans`` is timed (a wrapper on the class: the code is unchanged).
   It reports the Python process's peak RSS (``getrusage``) and, separately, the
   JVM's (``VmHWM`` of the ``java`` child process, found with psutil), since Spark's
   memory lives in the JVM. Each run drops the previous run's summary first (as
   between two days of a night), so the peak is one analysis's;
4. runs the PostgreSQL path on the same day (``bench_analysis``'s ``analysis``
   child: ``collect_day`` on the database, then the same validate, judge, decide)
   and its floor (``bench_analysis.measure_floor``).

The last lines give the ratios (Spark path / Spark floor, Spark path / PostgreSQL
path), the peak RSS per size, whether both paths decided the same, and PASS/FAIL of
the targets (issue #16, 2 cores): the Spark path at the largest size <= 3x the Spark
floor; the Python process's peak RSS < 500 MB and flat (within 10%) from the smallest
size to the largest. Exit status 0 when all pass. The header says how the figures
were obtained: machine, cores, load average before and after, versions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
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

from bench_analysis import (  # noqa: E402
    CANDIDATE,
    FLAT_TOLERANCE,
    MODEL,
    STABLE,
    TARGET_RSS_MB,
    current_rss_mb,
    day_params,
    day_rows,
    ingest_day,
    measure_floor,
    peak_rss_mb,
    vacuum_day,
)
from bench_analysis import run_child as run_database_child  # noqa: E402

DEFAULT_MASTER = "local[2]"

# The Spark floor: one aggregate scan of the day's files, the same filter as the analysis's reads.
SPARK_FLOOR_SQL = """
SELECT variant, served, count(*) AS n,
       avg(latency_ms) AS latency_mean, stddev(latency_ms) AS latency_std,
       avg(prediction) AS prediction_mean, stddev(prediction) AS prediction_std
FROM {rows} WHERE model_name = :m AND unix_micros(ts) >= :lo AND unix_micros(ts) < :hi
GROUP BY variant, served ORDER BY variant, served
"""


# --- the Spark child ------------------------------------------------------------------------


def jvm_process():
    """The ``java`` process pyspark started for this process's session (psutil), or None."""
    import psutil

    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.name() == "java":
                return proc
        except psutil.Error:
            continue
    return None


def jvm_rss_mb(proc) -> dict:
    """The JVM's current and peak resident memory (``VmRSS``/``VmHWM`` of /proc/<pid>/status), in MB."""
    out = {}
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) / 1024  # kB
    except OSError:
        pass
    return {"rss_mb": out.get("VmRSS"), "peak_mb": out.get("VmHWM")}


def timed_scans(cls, timings: dict[str, float]) -> None:
    """Wrap each public scan of ``cls`` (SparkScans) to add its seconds to ``timings`` (the code is unchanged)."""
    import functools

    for name in [n for n in vars(cls) if not n.startswith("_") and callable(getattr(cls, n))]:
        method = getattr(cls, name)

        @functools.wraps(method)
        def wrapper(*args, _method=method, _name=name, **kwargs):
            t0 = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                timings[_name] = timings.get(_name, 0.0) + time.perf_counter() - t0

        setattr(cls, name, wrapper)


def child_spark(url: str, root: str, day: dt.date, repeat: int, master: str) -> dict:
    """The Spark floor and the Spark path on one day in one session, interleaved; peak RSS of Python and the JVM."""
    t0 = time.perf_counter()
    from rollout_pipeline.domain.decide import Evidence, decide
    from rollout_pipeline.domain.evaluate import evaluate
    from rollout_pipeline.store import rollouts as repo
    from rollout_pipeline.store.engine import make_engine
    from rollout_pipeline.store.lake import day_dir
    from rollout_pipeline.store.spark import spark_session
    from rollout_pipeline.store.spark_summary import PREDICTION_DDL, SparkScans, collect_day_spark
    from rollout_pipeline.validation.suites import LOG_QUALITY, gx_context, validate_day

    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    gx_context()  # Great Expectations' import and context: once per process, not per day
    t_gx = time.perf_counter() - t0
    rss_before_spark = current_rss_mb()
    t0 = time.perf_counter()
    spark = spark_session(master)
    t_session = time.perf_counter() - t0
    jvm = jvm_process()
    jvm_after_start = jvm_rss_mb(jvm) if jvm else {}
    conf = spark.sparkContext.getConf()
    facts = {
        "spark": spark.version, "master": spark.sparkContext.master,
        "java": spark.sparkContext._jvm.java.lang.System.getProperty("java.version"),
        "driver_memory": conf.get("spark.driver.memory", "1g"),
        "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions"),
        "max_partition_bytes": spark.conf.get("spark.sql.files.maxPartitionBytes"),
        "driver_host": conf.get("spark.driver.host", "?"),
    }
    rss_ready = current_rss_mb()
    engine = make_engine(url)
    params = day_params(day)
    lo_us = int(params["lo"].timestamp() * 1_000_000)
    hi_us = int(params["hi"].timestamp() * 1_000_000)
    scan_timings: dict[str, float] = {}
    timed_scans(SparkScans, scan_timings)

    def floor_once():
        t = time.perf_counter()  # from the folder to the result, as each of the analysis's scans
        frame = spark.read.schema(PREDICTION_DDL).parquet(day_dir(root, "prediction_log", day))
        rows = spark.sql(SPARK_FLOOR_SQL, args={"m": MODEL, "lo": lo_us, "hi": hi_us}, rows=frame).collect()
        return time.perf_counter() - t, rows, frame

    floor_runs, runs = [], []
    floor_rows = frame = summary = evaluation = result = suites = None
    for _ in range(repeat):
        # The previous run's summary and results go before the next run starts, as between two days of a nightly
        # run: otherwise two summaries (and Great Expectations' garbage) are alive at once and the peak RSS says so.
        summary = evaluation = result = suites = None
        gc.collect()
        seconds, floor_rows, frame = floor_once()
        floor_runs.append(seconds)
        scan_timings.clear()
        t0 = time.perf_counter()
        with engine.connect() as conn:
            rollout = repo.active_rollout(conn, MODEL)
            state = repo.state_before(conn, rollout, day)
        t1 = time.perf_counter()
        summary = collect_day_spark(spark, root, MODEL, day, rollout.stable_variant, rollout.candidate_variant)
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
                     "decide": t5 - t4, "total": t5 - t0, "scans": dict(scan_timings), "rss_mb": current_rss_mb()})
    out = {
        "import_s": t_import, "gx_context_s": t_gx, "session_start_s": t_session,
        "rss_before_spark_mb": rss_before_spark, "rss_ready_mb": rss_ready, "facts": facts,
        "input_partitions": frame.rdd.getNumPartitions(),
        "floor_runs": floor_runs, "floor_rows": [list(r) for r in floor_rows], "runs": runs,
        "rows": summary.total_rows, "sample_rows": len(summary.sample),
        "action": result.action, "score": evaluation.score, "suites": {s.name: s.passed for s in suites},
        "variants": {f"{v.variant}/{'served' if v.served else 'shadow'}": {
            "requests": v.requests, "latency_mean": v.latency_mean, "latency_p99": v.latency_p99,
            "prediction_mean": v.prediction_mean} for v in summary.variants},
        "pairing": None if summary.pairing is None else {
            "matched": summary.pairing.matched, "diff_abs_mean": summary.pairing.diff_abs_mean},
        "jvm_pid": jvm.pid if jvm else None, "jvm_after_start": jvm_after_start,
        "jvm": jvm_rss_mb(jvm) if jvm else {},
    }
    engine.dispose()
    spark.stop()
    out["peak_rss_mb"] = peak_rss_mb()  # this Python process only (RUSAGE_SELF): the JVM is a child
    return out


def run_spark_child(url: str, root: str, day: dt.date, repeat: int, master: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "spark", "--child-url", url,
           "--child-root", root, "--child-day", day.isoformat(), "--repeat", str(repeat), "--master", master]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"spark child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall
    return out


# --- the lake -------------------------------------------------------------------------------


def export_day(engine, root: str, day: dt.date) -> dict:
    """The day from the database into the lake with ``export_days`` (the export-logs command's function)."""
    from rollout_pipeline.store.export import export_days

    t0 = time.perf_counter()
    result = export_days(engine, f"parquet://{root}", day)
    return {"seconds": time.perf_counter() - t0, "rows": result.rows["prediction_log"]}


def lake_facts(root: str, day: dt.date) -> dict:
    """Files, bytes, row groups and rows of the day's prediction_log folder (Parquet footers only)."""
    import pyarrow.parquet as pq

    from rollout_pipeline.store.lake import day_dir

    folder = Path(day_dir(root, "prediction_log", day))
    files = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith((".", "_"))) \
        if folder.is_dir() else []
    groups = rows = size = 0
    for path in files:
        meta = pq.ParquetFile(path).metadata
        groups += meta.num_row_groups
        rows += meta.num_rows
        size += path.stat().st_size
    return {"files": len(files), "bytes": size, "row_groups": groups, "rows": rows}


# --- main -----------------------------------------------------------------------------------


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as the description, as written; defaults shown."""


SPARK_TARGET_FLOOR_RATIO = 3.0  # issues #16 and #23


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--requests", default="1000000,5000000",
                        help="comma-separated requests per day; each makes 2 rows (served + shadow), one day each")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each floor and of each analysis; the best is reported")
    parser.add_argument("--master", default=DEFAULT_MASTER,
                        help="Spark master for the Spark child (local mode on this machine's 2 cores by default)")
    parser.add_argument("--no-postgres-path", action="store_true",
                        help="skip the PostgreSQL analysis (its floor is still measured)")
    parser.add_argument("--chunk-requests", type=int, default=250_000, help="requests generated and written per chunk")
    parser.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2026, 11, 1),
                        help="the first day (one day per size)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db-url", default=None,
                        help="use (and keep) this database (else a throwaway one on "
                             "ROLLOUT_TEST_DATABASE_URL, else postgres@127.0.0.1:5432, else a throwaway cluster); days already holding the right row count are reused")
    parser.add_argument("--lake", default=None,
                        help="use (and keep) this folder as the lake; days already holding the right row count "
                             "are reused (else a temporary folder, removed at the end)")
    parser.add_argument("--child", choices=["spark"], help=argparse.SUPPRESS)
    parser.add_argument("--child-url", help=argparse.SUPPRESS)
    parser.add_argument("--child-root", help=argparse.SUPPRESS)
    parser.add_argument("--child-day", type=dt.date.fromisoformat, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        out = child_spark(args.child_url, args.child_root, args.child_day, args.repeat, args.master)
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
    days = [args.day + dt.timedelta(days=i) for i in range(len(sizes))]
    load_before = os.getloadavg()
    results = []

    def run(url: str, root: str) -> None:
        engine = make_engine(url)
        try:
            upgrade(engine)
            ensure_day_partitions(engine, days, ["prediction_log"])
            with engine.begin() as conn:
                if repo.active_rollout(conn, MODEL) is None:
                    repo.start_rollout(conn, MODEL, STABLE, CANDIDATE, Policy(), actor="bench")
                facts = {k: conn.execute(sa.text(f"SHOW {k}")).scalar_one()
                         for k in ("server_version", "shared_buffers", "work_mem", "max_parallel_workers_per_gather")}
            print(f"PostgreSQL {facts['server_version']} at {redact(url)}; lake {root}", flush=True)
            for requests, day in zip(sizes, days):
                n_rows = 2 * requests
                print(f"\n== {requests:,} requests = {n_rows:,} rows on {day} ==", flush=True)
                res = {"requests": requests, "rows": n_rows, "day": day.isoformat(), "facts": facts}
                present = day_rows(engine, day)
                if present == n_rows:
                    print("  reusing the rows already in the database (ingest not measured)", flush=True)
                    res["ingest"] = None
                else:
                    if present:
                        with engine.begin() as conn:
                            conn.execute(sa.text("DELETE FROM prediction_log WHERE model_name = :m "
                                                 "AND ts >= :lo AND ts < :hi"), day_params(day))
                    res["ingest"] = ingest_day(engine, day, requests, args.chunk_requests, args.seed + requests)
                res["vacuum_s"] = vacuum_day(engine, day)
                res["pg_floor_runs"], _ = measure_floor(engine, day, args.repeat)
                print(f"  PostgreSQL floor: {', '.join(f'{t:.3f}' for t in res['pg_floor_runs'])} s", flush=True)
                if lake_facts(root, day)["rows"] == n_rows and present == n_rows:
                    print("  reusing the day already in the lake (export not measured)", flush=True)
                    res["export"] = None
                else:
                    res["export"] = export_day(engine, root, day)
                    e = res["export"]
                    print(f"  exported {e['rows']:,} rows in {e['seconds']:.1f} s "
                          f"({e['rows'] / e['seconds']:,.0f} rows/s)", flush=True)
                res["lake"] = lake_facts(root, day)
                print("  Spark child (session, floor and analysis interleaved) ...", flush=True)
                res["spark"] = run_spark_child(url, root, day, args.repeat, args.master)
                s = res["spark"]
                print(f"  Spark: session {s['session_start_s']:.1f} s; floor "
                      f"{', '.join(f'{t:.3f}' for t in s['floor_runs'])} s; analysis "
                      f"{seconds(s['runs'])} s; peak RSS Python "
                      f"{s['peak_rss_mb']:.0f} MB, JVM {s['jvm'].get('peak_mb') or 0:.0f} MB", flush=True)
                if args.no_postgres_path:
                    res["pg"] = None
                else:
                    res["pg"] = run_database_child("analysis", url, day, ["--repeat", str(args.repeat),
                                                                          "--no-accuracy"])
                    print(f"  PostgreSQL analysis: {seconds(res['pg']['runs'])} s; "
                          f"peak RSS {res['pg']['peak_rss_mb']:.0f} MB", flush=True)
                results.append(res)
        finally:
            engine.dispose()

    with tempfile.TemporaryDirectory(prefix="bench-spark-lake-") as scratch:
        root = str(Path(args.lake).resolve()) if args.lake else scratch
        if args.db_url:
            run(args.db_url, root)
        else:
            with postgres_server() as server:
                url = create_database(server, prefix="rp_bench_spark")
                try:
                    run(url, root)
                finally:
                    try:
                        drop_database(server, url)
                    except Exception as exc:
                        print(f"could not drop {redact(url)}: {exc}; drop it by hand", file=sys.stderr)

    return report(results, command, load_before, os.getloadavg(), args.master)


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["total"])


def seconds(runs: list[dict]) -> str:
    return ", ".join(f"{r['total']:.3f}" for r in runs)


def report(results: list[dict], command: str, load_before, load_after, master: str) -> int:
    import pyarrow

    print()
    print("=== day analysis benchmark: prediction_log as Parquet, Spark path vs its floor and PostgreSQL ===")
    print(f"command:    {command}")
    print(f"machine:    {os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}; "
          f"load average {'/'.join(f'{x:.2f}' for x in load_before)} before, "
          f"{'/'.join(f'{x:.2f}' for x in load_after)} after")
    sf = results[0]["spark"]["facts"]
    print(f"spark:      {sf['spark']} in local mode, master {sf['master']} (requested {master}), Java {sf['java']}, "
          f"driver memory {sf['driver_memory']}, driver host {sf['driver_host']}, shuffle partitions "
          f"{sf['shuffle_partitions']}, maxPartitionBytes {sf['max_partition_bytes']}")
    facts = results[0]["facts"]
    print(f"postgresql: {facts['server_version']} (shared_buffers {facts['shared_buffers']}, work_mem "
          f"{facts['work_mem']}, max_parallel_workers_per_gather {facts['max_parallel_workers_per_gather']})")
    print(f"python:     {platform.python_version()}, pyarrow {pyarrow.__version__}")
    for r in results:
        s, n = r["spark"], r["rows"]
        sb, sfl = best(s["runs"]), min(s["floor_runs"])
        lake = r["lake"]
        print()
        print(f"--- {r['requests']:,} requests, {n:,} rows ({r['day']}) ---")
        if r["ingest"]:
            i = r["ingest"]
            print(f"ingest into PostgreSQL: {i['rows'] / i['ingest_s']:,.0f} rows/s ({i['ingest_s']:.1f} s); "
                  f"VACUUM ANALYZE {r['vacuum_s']:.1f} s")
        if r["export"]:
            e = r["export"]
            print(f"export_days to Parquet: {e['seconds']:.1f} s ({e['rows'] / e['seconds']:,.0f} rows/s)")
        print(f"lake: {lake['files']} file(s), {lake['bytes'] / 2**20:,.0f} MB, {lake['row_groups']} row groups, "
              f"{lake['rows']:,} rows; Spark reads it as {s['input_partitions']} input partitions")
        print(f"Spark session start ({sf['master']}): {s['session_start_s']:.1f} s (apart from every figure below); "
              f"imports {s['import_s']:.1f} s, GX context {s['gx_context_s']:.1f} s")
        print(f"(a) Spark floor, one aggregate scan:  {sfl:7.3f} s  {n / sfl:>12,.0f} rows/s  "
              f"(runs {', '.join(f'{t:.3f}' for t in s['floor_runs'])})")
        print(f"    Spark path, best of {len(s['runs'])}:          {sb['total']:7.3f} s  {n / sb['total']:>12,.0f} rows/s"
              f"  = {sb['total'] / sfl:.2f}x the Spark floor")
        print(f"      collect {sb['collect']:.3f} s, validate {sb['validate']:.3f} s, judge {sb['judge']:.3f} s, "
              f"decide {sb['decide']:.4f} s, state {sb['state']:.3f} s; all runs "
              f"{seconds(s['runs'])} s")
        print("      collect's scans: " + ", ".join(f"{k} {v:.3f} s" for k, v in
                                                     sorted(sb["scans"].items(), key=lambda kv: -kv[1])))
        jvm = s["jvm"]
        print(f"      peak RSS: Python {s['peak_rss_mb']:.0f} MB (before Spark {s['rss_before_spark_mb']:.0f} MB, "
              f"with the session {s['rss_ready_mb']:.0f} MB, after each run "
              f"{', '.join(format(x['rss_mb'], '.0f') for x in s['runs'])} MB); JVM {jvm.get('peak_mb') or 0:,.0f} MB peak "
              f"({s['jvm_after_start'].get('rss_mb') or 0:,.0f} MB after start); sample {s['sample_rows']:,} rows; "
              f"decision {s['action']}")
        pfl = min(r["pg_floor_runs"])
        print(f"(b) PostgreSQL floor, one aggregate scan: {pfl:7.3f} s")
        if r["pg"]:
            p = r["pg"]
            pb = best(p["runs"])
            same = p["action"] == s["action"]
            print(f"    PostgreSQL path, best of {len(p['runs'])}:     {pb['total']:7.3f} s  = {pb['total'] / pfl:.2f}x "
                  f"its floor; the Spark path takes {sb['total'] / pb['total']:.2f}x the PostgreSQL path")
            print(f"      collect {pb['collect']:.3f} s; peak RSS {p['peak_rss_mb']:.0f} MB; decision {p['action']} "
                  f"({'the same' if same else 'DIFFERENT'} as Spark's)")
            for key, v in sorted(s["variants"].items()):
                pv = p["variants"].get(key, {})
                print(f"      {key}: requests {v['requests']:,} / {pv.get('requests', 0):,}, p99 "
                      f"{v['latency_p99']:.3f} / {pv.get('latency_p99') or float('nan'):.3f} ms (Spark / PostgreSQL)")
    print()
    verdicts = []
    largest = results[-1]
    ratio = best(largest["spark"]["runs"])["total"] / min(largest["spark"]["floor_runs"])
    verdicts.append((f"Spark path <= 3x the Spark floor at {largest['rows']:,} rows", f"{ratio:.2f}x",
                     ratio <= SPARK_TARGET_FLOOR_RATIO))
    peaks = [r["spark"]["peak_rss_mb"] for r in results]
    verdicts.append(("Python peak RSS < 500 MB", f"max {max(peaks):.0f} MB", max(peaks) < TARGET_RSS_MB))
    if len(results) > 1:
        growth = peaks[-1] / peaks[0] - 1
        verdicts.append((f"Python peak RSS flat from {results[0]['rows']:,} to {results[-1]['rows']:,} rows",
                         f"{peaks[0]:.0f} -> {peaks[-1]:.0f} MB ({growth:+.1%})", growth <= FLAT_TOLERANCE))
    for name, figure, ok in verdicts:
        print(f"target: {name:<55} {figure:<28} {'PASS' if ok else 'FAIL'}")
    jvms = ", ".join(f"{r['rows']:,} rows {r['spark']['jvm'].get('peak_mb') or 0:,.0f} MB" for r in results)
    print(f"info:   JVM peak RSS (Spark's memory, not a target): {jvms}")
    return 0 if all(ok for *_, ok in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
