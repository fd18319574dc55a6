"""Benchmark the Router: added overhead per request with logging on, and sustained log throughput into PostgreSQL.

Overhead: ``Router.predict`` wall time around a trivial model (returns a
constant, ~0.1 µs), so what is measured is the router itself: bucket hash,
correlation id, timestamp, shadow hand-off, log row queued. The log writer runs
against PostgreSQL meanwhile. Measured closed-loop on one thread, for a canary
config (no mirroring) and a shadow config (every request mirrored).

Throughput: rows submitted to a LogWriter as fast as one thread can, until all
are committed to PostgreSQL (counted back, and checked for duplicates).

A throwaway database is created on the test PostgreSQL (see
rollout_pipeline_tests/postgres.py: ROLLOUT_TEST_DATABASE_URL, else
127.0.0.1:5432, else a private cluster) and dropped afterwards.

    python benchmarks/bench_router.py              # defaults
    python benchmarks/bench_router.py --requests 200000 --rows 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rollout_pipeline.domain.records import PredictionRow  # noqa: E402
from rollout_pipeline.domain.routing import VariantRoute  # noqa: E402
from rollout_pipeline.serving.router import Router  # noqa: E402
from rollout_pipeline.serving.writer import LogWriter  # noqa: E402
from rollout_pipeline.store.engine import make_engine, redact  # noqa: E402
from rollout_pipeline.store.migrate import upgrade  # noqa: E402
from rollout_pipeline.store.routing import read_routing, write_routing  # noqa: E402
from rollout_pipeline.store.serving_queries import count_rows, duplicate_identities  # noqa: E402
from rollout_pipeline_tests import postgres  # noqa: E402


def machine_facts(engine: sa.Engine) -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with engine.connect() as conn:
        server = conn.exec_driver_sql("SHOW server_version").scalar_one()
    return [
        f"python {platform.python_version()} on {platform.platform()}",
        f"cpu: {cpu}, {os.cpu_count()} logical cores; load average "
        f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())} before",
        f"postgresql {server} at {redact(engine.url)}",
        f"sqlalchemy {sa.__version__}",
    ]


def percentiles(samples_ns: list[int]) -> str:
    samples = sorted(samples_ns)

    def q(p: float) -> float:
        return samples[min(len(samples) - 1, int(p * len(samples)))] / 1000.0

    return (f"p50 {q(0.50):7.1f} µs   p90 {q(0.90):7.1f} µs   p99 {q(0.99):7.1f} µs   "
            f"p99.9 {q(0.999):7.1f} µs   max {samples[-1] / 1000.0:8.1f} µs   "
            f"mean {statistics.fmean(samples) / 1000.0:6.1f} µs")


def set_routing(engine: sa.Engine, model: str, candidate_percent: float, shadow: bool) -> None:
    routes = (VariantRoute("v1", "stable", 100 - candidate_percent),
              VariantRoute("v2", "candidate", candidate_percent, shadow))
    with engine.begin() as conn:
        current = read_routing(conn, model)
        write_routing(conn, model, routes, expected_version=current.version if current else None,
                      actor="benchmark", reason="benchmark")


def bench_overhead(engine: sa.Engine, spill: Path, label: str, percent: float, shadow: bool, requests: int,
                   warmup: int) -> None:
    model = "bench-shadow" if shadow else "bench-canary"
    set_routing(engine, model, percent, shadow)

    def trivial(_features):
        return 1.0

    router = Router(engine, model, {"v1": trivial, "v2": trivial}, spill_dir=spill / model, refresh_seconds=5.0)
    entities = [f"user-{k}" for k in range(100_000)]
    perf = time.perf_counter_ns
    samples: list[int] = []
    try:
        for k in range(warmup):
            router.predict(None, entities[k % len(entities)])
        started = time.perf_counter()
        for k in range(requests):
            t0 = perf()
            router.predict(None, entities[k % len(entities)])
            samples.append(perf() - t0)
        elapsed = time.perf_counter() - started
        router.drain(30)
    finally:
        router.close()
    logged = requests + warmup
    expected = logged * (2 if shadow else 1)
    with engine.connect() as conn:
        stored = count_rows(conn, "prediction_log", model)
    print(f"  {label:<28} {percentiles(samples)}")
    print(f"  {'':<28} {requests / elapsed:,.0f} requests/s on one thread; {stored:,} of {expected:,} rows stored; "
          f"{router.writer.stats()['spilled'] + router.writer.stats()['overflowed']:,} went through the spill folder")


def bench_throughput(engine: sa.Engine, spill: Path, rows: int, batch_rows: int) -> None:
    ts = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    data = [PredictionRow(f"{k:032x}", ts + dt.timedelta(microseconds=k), "bench-throughput", "v1", True,
                          f"user-{k % 100_000}", 12.5, "ok", 0.5, None) for k in range(rows)]
    writer = LogWriter(engine, spill / "throughput", batch_rows=batch_rows, max_buffer_rows=max(rows, batch_rows),
                       flush_seconds=0.05)
    started = time.perf_counter()
    submit = writer.submit
    for row in data:
        submit(row)
    submitted = time.perf_counter() - started
    writer.close(timeout=600)
    elapsed = time.perf_counter() - started
    with engine.connect() as conn:
        stored = count_rows(conn, "prediction_log", "bench-throughput")
        dupes = duplicate_identities(conn, "prediction_log", "bench-throughput")
    stats = writer.stats()
    print(f"  {rows:,} rows (batches of {batch_rows:,}): submitted in {submitted:.2f} s "
          f"({rows / submitted:,.0f} rows/s), all committed after {elapsed:.2f} s -> "
          f"{rows / elapsed:,.0f} rows/s sustained")
    print(f"  stored {stored:,}, duplicates {dupes}, spilled {stats['spilled'] + stats['overflowed']:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--requests", type=int, default=100_000, help="measured requests per config (default 100000)")
    parser.add_argument("--warmup", type=int, default=5_000, help="unmeasured requests first (default 5000)")
    parser.add_argument("--rows", type=int, default=500_000, help="rows for the throughput run (default 500000)")
    parser.add_argument("--batch-rows", type=int, default=10_000, help="writer batch size for throughput (default 10000)")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="set sys.setswitchinterval (seconds; Python's default 0.005) to see the GIL's share "
                             "of the tail")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the throwaway database")
    args = parser.parse_args()

    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    with postgres.postgres_server() as server:
        url = postgres.create_database(server, prefix="rp_bench")
        engine = make_engine(url)
        try:
            upgrade(engine)
            for fact in machine_facts(engine):
                print("machine: " + fact)
            spill = Path(tempfile.mkdtemp(prefix="bench-spill-"))
            print(f"\nrouter overhead per request, trivial model, logging to PostgreSQL on "
                  f"({args.requests:,} measured after {args.warmup:,} warm-up):")
            bench_overhead(engine, spill, "canary 20% (no mirroring)", 20, False, args.requests, args.warmup)
            bench_overhead(engine, spill, "shadow (every request mirrored)", 0, True, args.requests, args.warmup)
            print("\nsustained log throughput into PostgreSQL (LogWriter -> COPY):")
            bench_throughput(engine, spill, args.rows, args.batch_rows)
        finally:
            engine.dispose()
            print(f"load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())} after")
            if args.keep_database:
                print(f"kept database {redact(url)}")
            else:
                postgres.drop_database(server, url)


if __name__ == "__main__":
    main()
