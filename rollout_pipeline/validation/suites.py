"""Great Expectations suites over a day summary and its sample, returned as plain records.

Validation checks the day's logs against the log contract and the policy's bounds on
the candidate's answers; it does not judge (the latency check, which shows the
judge's gates, is ``day_checks``). GX 1.x is called directly (dagster-ge supports
only GX 0.x). It runs on small frames built from the day summary (one row per
variant and kind) and on the bounded sample (one row per logged answer), never on
the whole day, so its cost does not grow with the day's row count. GX is imported
lazily: it takes seconds to import.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import threading

from rollout_pipeline.domain.formatting import num
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.records import STATUSES
from rollout_pipeline.domain.summary import ABSURD_VALUE, DaySummary
from rollout_pipeline.validation.results import ExpectationOutcome, SuiteResult

__all__ = ["BROKEN_FEEDBACK", "LOG_QUALITY", "PREDICTIONS", "SUITES", "ExpectationOutcome", "SuiteResult",
           "gx_context", "run_suite", "validate_day"]

LOG_QUALITY, PREDICTIONS = "log_quality", "prediction_distribution"
BROKEN_FEEDBACK = "every feedback value is a finite number, |x| < {absurd:.0e} (NaN, infinite, absurd: broken)"


_lock = threading.Lock()
_context = None
_frames_batch = None


def _import_gx():
    """Great Expectations, imported the first time a suite runs (it takes seconds: see docs/performance.md).

    GX imports pyspark whenever it is installed (the ``spark`` extra): ~0.4 s of pyspark's Python modules,
    although no suite here ever hands GX a Spark frame: unless the process has already imported
    pyspark (the lake path), its import is refused for the length of GX's import, which GX treats as "not
    installed" (``great_expectations.compatibility.pyspark``). A later ``import pyspark`` works as usual.
    """
    if "great_expectations" in sys.modules or "pyspark" in sys.modules:
        import great_expectations as gx

        return gx
    sys.modules["pyspark"] = None  # an ImportError for `import pyspark` and its submodules
    try:
        import great_expectations as gx
    finally:
        if sys.modules.get("pyspark", False) is None:
            del sys.modules["pyspark"]
    return gx


def gx_context():
    """GX and the process's one batch definition of a whole pandas frame, built on first use.

    The context is ephemeral (in memory, no files; ~10 ms once GX is imported) and holds one datasource,
    asset and batch definition for every suite of the process: adding and deleting them per suite cost
    ~20-40 ms each (GX serializes its config on every change), and the batch definition's cache keeps one
    batch, the last one validated.
    """
    global _context, _frames_batch
    with _lock:
        gx = _import_gx()
        if _context is None:
            from great_expectations.data_context.types.base import ProgressBarsConfig

            # GX sets this logger to INFO when it is imported, over the level the CLI chose ("Created temporary
            # directory ... for ephemeral docs site" on every process): let it inherit ours again.
            logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.NOTSET)
            _context = gx.get_context(mode="ephemeral")
            _context.variables.progress_bars = ProgressBarsConfig(globally=False)
            _frames_batch = (_context.data_sources.add_pandas("frames").add_dataframe_asset("frame")
                             .add_batch_definition_whole_dataframe("whole frame"))
    return gx, _frames_batch


def _raised(exception_info) -> str | None:
    """The error message if the expectation raised (GX reports it as success=False)."""
    if not exception_info:
        return None
    infos = [exception_info] if "raised_exception" in exception_info else list(exception_info.values())
    for info in infos:
        if isinstance(info, dict) and info.get("raised_exception"):
            return str(info.get("exception_message") or "expectation raised")
    return None


def _bound(value) -> str:
    return num(float(value)) if isinstance(value, (int, float)) else str(value)


def rule_in_words(kind: str, kwargs: dict) -> str:
    """What an expectation asks, in words: "between 0 and 0", "one of v1, v2", "at least 1"."""
    lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
    if "value_set" in kwargs:
        return "one of " + ", ".join(str(v) for v in kwargs["value_set"])
    if lo is not None and hi is not None:
        return f"exactly {_bound(lo)}" if lo == hi else f"between {_bound(lo)} and {_bound(hi)}"
    if lo is not None:
        return f"at least {_bound(lo)}"
    if hi is not None:
        return f"at most {_bound(hi)}"
    return kind.removeprefix("expect_").replace("_", " ")


def observed_in_words(kind: str, kwargs: dict, result: dict) -> str:
    """A GX result in words: the column, the rule, how many rows broke it (of how many) and an example."""
    rule = rule_in_words(kind, kwargs)
    column = kwargs.get("column")
    what = f"column {column}" if column else "the table"
    if result.get("observed_value") is not None:
        value = result["observed_value"]
        shown = num(float(value)) if isinstance(value, (int, float)) else str(value)
        subject = "row count" if kind == "expect_table_row_count_to_be_between" else (
            f"mean of column {column}" if "mean" in kind else what)
        return f"{subject} is {shown}; expected {rule}"
    if result.get("unexpected_count") is not None:
        bad, total = int(result["unexpected_count"]), result.get("element_count")
        examples = [str(v) for v in (result.get("partial_unexpected_list") or [])[:3]]
        of = f" of {int(total):,}" if total is not None else ""
        rows = "row" if (total if total is not None else bad) == 1 else "rows"
        return (f"{what}: {bad:,}{of} {rows} not {rule}"
                + (f", e.g. {', '.join(examples)}" if examples else ""))
    return f"{what}: expected {rule}; no value observed"


def run_suite(name: str, blocking: bool, frame, expectations: list[tuple[str, object]]) -> SuiteResult:
    """Validate ``frame`` (pandas) against ``expectations`` [(description, GX expectation)]."""
    gx, frames = gx_context()
    suite = gx.ExpectationSuite(name=f"{name}_suite")
    for description, expectation in expectations:
        expectation.meta = {**(expectation.meta or {}), "description": description}
        suite.add_expectation(expectation)
    # One suite at a time: the batch definition's execution engine holds the batch being validated.
    with _lock:
        result = frames.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    outcomes = []
    for r in result.results:
        error = _raised(r.exception_info)
        outcomes.append(ExpectationOutcome(
            expectation=r.expectation_config.type,
            description=(r.expectation_config.meta or {}).get("description", r.expectation_config.type),
            success=bool(r.success) and error is None,
            errored=error is not None,
            observed=error if error else observed_in_words(r.expectation_config.type,
                                                           dict(r.expectation_config.kwargs or {}),
                                                           dict(r.result or {})),
        ))
    return SuiteResult(name, blocking, tuple(outcomes))


def _frames(summary: DaySummary):
    import pandas as pd

    groups = pd.DataFrame(
        [
            {
                "variant": v.variant,
                "served": v.served,
                "requests": v.requests,
                "missing_correlation_id": v.missing_correlation_id,
                "unknown_status": v.unknown_status,
                "invalid_latency": v.invalid_latency,
                # The candidate's own non-finite answers are its failure, judged by the broken_answers gate;
                # anyone else's make the comparison unusable.
                "nonfinite_predictions": 0 if v.variant == summary.candidate_variant else v.nonfinite_predictions,
                "broken_feedback": v.broken_feedback,
            }
            for v in summary.variants
        ],
        columns=["variant", "served", "requests", "missing_correlation_id", "unknown_status", "invalid_latency",
                 "nonfinite_predictions", "broken_feedback"],
    )
    sample = pd.DataFrame(
        [(r.correlation_id, r.variant, r.served, r.latency_ms, r.status, r.prediction) for r in summary.sample],
        columns=["correlation_id", "variant", "served", "latency_ms", "status", "prediction"],
    )
    return groups, sample


def _log_quality(E, summary: DaySummary, stage: str, policy: Policy, groups) -> SuiteResult:
    import pandas as pd

    stable, cand = summary.stable_variant, summary.candidate_variant
    zero = lambda column: E.ExpectColumnValuesToBeBetween(column=column, min_value=0, max_value=0)  # noqa: E731
    broken = BROKEN_FEEDBACK.format(absurd=ABSURD_VALUE)
    outcomes = run_suite(LOG_QUALITY, True, groups, [
        ("the day has logged requests", E.ExpectTableRowCountToBeBetween(min_value=1)),
        ("every row has a correlation id", zero("missing_correlation_id")),
        (f"every status is one of {', '.join(STATUSES)}", zero("unknown_status")),
        (f"every latency is a finite number >= 0 and < {ABSURD_VALUE:.0e} ms", zero("invalid_latency")),
        (f"every stable prediction is a finite number, |x| < {ABSURD_VALUE:.0e} (the candidate's own are judged: "
         "broken_answers)", zero("nonfinite_predictions")),
        (f"only the rollout's variants ({stable}, {cand}) log",
         E.ExpectColumnValuesToBeInSet(column="variant", value_set=[stable, cand])),
        (broken, zero("broken_feedback")),
    ]).outcomes
    # Name the day's count, not GX's "1 unexpected" (a row per variant and kind). Each request has one served row,
    # so the served rows' counts add up to the feedback rows (a shadow answer's join would count them twice).
    count = sum(v.broken_feedback for v in summary.variants if v.served)
    outcomes = tuple(dataclasses.replace(o, observed=f"{count} broken feedback rows about the day's requests")
                     if o.description == broken and o.status == "fail" else o for o in outcomes)
    if stage == "shadow":
        pr = summary.pairing
        if pr is None:
            unmatched = math.nan  # no shadow answers at all: the first expectation below says so
        else:
            unmatched = pr.unmatched_shadow / pr.shadow_in_sample if pr.shadow_in_sample else 1.0
        pairing = pd.DataFrame([{"unmatched_shadow_share": unmatched,
                                 "duplicate_correlation_ids": pr.duplicate_correlation_ids if pr else 0,
                                 "shadow_answers": sum(v.requests for v in summary.variants if not v.served)}])
        outcomes += run_suite(LOG_QUALITY, True, pairing, [
            ("the candidate answered in shadow", E.ExpectColumnValuesToBeBetween(column="shadow_answers", min_value=1)),
            (f"shadow answers have a served twin (unmatched <= {policy.max_unmatched_shadow_share:.0%})",
             E.ExpectColumnValuesToBeBetween(column="unmatched_shadow_share", min_value=0.0,
                                             max_value=float(policy.max_unmatched_shadow_share))),
            ("no correlation id is served twice", E.ExpectColumnValuesToBeBetween(
                column="duplicate_correlation_ids", min_value=0, max_value=0)),
        ]).outcomes
    else:
        # Canary and later: pairing is not measured, but a request answered (served) twice is still a breach.
        served = pd.DataFrame([{"duplicate_correlation_ids": summary.duplicate_served_ids}])
        outcomes += run_suite(LOG_QUALITY, True, served, [
            ("no correlation id is served twice", E.ExpectColumnValuesToBeBetween(
                column="duplicate_correlation_ids", min_value=0, max_value=0)),
        ]).outcomes
    return SuiteResult(LOG_QUALITY, True, outcomes)


def _predictions(E, summary: DaySummary, stage: str, policy: Policy, sample) -> SuiteResult:
    cand_sample = sample[(sample["variant"] == summary.candidate_variant) & (sample["served"] == (stage != "shadow"))
                         & sample["prediction"].notna()]
    expectations = []
    if policy.prediction_bounds is not None:
        lo, hi = policy.prediction_bounds
        expectations.append((
            f"candidate predictions within [{lo:g}, {hi:g}] (extremes <= {policy.extreme_share_limit:.1%})",
            E.ExpectColumnValuesToBeBetween(column="prediction", min_value=float(lo), max_value=float(hi),
                                            mostly=float(1 - policy.extreme_share_limit))))
    stable = summary.get(summary.stable_variant, True)
    if stable is not None and stable.prediction_mean is not None:
        mean, margin = stable.prediction_mean, policy.prediction_shift_limit * (stable.prediction_std or 0.0)
        expectations.append((f"candidate mean prediction within stable {mean:.4g} ± {margin:.4g}",
                             E.ExpectColumnMeanToBeBetween(column="prediction", min_value=float(mean - margin),
                                                           max_value=float(mean + margin))))
    if not expectations or not len(cand_sample):
        return SuiteResult(PREDICTIONS, False, ())
    return run_suite(PREDICTIONS, False, cand_sample, expectations)


SUITES = (LOG_QUALITY, PREDICTIONS)


def validate_day(summary: DaySummary, stage: str, policy: Policy, suites: tuple[str, ...] = SUITES) -> list[SuiteResult]:
    """Run the named suites (default both: log quality, which blocks; prediction distribution)."""
    gx, _ = gx_context()
    groups, sample = _frames(summary)
    runners = {
        LOG_QUALITY: lambda: _log_quality(gx.expectations, summary, stage, policy, groups),
        PREDICTIONS: lambda: _predictions(gx.expectations, summary, stage, policy, sample),
    }
    return [runners[name]() for name in suites]
