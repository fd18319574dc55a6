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

Rollout mode (``--rollouts N``): whole rollouts decided night by night with no force
(``quality.rollouts`` + ``quality.run.run_rollout``: the generated night is written,
watched hour by hour by the intraday guardrail, and analysed by the daily job's own
services, which apply each decision to the routing), at several volumes, with and
without actual outcomes, with and without mirrored rows in canary. Faulty rollouts
carry one fault from shadow, 1%, 20% or 50% on, sized 1.2-3x the regression the
policy promises to stop. It prints the share of healthy rollouts reaching production,
nights to production by volume, the share of faulty rollouts reaching production, and
their exposure (candidate share x nights served with the fault on):

    python benchmarks/decision_quality.py --rollouts 6 --database postgresql://postgres@127.0.0.1/dq
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time

from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.quality.rollouts import FAULT_STAGES
from rollout_pipeline.quality.rollouts import FAULTS as ROLLOUT_FAULTS
from rollout_pipeline.quality.rollouts import RolloutSpec
from rollout_pipeline.quality.run import RolloutOutcome, decide_generated_day, log_quality_failures, run_rollout
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
    parser.add_argument("--rollouts", type=int, default=0,
                        help="rollout mode: healthy rollouts per (volume, mirrored, outcomes) cell")
    parser.add_argument("--faulty-rollouts", type=int, default=None,
                        help="rollout mode: faulty rollouts per (fault, start stage) (default: --rollouts)")
    parser.add_argument("--volumes", default="2000,5000,10000,50000,200000", help="rollout mode: requests a day")
    parser.add_argument("--big", type=int, default=50_000,
                        help="rollout mode: volumes from this one on run a third of the rollouts (time)")
    args = parser.parse_args(argv)
    if args.rollouts:
        return rollout_mode(args)

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
          f"{'false rb':>9} {'promoted':>9} {'not asked':>9}")
    for (fault, stage), c in sorted(table.items(), key=lambda kv: (kv[0][0] != "healthy", kv[0])):
        print(f"{fault:12} {stage:11} {sum(c.values()):>5} {c['correct']:>8} {c['insufficient']:>8} "
              f"{c['false_hold']:>10} {c['false_rollback']:>9} {c['promoted_fault']:>9} {c['passed_step']:>9}")
    healthy = [o for o in results if o.spec.fault is None]
    faulty = [o for o in results if o.spec.fault is not None]
    judged = [o for o in healthy if o.verdict != "insufficient"]
    false_alarms = sum(o.verdict in ("false_hold", "false_rollback") for o in healthy)
    promoted = sum(o.verdict == "promoted_fault" for o in faulty)
    insufficient = sum(o.verdict == "insufficient" for o in healthy)
    rate = false_alarms / len(healthy) if healthy else 0.0
    print(f"\nhealthy days held or rolled back for a metric: {false_alarms} of {len(healthy)} ({rate:.1%}); "
          f"{insufficient} held for not enough data (below a gate's minimum), {len(judged)} judged")
    passed = sum(o.verdict == "passed_step" for o in faulty)
    print(f"faulty days promoted: {promoted} of {len(faulty)}; {passed} more promoted by a step that does not ask "
          "their fault (under the first canary step's gross bar, or a gate it does not need: the next step asks it)")
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


def rollout_specs(args) -> list[RolloutSpec]:
    """Healthy rollouts over volume x mirrored x outcomes; faulty ones over fault x start stage (volume, mirrored
    and outcomes drawn), sized 1.2-3x each fault's unit."""
    rng = random.Random(args.seed)
    volumes = [int(v) for v in args.volumes.split(",")]
    out = []
    for volume in volumes:
        count = args.rollouts if volume < args.big else max(1, args.rollouts // 3)
        for mirrored in (True, False):
            for outcomes in (True, False):
                out += [RolloutSpec(volume, rng.randrange(2**31), outcomes=outcomes, mirrored=mirrored,
                                    labels=rng.random() < 0.3) for _ in range(count)]
    faulty = args.rollouts if args.faulty_rollouts is None else args.faulty_rollouts
    for fault in ROLLOUT_FAULTS.values():
        for start in FAULT_STAGES:
            if fault.served_only and start == "shadow":
                continue  # nobody complains about an answer nobody was shown
            for _ in range(faulty):
                volume = rng.choice([v for v in volumes if v < args.big] or volumes)
                out.append(RolloutSpec(volume, rng.randrange(2**31), fault.name, rng.uniform(1.2, 3.0), start,
                                       outcomes=fault.name == "inaccurate" or rng.random() < 0.5,
                                       mirrored=rng.random() < 0.5, labels=False))
    return out


def _median(values):
    return statistics.median(values) if values else float("nan")


def rollout_mode(args) -> int:
    url = args.database or f"sqlite:///{tempfile.mkdtemp(prefix='decision-quality-')}/rollouts.db"
    engine = make_engine(url)
    upgrade(engine)
    policy = Policy()
    specs = rollout_specs(args)
    print(f"rollout quality: {len(specs)} rollouts, seed {args.seed}, default policy {policy.version}")
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}, "
          f"store {redact(engine.url)}")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    started = time.perf_counter()
    results: list[RolloutOutcome] = []
    first = dt.date(2026, 1, 5)
    for k, spec in enumerate(specs):
        mirrored = spec.mirrored
        rollout_policy = policy.model_copy(update={"shadow_stable_during_canary": mirrored,
                                                   "shadow_candidate_during_canary": mirrored})
        max_nights = 14 if spec.requests >= 10_000 else 20
        out = run_rollout(engine, spec, f"r{k:04d}", rollout_policy, first_day=first, max_nights=max_nights)
        results.append(out)
        healthy = spec.fault is None
        wrong = (healthy and out.rolled_back) or (not healthy and out.reached_production)
        if wrong:
            print(f"  WRONG: {spec}: " + " / ".join(f"{n.stage} {n.percent}% {n.action}" for n in out.nights))
            print(f"         {' | '.join(out.nights[-1].reasons)[:400]}")
        if (k + 1) % 10 == 0:
            print(f"  ... {k + 1}/{len(specs)} rollouts, {time.perf_counter() - started:.0f} s", flush=True)
    elapsed = time.perf_counter() - started
    print_rollout_tables(results)
    print(f"{len(results)} rollouts, {sum(len(r.nights) for r in results)} nights in {elapsed:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{"spec": dataclasses.asdict(r.spec), "reached_production": r.reached_production,
                        "rolled_back": r.rolled_back, "exposure": r.exposure,
                        "nights": [dataclasses.asdict(n) for n in r.nights]} for r in results], fh, indent=1,
                      default=str)
    engine.dispose()
    healthy = [r for r in results if r.spec.fault is None]
    faulty = [r for r in results if r.spec.fault is not None]
    return 0 if not any(r.rolled_back for r in healthy) and not any(r.reached_production for r in faulty) else 1


def print_rollout_tables(results: list[RolloutOutcome]) -> None:
    healthy = [r for r in results if r.spec.fault is None]
    faulty = [r for r in results if r.spec.fault is not None]
    print("\nhealthy rollouts (default policy, canary steps 1/20/50/100, no force)")
    print(f"{'requests/day':>12} {'mirrored':>8} {'outcomes':>8} {'n':>3} {'prod <=7':>8} {'prod <=12':>9} "
          f"{'median nights':>13} {'rolled back':>11}")
    cells = collections.defaultdict(list)
    for r in healthy:
        cells[(r.spec.requests, r.spec.mirrored, r.spec.outcomes)].append(r)
    for (volume, mirrored, outcomes), rs in sorted(cells.items()):
        nights = [r.reached_production for r in rs if r.reached_production]
        print(f"{volume:>12,} {str(mirrored):>8} {str(outcomes):>8} {len(rs):>3} "
              f"{sum(1 for n in nights if n <= 7):>8} {sum(1 for n in nights if n <= 12):>9} "
              f"{_median(nights) if nights else '-':>13} {sum(r.rolled_back for r in rs):>11}")
    for label, picked, limit in (("at >= 10,000 requests a day", [r for r in healthy if r.spec.requests >= 10_000], 7),
                                 ("at 2,000-10,000 requests a day",
                                  [r for r in healthy if r.spec.requests < 10_000], 12)):
        if picked:
            within = sum(1 for r in picked if r.reached_production and r.reached_production <= limit)
            nights = [r.reached_production for r in picked if r.reached_production]
            print(f"healthy {label}: {within} of {len(picked)} ({within / len(picked):.0%}) reach production within "
                  f"{limit} nights; median {_median(nights)} nights; "
                  f"{sum(r.rolled_back for r in picked)} rolled back")
    print("\nfaulty rollouts (fault from a stage on, 1.2-3x the regression the policy promises to stop)")
    print(f"{'fault':11} {'from':9} {'n':>3} {'production':>10} {'median exposure':>15} {'max exposure':>12}")
    cells = collections.defaultdict(list)
    for r in faulty:
        cells[(r.spec.fault, r.spec.fault_from)].append(r)
    for (fault, start), rs in sorted(cells.items()):
        exposure = [r.exposure for r in rs]
        print(f"{fault:11} {start:9} {len(rs):>3} {sum(bool(r.reached_production) for r in rs):>10} "
              f"{_median(exposure):>15.2f} {max(exposure):>12.2f}")
    by_start = collections.defaultdict(list)
    for r in faulty:
        by_start[r.spec.fault_from].append(r.exposure)
    if faulty:
        print(f"faulty rollouts reaching production: {sum(bool(r.reached_production) for r in faulty)} of "
              f"{len(faulty)}; median exposure {_median([r.exposure for r in faulty]):.2f} percent-nights "
              f"(by start: " + ", ".join(f"{s} {_median(v):.2f}" for s, v in sorted(by_start.items())) + ")")


if __name__ == "__main__":
    sys.exit(main())
