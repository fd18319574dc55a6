"""How often the decision is wrong: healthy days held or rolled back for a metric, faulty days promoted.

Generates days of logs with ``rollout_pipeline.quality.traffic`` -- written the way
another serving system would write the log contract, not by our simulator: entities
sending many requests each, heavy-tailed, with their own latency, complaint
propensity and outcomes -- over every stage (shadow, canary 1/20/50%, the watch
after promotion), sizes drawn log-uniformly between --min-requests and
--max-requests, regression and classifier outputs, many seeds. Each day goes
through the product's own path (bulk writer -> collect_day -> blocking
log-quality suite -> gates -> state machine) from a state with enough days in its
step, and its decision is compared with the truth:

- healthy: promote (after promotion: hold) is right; a hold whose reason is "not
  enough data" below a gate's documented minimum is counted apart; any other hold
  or a rollback is a false alarm;
- faulty (one fault of FAULTS, at a stage where it can be seen): promote is wrong.

    python benchmarks/decision_quality.py                       # 200 healthy + 220 faulty days (~25 min on 2 cores)
    python benchmarks/decision_quality.py --healthy 20 --faulty 22 --seed 7
    python benchmarks/decision_quality.py --database postgresql://postgres@127.0.0.1/somedb
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import math
import os
import platform
import random
import sys
import tempfile
import time

from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.quality.run import decide_generated_day, log_quality_failures
from rollout_pipeline.quality.traffic import FAULTS, STAGES, DaySpec
from rollout_pipeline.store.engine import make_engine, redact
from rollout_pipeline.store.migrate import upgrade


def specs(healthy: int, faulty: int, seed: int, lo: int, hi: int) -> list[DaySpec]:
    """The days to decide: healthy ones spread over the stages, faulty ones over (fault, visible stage)."""
    rng = random.Random(seed)
    base = dt.date(2026, 1, 5)

    def size():
        return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    out = []
    for k in range(healthy):
        out.append(DaySpec(STAGES[k % len(STAGES)], size(), rng.randrange(2**31), None, rng.random() < 0.5,
                           day=base + dt.timedelta(days=rng.randrange(300))))
    cells = [(f, s) for f in FAULTS.values() for s in f.stages]
    for k in range(faulty):
        fault, stage = cells[k % len(cells)]
        out.append(DaySpec(stage, size(), rng.randrange(2**31), fault.name, rng.random() < 0.5,
                           day=base + dt.timedelta(days=rng.randrange(300))))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--healthy", type=int, default=200, help="healthy days (spread over the 5 stages)")
    parser.add_argument("--faulty", type=int, default=220, help="faulty days (spread over fault x visible stage)")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--min-requests", type=int, default=2000)
    parser.add_argument("--max-requests", type=int, default=40000)
    parser.add_argument("--database", default=None, help="a database URL (default: a fresh SQLite file)")
    parser.add_argument("--json", default=None, help="write every day's outcome to this file")
    parser.add_argument("--no-validation", action="store_true", help="skip the Great Expectations suite")
    args = parser.parse_args(argv)

    url = args.database or f"sqlite:///{tempfile.mkdtemp(prefix='decision-quality-')}/days.db"
    engine = make_engine(url)
    upgrade(engine)
    policy = Policy()
    days = specs(args.healthy, args.faulty, args.seed, args.min_requests, args.max_requests)
    print(f"decision quality: {args.healthy} healthy + {args.faulty} faulty days, seed {args.seed}, "
          f"{args.min_requests}-{args.max_requests} requests/day, default policy {policy.version}")
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, store {redact(engine.url)}")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    validate = None if args.no_validation else log_quality_failures
    started = time.perf_counter()
    results = []
    for k, spec in enumerate(days):
        out = decide_generated_day(engine, spec, f"q{k:04d}", policy, validate)
        results.append(out)
        if out.wrong:
            print(f"  WRONG {out.verdict}: {spec.stage} {spec.fault or 'healthy'} {spec.requests} req "
                  f"labels={spec.labels} seed={spec.seed} drawn={out.drawn}: {' | '.join(out.decision.reasons)[:300]}")
        if (k + 1) % 25 == 0:
            print(f"  ... {k + 1}/{len(days)} days, {time.perf_counter() - started:.0f} s", flush=True)
    elapsed = time.perf_counter() - started

    table = collections.defaultdict(collections.Counter)
    for o in results:
        table[(o.spec.fault or "healthy", o.spec.stage)][o.verdict] += 1
    print(f"\n{'fault':12} {'stage':11} {'days':>5} {'correct':>8} {'insuff.':>8} {'false hold':>10} "
          f"{'false rb':>9} {'promoted':>9}")
    for (fault, stage), c in sorted(table.items(), key=lambda kv: (kv[0][0] != "healthy", kv[0])):
        print(f"{fault:12} {stage:11} {sum(c.values()):>5} {c['correct']:>8} {c['insufficient']:>8} "
              f"{c['false_hold']:>10} {c['false_rollback']:>9} {c['promoted_fault']:>9}")
    healthy = [o for o in results if o.spec.fault is None]
    faulty = [o for o in results if o.spec.fault is not None]
    judged = [o for o in healthy if o.verdict != "insufficient"]
    false_alarms = sum(o.verdict in ("false_hold", "false_rollback") for o in healthy)
    promoted = sum(o.verdict == "promoted_fault" for o in faulty)
    insufficient = sum(o.verdict == "insufficient" for o in healthy)
    rate = false_alarms / len(healthy) if healthy else 0.0
    print(f"\nhealthy days held or rolled back for a metric: {false_alarms} of {len(healthy)} ({rate:.1%}); "
          f"{insufficient} held for not enough data (below a gate's minimum), {len(judged)} judged")
    print(f"faulty days promoted: {promoted} of {len(faulty)}")
    print(f"{len(results)} days in {elapsed:.0f} s ({elapsed / max(1, len(results)):.2f} s a day)")
    ok = rate <= 0.01 and promoted == 0
    print("PASS" if ok else "FAIL", "(target: <= 1% of healthy days held or rolled back for a metric, 0 faulty promoted)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{"stage": o.spec.stage, "fault": o.spec.fault, "requests": o.spec.requests,
                        "labels": o.spec.labels, "seed": o.spec.seed, "verdict": o.verdict,
                        "action": o.decision.action, "reasons": list(o.decision.reasons), "drawn": o.drawn}
                       for o in results], fh, indent=1, default=str)
    engine.dispose()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
