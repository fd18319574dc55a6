"""Benchmark the judge: ``classify_metric`` time per call as the samples grow.

The Hodges–Lehmann estimate and its confidence interval are order statistics of
the n·m pairwise differences. Listing them is O(n·m) (10^10 at 100k per side);
the judge selects the needed order statistics without listing them (see
``rollout_pipeline/domain/judge.py``: exact, not an approximation of the value).
This script times ``classify_metric`` on normal samples of n per side (the
candidate shifted by 0.5%), best of ``--repeat`` calls, and for the small sizes
checks the estimate against the full list of differences.

    python benchmarks/bench_judge.py                       # 1k, 10k, 100k, 1M per side
    python benchmarks/bench_judge.py --sizes 100000 --repeat 10

Target (issue #4): 100k per side in well under a second.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rollout_pipeline.domain.judge import classify_metric  # noqa: E402

TARGET_SECONDS_AT_100K = 1.0
CHECK_EXACT_UP_TO = 2_000  # sizes whose n·m differences are listed to check the estimate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000",
                        help="comma-separated sample sizes per side (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=5, help="calls per size; the best is reported (default: 5)")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    print(f"# {shlex.join([sys.executable, *sys.argv])}")
    print(f"# python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cores, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"# classify_metric(control, experiment) on normal(100, 15) vs normal(100.5, 15), "
          f"best of {args.repeat} calls per size")
    print(f"{'n per side':>12} {'best s':>9} {'median s':>9} {'estimate':>9} {'class':>6}  exact check")
    rng = np.random.default_rng(args.seed)
    ok = True
    at_100k = None
    for n in sizes:
        control, experiment = rng.normal(100.0, 15.0, n), rng.normal(100.5, 15.0, n)
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            result = classify_metric(control, experiment)
            times.append(time.perf_counter() - started)
        check = ""
        if n <= CHECK_EXACT_UP_TO:
            exact = float(np.median(np.subtract.outer(experiment, control)))
            same = abs(exact - result.estimate) <= 1e-9 * max(1.0, abs(exact))
            ok &= same
            check = "same as the full list" if same else f"DIFFERS: full list gives {exact:.6f}"
        times.sort()
        print(f"{n:>12,} {times[0]:>9.3f} {times[len(times) // 2]:>9.3f} {result.estimate:>9.4f} "
              f"{result.classification:>6}  {check}")
        if n == 100_000:
            at_100k = times[0]
    if at_100k is not None:
        met = at_100k < TARGET_SECONDS_AT_100K
        ok &= met
        print(f"target: 100k per side under {TARGET_SECONDS_AT_100K:.0f} s -> {at_100k:.3f} s "
              f"{'PASS' if met else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
