"""The day-summary scans in Spark SQL over the Parquet layout of ``store.lake`` (issue #16).

The same scans as ``store.summary`` (same groups, filters, orders and limits, spelled
in Spark SQL with named parameters), returning the same plain rows, which
``domain.collect.collect_with`` folds into the same ``DaySummary``: validation, the
judge, the decision, routing and the review do not know which source they read.

Only small results come back to Python (groups, the hash sample, a few extremes):
``collect()`` of ``Row``s, no pandas. Differences from PostgreSQL, all documented in
docs/lake.md and covered by the equivalence tests:

- the sample's hash is Spark's ``xxhash64`` (PostgreSQL uses ``hashtext``): the same
  rule (buckets 0..9999, both halves of a shadow pair together) picks a different, equally
  random set of requests when a day is larger than the sample; a smaller day is whole in both;
- sums of floating-point numbers are added in another order (equal to ~1e-12, not bit for bit);
- strings sort by code point (PostgreSQL by its collation): it only breaks ties between
  equal extreme values and the 500th label count.
"""

from __future__ import annotations

import datetime as dt
import logging
import re

from rollout_pipeline.domain.collect import (
    EXTREME_FETCH_MAX,
    FEEDBACK_WINDOW,
    HASH_BUCKETS,
    POPULATIONS,
    SAMPLE_REQUESTS,
    CountRow,
    FeedbackAgg,
    FeedbackItem,
    Found,
    GroupRow,
    LogRow,
    Key,
    Moments,
    collect_with,
    day_bounds,
    in_sample,
)
from rollout_pipeline.domain.summary import ABSURD_VALUE, LATENCY_BINS_PER_E, PREDICTION_BINS, DaySummary, Extreme
from rollout_pipeline.store.lake import day_dir
from rollout_pipeline.store.summary import SAMPLE_FEEDBACK_KINDS, STABLE_ANSWER_WINDOW

log = logging.getLogger(__name__)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

PREDICTION_DDL = ("correlation_id STRING, ts TIMESTAMP, model_name STRING, variant STRING, served BOOLEAN, "
                  "entity_id STRING, latency_ms DOUBLE, status STRING, prediction DOUBLE, label STRING, sample_bucket INT")
FEEDBACK_DDL = "correlation_id STRING, ts TIMESTAMP, model_name STRING, kind STRING, value DOUBLE, label STRING"

# The row filters of store.summary, in Spark SQL. NaN sorts above +Infinity in Spark as in PostgreSQL,
# so the same two comparisons exclude NaN, the infinities and absurd numbers.
FINITE = "(prediction IS NOT NULL AND prediction < :absurd AND prediction > -:absurd)"
VALID_LATENCY = "(latency_ms >= 0 AND latency_ms < :absurd)"
NONFINITE = "(prediction >= :absurd OR prediction <= -:absurd)"
# The sample's hash: buckets 0..9999 of the correlation id (NULL stays NULL: xxhash64(NULL) is the seed).
HASH = f"CASE WHEN correlation_id IS NOT NULL THEN pmod(xxhash64(correlation_id), {HASH_BUCKETS}) END"
# ts in [lo, hi) as microseconds, deliberately not as timestamps: Spark 4.3 pushes a timestamp comparison down to
# the Parquet reader, and that made scans slower, not faster, even for narrow windows that skip most row groups
# (measured on a 10M-row day: a count 4.5 s against 1.1 s; the stable answers' windows 4.8-6.4 s against 1.1-1.8 s).
IN_RANGE = "unix_micros(ts) >= :lo AND unix_micros(ts) < :hi"


def micros(ts: dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime (what ``unix_micros(ts)`` gives in Spark)."""
    delta = ts - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=int(value))


def collect_day_spark(spark, root: str, model_name: str, day: dt.date, stable_variant: str, candidate_variant: str,
                      *, sample_rows: int = SAMPLE_REQUESTS, top_k: int = 10,
                      accuracy_day: dt.date | None = None) -> DaySummary:
    """Summarize ``model_name``'s day from the Parquet layout under ``root`` (``store.lake.lake_root``)."""
    return collect_with(SparkScans(spark, root), model_name, day, stable_variant, candidate_variant,
                        sample_rows=sample_rows, top_k=top_k, accuracy_day=accuracy_day)


class SparkScans:
    """``domain.collect.DayScans`` in Spark SQL over ``<root>/prediction_log`` and ``<root>/feedback``."""

    nulls_last = True  # every ORDER BY below spells PostgreSQL's NULL order out

    def __init__(self, spark, root: str):
        self.spark = spark
        self.root = root
        self._days: dict[tuple[str, dt.date], object] = {}
        self._unbucketed: dict[tuple[str, dt.date], int] = {}  # rows without a stored sample bucket, per day read
        self._present: dict[tuple[str, dt.date], set[Key]] = {}  # the (variant, served) populations with rows

    # --- reading the layout ----------------------------------------------------------------------

    def _read(self, table: str, days: list[dt.date]):
        """The rows of ``table`` under those day folders; None when none of them exists (nothing to read)."""
        from pyspark.errors import AnalysisException

        ddl = PREDICTION_DDL if table == "prediction_log" else FEEDBACK_DDL
        frames = []
        for d in days:
            try:
                frame = self.spark.read.schema(ddl).parquet(day_dir(self.root, table, d))
                frame.schema  # noqa: B018 - resolves the path now, so a missing folder fails here
            except AnalysisException as exc:
                if "PATH_NOT_FOUND" not in str(exc):
                    raise
                continue
            frames.append(frame)
        if not frames:
            return None
        out = frames[0]
        for frame in frames[1:]:
            out = out.unionByName(frame)
        return out

    def _day(self, model_name: str, day: dt.date):
        """One model's prediction rows of a UTC day (filtered on ts too: the folder is a layout, not a promise)."""
        key = (model_name, day)
        if key not in self._days:
            rows = self._read("prediction_log", [day])
            if rows is None:  # an empty relation the optimizer sees through (a query over it reads nothing)
                rows = self.spark.emptyDataFrame(PREDICTION_DDL)
            lo, hi = day_bounds(day)
            self._days[key] = self._sql(f"SELECT * FROM {{rows}} WHERE model_name = :model AND {IN_RANGE}",
                                        rows=rows, model=model_name, lo=micros(lo), hi=micros(hi))
        return self._days[key]

    def _feedback(self, model_name: str, lo: dt.datetime, hi: dt.datetime):
        """One model's feedback with ts in [lo, hi), read from the day folders that window touches; None: no folder."""
        first, last = lo.date(), (hi - dt.timedelta(microseconds=1)).date()
        days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        rows = self._read("feedback", days)
        if rows is None:
            return None
        return self._sql(f"SELECT * FROM {{rows}} WHERE model_name = :model AND {IN_RANGE}",
                         rows=rows, model=model_name, lo=micros(lo), hi=micros(hi))

    def _sql(self, query: str, **kwargs):
        """``spark.sql`` with DataFrames as ``{name}`` and everything else as named parameters."""
        frames = {k: v for k, v in kwargs.items() if hasattr(v, "schema")}
        args = {k: v for k, v in kwargs.items() if k not in frames}
        return self.spark.sql(query, args=args, **frames)

    # --- the scans (store.summary's, one for one) -------------------------------------------------

    def grouped_rows(self, model_name: str, day: dt.date) -> list[GroupRow]:
        """Scan 1: decomposable aggregates grouped by variant, served and latency bucket."""
        valid = f"({VALID_LATENCY} AND NOT (status <=> 'shed'))"  # a shed call carries no latency of the model's
        bucket = f"CASE WHEN {valid} THEN CAST(floor(ln(1 + latency_ms) * :bins_per_e) AS INT) END"
        rows = self._sql(f"""
            SELECT variant, served, {bucket} AS b,
                   count(*) AS n,
                   count_if(status = 'ok') AS ok,
                   count_if(status = 'error') AS errors,
                   count_if(status = 'timeout') AS timeouts,
                   count_if(correlation_id IS NULL OR correlation_id = '') AS missing_cid,
                   count(label) AS labels,
                   count_if(status = 'ok' AND prediction IS NULL AND label IS NULL) AS null_outputs,
                   sum(CASE WHEN {valid} THEN latency_ms END) AS lat_sum,
                   max(latency_ms) AS lat_max,
                   count(prediction) AS pred_n,
                   count_if({NONFINITE}) AS nonfinite,
                   sum(CASE WHEN {FINITE} THEN prediction END) AS pred_sum,
                   sum(CASE WHEN {FINITE} THEN prediction * prediction END) AS pred_sq,
                   min(prediction) AS pred_min,
                   max(prediction) AS pred_max,
                   count_if(status = 'shed') AS shed,
                   count(*) - count(sample_bucket) AS unbucketed
            FROM {{day}} GROUP BY variant, served, {bucket}""",
            day=self._day(model_name, day), absurd=ABSURD_VALUE, bins_per_e=float(LATENCY_BINS_PER_E)).collect()
        self._unbucketed[(model_name, day)] = sum(int(r.unbucketed) for r in rows)
        self._present[(model_name, day)] = {(r.variant, bool(r.served)) for r in rows}
        return [GroupRow(r.variant, bool(r.served), None if r.b is None else int(r.b), *r[3:-1]) for r in rows]

    def finite_moments(self, model_name: str, day: dt.date) -> list[Moments]:
        rows = self._sql(f"""
            SELECT variant, served, sum(prediction), sum(prediction * prediction), min(prediction), max(prediction)
            FROM {{day}} WHERE {FINITE} GROUP BY variant, served""",
            day=self._day(model_name, day), absurd=ABSURD_VALUE).collect()
        return [Moments(r[0], bool(r[1]), *r[2:]) for r in rows]

    def variant_counts(self, model_name: str, day: dt.date) -> dict[tuple[str, bool], int]:
        rows = self._sql("SELECT variant, served, count(*) AS n, count(*) - count(sample_bucket) AS unbucketed "
                         "FROM {day} GROUP BY variant, served", day=self._day(model_name, day)).collect()
        self._unbucketed[(model_name, day)] = sum(int(r.unbucketed) for r in rows)
        self._present[(model_name, day)] = {(r.variant, bool(r.served)) for r in rows}
        return {(r.variant, bool(r.served)): int(r.n) for r in rows}

    def prediction_bins(self, model_name: str, day: dt.date, edges: tuple[float, ...]) -> list[CountRow]:
        low, high = edges[0], edges[-1]
        bucket = (f"CASE WHEN prediction IS NULL OR NOT (prediction < :absurd AND prediction > -:absurd) THEN NULL "
                  f"WHEN prediction >= :high THEN {PREDICTION_BINS - 1} "
                  f"ELSE CAST(floor((prediction - :low) / :width) AS INT) END")
        rows = self._sql(f"SELECT variant, served, {bucket} AS b, count(*) AS n FROM {{day}} "
                         f"GROUP BY variant, served, {bucket}",
                         day=self._day(model_name, day), absurd=ABSURD_VALUE, high=float(high), low=float(low),
                         width=(high - low) / PREDICTION_BINS).collect()
        return [CountRow(r.variant, bool(r.served), r.b, int(r.n)) for r in rows]

    def sample_and_extreme_rows(self, model_name: str, day: dt.date, thresholds: dict[Key, int], candidate: str,
                                t_hi: float | None, t_lo: float | None,
                                sample_rows: int) -> tuple[list[LogRow], bool]:
        """The hash sample's rows and the candidate's rows beyond the extreme thresholds, in one job (capped).

        As ``store.summary.sample_and_extreme_rows``: the rows with a stored bucket are read by it (a pushed-down
        filter on ``sample_bucket``: the row groups of higher bands are skipped, ``store.lake``), the rows
        without one are hashed (only when the day has some), and the extremes are a filter on the candidate's
        outputs that reads only the columns picking them needs (what else a row holds is only used for the
        sample's rows, which the other parts return).
        """
        params: dict[str, object] = {"absurd": ABSURD_VALUE, "candidate": candidate}
        present = self._present.get((model_name, day))
        if present is not None:  # the other populations' thresholds (whole) would make every row group match
            thresholds = {key: t for key, t in thresholds.items() if key in present}
        stored, hashed = [], []
        for i, ((variant, served), threshold) in enumerate(sorted(thresholds.items())):
            params[f"v{i}"], params[f"s{i}"], params[f"t{i}"] = variant, bool(served), int(threshold)
            stored.append(f"(variant = :v{i} AND served = :s{i} AND sample_bucket < :t{i})")
            hashed.append(f"(variant = :v{i} AND served = :s{i} AND {HASH} < :t{i})")
        unbucketed = self._unbucketed.get((model_name, day), 1) > 0
        beyond = []
        if t_hi is not None:
            params["t_hi"] = float(t_hi)
            beyond.append("prediction >= :t_hi")
        if t_lo is not None:
            params["t_lo"] = float(t_lo)
            beyond.append("prediction <= :t_lo")
        cap = 3 * POPULATIONS * sample_rows + 2 * EXTREME_FETCH_MAX
        full = "correlation_id, variant, served, entity_id, latency_ms, status, prediction, label, unix_micros(ts)"
        narrow = ("correlation_id, variant, served, CAST(NULL AS STRING), CAST(NULL AS DOUBLE), CAST(NULL AS STRING), "
                  "prediction, CAST(NULL AS STRING), unix_micros(ts)")
        parts = []
        if stored:
            params["tmax"] = max(int(t) for t in thresholds.values())
            parts.append(f"SELECT {full}, sample_bucket FROM {{day}} "
                         f"WHERE sample_bucket < :tmax AND ({' OR '.join(stored)})")
            if unbucketed:
                parts.append(f"SELECT {full}, {HASH} FROM {{day}} "
                             f"WHERE sample_bucket IS NULL AND ({' OR '.join(hashed)})")
        if beyond:  # the rows the parts above return too are dropped from it in Python (in Spark: 2-3x slower)
            extremes = (f"SELECT {narrow}, coalesce(sample_bucket, {HASH}) FROM {{day}} "
                        f"WHERE variant = :candidate AND {FINITE} AND ({' OR '.join(beyond)})")
        else:
            extremes = None

        def fetch(selects: list[str], limit: int | None) -> list[LogRow]:
            # One query per part, each sorted and capped (a per-task top-K), merged here: as one UNION ALL the
            # same parts took 4-5x as long (10M rows). Code-point order of strings is Python's too.
            found = []
            for select in selects:
                query = (f"SELECT * FROM ({select}) AS u(correlation_id, variant, served, entity_id, latency_ms, "
                         f"status, prediction, label, ts_us, hb) "
                         f"ORDER BY correlation_id ASC NULLS LAST, served DESC NULLS FIRST, variant ASC NULLS LAST, "
                         f"ts_us ASC NULLS LAST" + (f" LIMIT {int(limit)}" if limit else ""))
                used = {k: v for k, v in params.items() if re.search(f":{k}\\b", query)}
                part = self._sql(query, day=self._day(model_name, day), **used).collect()
                if limit and len(part) >= limit:
                    return [None] * limit  # the cap is reached: the caller fetches the sample alone
                if select is extremes:  # a row the sample's parts return too is theirs
                    part = [r for r in part if not in_sample(r.variant, bool(r.served), r.hb, thresholds)]
                found += part
            found.sort(key=lambda r: (r.correlation_id is None, r.correlation_id or "", not r.served, r.variant,
                                      r.ts_us))
            return [LogRow(r.correlation_id, r.variant, bool(r.served), r.entity_id, r.latency_ms, r.status,
                           r.prediction, r.label, from_micros(r.ts_us), None if r.hb is None else int(r.hb))
                    for r in (found[:limit] if limit else found)]

        rows = fetch(parts + ([extremes] if extremes else []), cap)
        if len(rows) >= cap or (rows and rows[0] is None):
            log.info("sample and extremes hit the cap of %d rows: fetching them apart", cap)
            return fetch(parts, None), False
        return rows, True

    def extreme_side(self, model_name: str, day: dt.date, candidate: str, side: str, k: int) -> list[Found]:
        order = "DESC" if side == "high" else "ASC"
        rows = self._sql(f"""
            SELECT correlation_id, prediction, unix_micros(ts) AS ts_us FROM {{day}}
            WHERE variant = :candidate AND {FINITE}
            ORDER BY prediction {order}, correlation_id ASC NULLS LAST LIMIT {int(k)}""",
            day=self._day(model_name, day), candidate=candidate, absurd=ABSURD_VALUE).collect()
        return [Found(side, r.correlation_id, float(r.prediction), from_micros(r.ts_us)) for r in rows]

    def with_stable_answers(self, model_name: str, day: dt.date, stable: str,
                            found: list[Found]) -> tuple[Extreme, ...]:
        """The stable model's answer to each extreme's request, looked up near the candidate's answer in time."""
        ids = sorted({f.correlation_id for f in found if f.correlation_id is not None})
        answers: dict[str, float | None] = {}
        if ids:
            windows: list[list[int]] = []
            for ts in sorted(f.ts for f in found if f.correlation_id is not None):
                a, b = micros(ts - STABLE_ANSWER_WINDOW), micros(ts + STABLE_ANSWER_WINDOW)
                if windows and a <= windows[-1][1]:
                    windows[-1][1] = b
                else:
                    windows.append([a, b])
            params: dict[str, object] = {"stable": stable}
            near = []
            for i, (a, b) in enumerate(windows):
                params[f"a{i}"], params[f"b{i}"] = a, b
                near.append(f"(unix_micros(ts) >= :a{i} AND unix_micros(ts) <= :b{i})")  # see IN_RANGE
            listed = []
            for i, cid in enumerate(ids):
                params[f"id{i}"] = cid
                listed.append(f":id{i}")
            rows = self._sql(f"""
                SELECT correlation_id, prediction, unix_micros(ts) AS ts_us FROM {{day}}
                WHERE variant = :stable AND ({' OR '.join(near)}) AND correlation_id IN ({', '.join(listed)})""",
                day=self._day(model_name, day), **params).collect()
            # The earliest answer wins. Sorted here, not by Spark: an ORDER BY costs a sampling job and a shuffle.
            for r in sorted(rows, key=lambda r: r.ts_us):
                answers.setdefault(r.correlation_id, None if r.prediction is None else float(r.prediction))
        return tuple(Extreme(f.correlation_id, f.prediction, answers.get(f.correlation_id), f.side) for f in found)

    def label_counts(self, model_name: str, day: dt.date) -> list[CountRow]:
        rows = self._sql("""
            SELECT variant, served, label, count(*) AS n FROM {day} WHERE label IS NOT NULL
            GROUP BY variant, served, label
            ORDER BY n DESC, variant ASC, served ASC, label ASC LIMIT 500""",
            day=self._day(model_name, day)).collect()
        return [CountRow(r.variant, bool(r.served), r.label, int(r.n)) for r in rows]

    def feedback_by_variant(self, model_name: str, day: dt.date) -> list[FeedbackAgg]:
        """Feedback about the day's requests (arrived within FEEDBACK_WINDOW), joined on correlation id, per kind."""
        lo, hi = day_bounds(day)
        feedback = self._feedback(model_name, lo, hi + FEEDBACK_WINDOW)
        if feedback is None:  # no feedback folder in the window: no join (it would still read the whole day)
            return []
        # As in the database: NaN (which Spark sorts above +Infinity), the infinities and absurd values are
        # counted as broken and kept out of the mean.
        rows = self._sql(f"""
            SELECT p.variant, p.served, f.kind, count(*) AS n,
                   avg(CASE WHEN {FINITE.replace('prediction', 'p.prediction')}
                                 AND {FINITE.replace('prediction', 'f.value')}
                            THEN abs(p.prediction - f.value) END) AS abs_err,
                   avg(CASE WHEN f.label IS NOT NULL
                            THEN CASE WHEN p.label = f.label THEN 1.0D ELSE 0.0D END END) AS acc,
                   count_if({NONFINITE.replace('prediction', 'f.value')}) AS broken
            FROM {{feedback}} f JOIN {{day}} p ON p.correlation_id = f.correlation_id
            GROUP BY p.variant, p.served, f.kind""",
            feedback=feedback, day=self._day(model_name, day), absurd=ABSURD_VALUE).collect()
        return [FeedbackAgg(r.variant, bool(r.served), r.kind, int(r.n), r.abs_err, r.acc, int(r.broken))
                for r in rows]

    def sample_feedback(self, model_name: str, rows: list[LogRow], thresholds: dict[Key, int],
                        lo: dt.datetime, hi: dt.datetime) -> list[FeedbackItem]:
        """The ``actual`` and ``complaint`` feedback with ts in [lo, hi) about the sampled rows' requests only.

        The sampled ids go to Spark as a small table, joined (broadcast) with the window's feedback.
        """
        ids = sorted({r.correlation_id for r in rows
                      if r.correlation_id and in_sample(r.variant, r.served, r.bucket, thresholds)})
        feedback = self._feedback(model_name, lo, hi) if ids else None
        if feedback is None:
            return []
        sampled = self.spark.createDataFrame([(i,) for i in ids], "correlation_id STRING")
        kinds = {f"k{i}": kind for i, kind in enumerate(SAMPLE_FEEDBACK_KINDS)}
        found = self._sql(f"""
            SELECT /*+ BROADCAST(s) */ f.correlation_id, f.kind, unix_micros(f.ts) AS ts_us, f.value, f.label
            FROM {{feedback}} f LEFT SEMI JOIN {{sampled}} s ON f.correlation_id = s.correlation_id
            WHERE f.kind IN ({', '.join(':' + k for k in kinds)})
            ORDER BY f.correlation_id ASC NULLS LAST, f.ts ASC NULLS LAST, f.kind ASC NULLS LAST,
                     f.value ASC NULLS LAST, f.label ASC NULLS LAST""",
            feedback=feedback, sampled=sampled, **kinds).collect()
        return [FeedbackItem(r.correlation_id, r.kind, from_micros(r.ts_us), r.value, r.label) for r in found]
