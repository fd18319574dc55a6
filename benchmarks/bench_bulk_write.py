"""Benchmark of the bulk log writer against the floor: raw COPY of pre-formatted rows.

Run from the repository root::

    python benchmarks/bench_bulk_write.py                 # 1,000,000 rows on PostgreSQL, 200,000 on SQLite
    python benchmarks/bench_bulk_write.py --rows 200000 --repeat 5

What it does, in one run and on one set of rows generated once in memory:

1. ``write_predictions`` into PostgreSQL (a fresh throwaway database, migrated,
   with the day's partition created before timing);
2. the floor: ``COPY prediction_log (...) FROM STDIN`` fed by ``copy_expert`` from
   a file on disk holding the same rows, formatted beforehand (same table, same
   (model_name, ts) index, same day partition);
3. ``write_predictions`` into a fresh SQLite file (fewer rows by default).

Each figure is the best of ``--repeat`` runs; the table is truncated (and a
CHECKPOINT taken) before every PostgreSQL run, and runs of (1) and (2) alternate
so that drift on the machine hits both alike. The target is (1) >= 60% of (2).
Exit status: 0 on PASS, 1 on FAIL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import shlex
import sys
import tempfile
import time
import uuid
from pathlib import Path

# Runnable as a plain script from the repository root, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from rollout_pipeline.domain.records import PREDICTION_COLUMNS, PredictionRow  # noqa: E402
from rollout_pipeline.store import logs  # noqa: E402
from rollout_pipeline.store.engine import make_engine, redact  # noqa: E402
from rollout_pipeline.store.migrate import upgrade  # noqa: E402
from rollout_pipeline.store.partitions import ensure_day_partitions  # noqa: E402
from rollout_pipeline_tests.postgres import create_database, drop_database, postgres_server  # noqa: E402

TARGET = 0.60  # ours / raw COPY
UTC = dt.UTC
MODELS = (("churn", 0.5), ("fraud", 0.3), ("ranking", 0.2))  # (name, share of requests)
COPY_SQL = f"COPY prediction_log ({', '.join(PREDICTION_COLUMNS)}) FROM STDIN"
COPY_READ_SIZE = 1 << 20  # bytes per read() of the floor's file: large, so the floor is a high bar


# --- data -----------------------------------------------------------------------------------


def generate_rows(n: int, day: dt.date, seed: int) -> list[PredictionRow]:
    """``n`` rows of one day: n/2 requests, each answered by the served variant and by a shadow.

    Both rows of a pair share the correlation id and the entity id; the shadow's answer
    is logged a few milliseconds after the served one. Timestamps are aware UTC and
    increase through the day; ~98% of answers are ok, the rest errors or timeouts.
    """
    rng = random.Random(seed)
    start = dt.datetime.combine(day, dt.time(), UTC)
    requests = (n + 1) // 2
    step_us = 86_400_000_000 / max(requests, 1)
    names = [name for name, _ in MODELS]
    weights = [share for _, share in MODELS]
    rows: list[PredictionRow] = []
    for i in range(requests):
        model = rng.choices(names, weights)[0]
        correlation_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        entity_id = f"user-{rng.randrange(5_000_000):07d}"
        ts = start + dt.timedelta(microseconds=int(i * step_us + rng.random() * step_us * 0.5))
        for variant, served, lag_ms, slower in (("v1", True, 0.0, 1.0), ("v2", False, rng.uniform(1, 9), 1.15)):
            r = rng.random()
            status = "ok" if r < 0.98 else ("error" if r < 0.995 else "timeout")
            latency = rng.lognormvariate(3.0, 0.45) * slower
            prediction = rng.random() if status == "ok" else None
            rows.append(PredictionRow(correlation_id, ts + dt.timedelta(milliseconds=lag_ms), model, variant,
                                      served, entity_id, latency, status, prediction, None))
            if len(rows) == n:
                break
    return rows


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _field(value) -> str:
    """COPY text format of one value, written independently of the code under test."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value).translate(_ESCAPES)


def write_copy_file(rows: list[PredictionRow], path: Path) -> int:
    """Pre-format the rows for COPY into ``path``; returns its size in bytes."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        batch = []
        for row in rows:
            batch.append("\t".join(map(_field, row)))
            if len(batch) == 100_000:
                f.write("\n".join(batch) + "\n")
                batch = []
        if batch:
            f.write("\n".join(batch) + "\n")
    return path.stat().st_size


# --- PostgreSQL -----------------------------------------------------------------------------


def reset_table(engine: sa.Engine) -> None:
    """Empty the log (partitions stay) and flush dirty buffers, so every run starts alike."""
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE prediction_log"))
    with engine.connect() as conn:
        conn.execute(sa.text("CHECKPOINT"))  # needs superuser (or pg_checkpoint): fine on a test server


def count_and_fingerprint(engine: sa.Engine, fingerprint: bool) -> tuple[int, str | None]:
    """Row count of the log and, if asked, an order-independent hash of its whole content."""
    with engine.connect() as conn:
        if not fingerprint:
            return conn.execute(sa.text("SELECT count(*) FROM prediction_log")).scalar_one(), None
        n, h = conn.execute(sa.text(
            "SELECT count(*), coalesce(sum(hashtextextended(p::text, 0)), 0)::text FROM prediction_log p"
        )).one()
        return n, h


def run_ours_pg(engine: sa.Engine, rows: list, chunk_rows: int) -> float:
    reset_table(engine)
    started = time.perf_counter()
    written = logs.write_predictions(engine, rows, chunk_rows=chunk_rows)
    elapsed = time.perf_counter() - started
    assert written == len(rows), (written, len(rows))
    return elapsed


def run_raw_copy(engine: sa.Engine, path: Path) -> float:
    reset_table(engine)
    raw = engine.raw_connection()  # connected before timing, as the writer's pooled connection is
    try:
        started = time.perf_counter()
        with open(path, encoding="utf-8") as f, raw.cursor() as cursor:
            cursor.copy_expert(COPY_SQL, f, size=COPY_READ_SIZE)
        raw.commit()
        return time.perf_counter() - started
    finally:
        raw.close()


def run_sqlite(rows: list, folder: Path, chunk_rows: int, run: int) -> float:
    path = folder / f"bench-{run}.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
        started = time.perf_counter()
        written = logs.write_predictions(engine, rows, chunk_rows=chunk_rows)
        elapsed = time.perf_counter() - started
        assert written == len(rows), (written, len(rows))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM prediction_log")).scalar_one() == len(rows)
        return elapsed
    finally:
        engine.dispose()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


# --- reporting ------------------------------------------------------------------------------


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>12,.0f} rows/s  ({seconds:.3f} s for {n:,} rows)"


def all_runs(n: int, times: list[float]) -> str:
    return ", ".join(f"{n / t:,.0f}" for t in times) + " rows/s"


def server_facts(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        facts = {name: conn.execute(sa.text(f"SHOW {name}")).scalar_one()
                 for name in ("server_version", "shared_buffers", "fsync", "synchronous_commit", "wal_level",
                              "max_wal_size")}
    return facts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure rollout_pipeline.store.logs.write_predictions against raw COPY of the same "
                    "pre-formatted rows (the floor) on PostgreSQL, and the writer on SQLite. "
                    f"Target: the writer reaches >= {TARGET:.0%} of raw COPY's rows/s. "
                    "Uses ROLLOUT_TEST_DATABASE_URL, else postgres@127.0.0.1:5432, else a throwaway cluster; "
                    "creates and drops its own database.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows written to PostgreSQL per run")
    parser.add_argument("--sqlite-rows", type=int, default=200_000,
                        help="rows written to SQLite per run (SQLite is slower; 0 skips SQLite)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is reported")
    parser.add_argument("--chunk-rows", type=int, default=logs.CHUNK_ROWS, help="the writer's chunk_rows")
    parser.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2031, 3, 14),
                        help="the day (UTC) the rows belong to")
    parser.add_argument("--seed", type=int, default=20310314, help="seed of the generated rows")
    parser.add_argument("--no-index-cost", action="store_true",
                        help="skip measuring raw COPY without the (model_name, ts) index")
    parser.add_argument("--tmpdir", type=Path, default=Path(tempfile.gettempdir()),
                        help="folder for the pre-formatted COPY file and the SQLite files")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeat < 1 or args.sqlite_rows < 0 or args.chunk_rows < 1:
        parser.error("--rows, --repeat and --chunk-rows must be >= 1, --sqlite-rows >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([sys.executable, *(sys.argv if argv is None else [sys.argv[0], *argv])])
    n, k = args.rows, args.repeat
    load_before = os.getloadavg()

    print(f"generating {max(n, args.sqlite_rows):,} rows for {args.day} ...", flush=True)
    t0 = time.perf_counter()
    all_rows = generate_rows(max(n, args.sqlite_rows), args.day, args.seed)
    rows = all_rows[:n]
    print(f"  generated in {time.perf_counter() - t0:.1f} s", flush=True)

    folder = Path(tempfile.mkdtemp(prefix="bench-bulk-write-", dir=args.tmpdir))
    copy_file = folder / "prediction_log.copy"
    size = write_copy_file(rows, copy_file)
    print(f"  pre-formatted for raw COPY: {copy_file} ({size / 1e6:.1f} MB, {size / n:.0f} bytes/row)", flush=True)

    ours: list[float] = []
    raw: list[float] = []
    raw_no_index: list[float] = []
    sqlite: list[float] = []
    try:
        with postgres_server() as server:
            url = create_database(server, prefix="rp_bench")
            engine = make_engine(url)
            try:
                upgrade(engine)
                ensure_day_partitions(engine, [args.day], ["prediction_log"])
                facts = server_facts(engine)
                print(f"PostgreSQL {facts['server_version']} at {redact(url)}", flush=True)

                # Same content both ways, checked once (outside the timings).
                run_ours_pg(engine, rows, args.chunk_rows)
                ours_check = count_and_fingerprint(engine, fingerprint=True)
                run_raw_copy(engine, copy_file)
                raw_check = count_and_fingerprint(engine, fingerprint=True)
                if ours_check != raw_check or ours_check[0] != n:
                    raise SystemExit(f"content differs: writer {ours_check} vs raw COPY {raw_check} (expected {n} rows)")
                print(f"  warm-up done; writer and raw COPY store identical content ({n:,} rows, hash {ours_check[1]})",
                      flush=True)

                for i in range(k):  # alternate, so drift hits both alike
                    ours.append(run_ours_pg(engine, rows, args.chunk_rows))
                    raw.append(run_raw_copy(engine, copy_file))
                    print(f"  run {i + 1}/{k}: writer {n / ours[-1]:,.0f} rows/s, raw COPY {n / raw[-1]:,.0f} rows/s",
                          flush=True)
                    assert count_and_fingerprint(engine, fingerprint=False)[0] == n

                if not args.no_index_cost:
                    with engine.begin() as conn:
                        conn.execute(sa.text("DROP INDEX ix_prediction_log_model_ts"))
                    for _ in range(k):
                        raw_no_index.append(run_raw_copy(engine, copy_file))
                    with engine.begin() as conn:
                        conn.execute(sa.text("CREATE INDEX ix_prediction_log_model_ts ON prediction_log (model_name, ts)"))
            finally:
                engine.dispose()
                try:
                    drop_database(server, url)
                except Exception as exc:  # e.g. the server went away mid-run: say what is left behind
                    print(f"could not drop the benchmark database {redact(url)}: {exc}; drop it by hand",
                          file=sys.stderr)

        for i in range(k if args.sqlite_rows else 0):
            sqlite.append(run_sqlite(all_rows[:args.sqlite_rows], folder, args.chunk_rows, i))
    finally:
        copy_file.unlink(missing_ok=True)
        for leftover in folder.iterdir():
            leftover.unlink()
        folder.rmdir()

    load_after = os.getloadavg()
    best_ours, best_raw = min(ours), min(raw)
    ratio = best_raw / best_ours
    verdict = "PASS" if ratio >= TARGET else "FAIL"
    print()
    print("=== bulk write benchmark: prediction_log ===")
    print(f"command:    {command}")
    print(f"machine:    {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {platform.machine()}, "
          f"{platform.system()} {platform.release()}; load average (1/5/15 min) "
          f"{'/'.join(f'{x:.2f}' for x in load_before)} before, {'/'.join(f'{x:.2f}' for x in load_after)} after "
          "(other work on the machine shows here and makes runs noisy)")
    print(f"python:     {platform.python_version()} ({platform.python_implementation()}), "
          f"psycopg2 {psycopg2.__version__.split()[0]}, SQLAlchemy {sa.__version__}")
    print(f"postgresql: {facts['server_version']} (shared_buffers {facts['shared_buffers']}, fsync {facts['fsync']}, "
          f"synchronous_commit {facts['synchronous_commit']}, wal_level {facts['wal_level']}, "
          f"max_wal_size {facts['max_wal_size']})")
    print(f"data:       {n:,} rows on {args.day} ({n // 2:,} served + shadow pairs), {size / n:.0f} bytes/row as COPY "
          f"text; table partitioned by day with its (model_name, ts) index; chunk_rows={args.chunk_rows:,}; "
          f"best of {k}")
    print()
    print(f"(1) write_predictions -> PostgreSQL: {rate(n, best_ours)}")
    print(f"        all runs: {all_runs(n, ours)}")
    print(f"(2) raw COPY from file (floor):      {rate(n, best_raw)}")
    print(f"        all runs: {all_runs(n, raw)}")
    if raw_no_index:
        best = min(raw_no_index)
        print(f"    raw COPY without the index:      {rate(n, best)}")
        print(f"        all runs: {all_runs(n, raw_no_index)}")
        print(f"        the (model_name, ts) index costs {1 - best / best_raw:.0%} of raw COPY throughput "
              f"({best_raw - best:.3f} s per {n:,} rows)")
    if sqlite:
        m = args.sqlite_rows
        print(f"(3) write_predictions -> SQLite:     {rate(m, min(sqlite))}")
        print(f"        all runs: {all_runs(m, sqlite)}")
        print("        (SQLite file, WAL, synchronous=NORMAL; indexes (model_name, ts) and (correlation_id))")
    print()
    print(f"ratio (1)/(2): {ratio:.1%} of raw COPY   target: >= {TARGET:.0%}   {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
