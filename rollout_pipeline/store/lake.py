"""The log contract's two tables as Parquet in a lake, laid out by day (issue #16).

Layout under a root URL (``ROLLOUT_LOGS_URL``)::

    <root>/prediction_log/day=YYYY-MM-DD/part-<id>.parquet
    <root>/feedback/day=YYYY-MM-DD/part-<id>.parquet

The columns are the contract's (``store.tables``), ``ts`` a UTC timestamp in
microseconds; a row lives under the day of its own ``ts`` (feedback too: feedback
about a day's requests may sit under the next two days). Rows are sorted by model
within each row group, so a reader filtering on one model skips the other models'
pages by their statistics. Spark (``store.spark_summary``) reads this layout; this
module writes it with pyarrow (``export-logs`` from the database, ``simulate --sink``).

``prediction_log`` files also hold ``sample_bucket``: Spark's ``pmod(xxhash64(correlation_id),
10000)``, computed here (``store.buckets``) so that a day's hash sample is not hashed when read.
Each row group holds the rows of one band of buckets (``BUCKET_BANDS``), so its
``sample_bucket`` statistics let Spark skip every row group above a sample's threshold: a
sample of 0.2% of a day reads ~0.6% of its rows. Files written before the column existed read
it as NULL, and those rows are hashed when read, as before.

A part file is written under a hidden name (``.part-….parquet.tmp``, which Spark and
pyarrow skip) and renamed when complete, so a reader never sees half a file. A local
root's path is taken literally (no percent-decoding): ``parquet:///data/my logs``.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
import uuid
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from rollout_pipeline.store.buckets import xxhash64_buckets

LOGS_URL_ENV = "ROLLOUT_LOGS_URL"
TABLES = ("prediction_log", "feedback")
COLUMNS = {
    "prediction_log": ("correlation_id", "ts", "model_name", "variant", "served", "entity_id", "latency_ms",
                       "status", "prediction", "label"),
    "feedback": ("correlation_id", "ts", "model_name", "kind", "value", "label"),
}
# Bucket bands of the prediction log's row groups (lower bounds): a sample with threshold t reads the bands below t.
# A day of n requests per population is sampled below 10,000 * 10,000 / n: 20 at 5M, 200 at 500k, 2,000 at 50k.
BUCKET_BANDS = (0, 16, 64, 256, 1024, 4096)
REMOTE_SCHEMES = ("s3a", "s3", "gs", "abfss", "hdfs")
# Rows per row group, and per read from the database in export-logs. Python holds a batch as row objects:
# exporting 1M rows from PostgreSQL peaked at 246 MB RSS with 50,000 (515 MB with 200,000, 158 MB with 2,000).
DEFAULT_BATCH_ROWS = 50_000


class LakeUrlError(ValueError):
    """A logs URL this source cannot read (one line, naming what is wrong)."""


def lake_root(url: str) -> str:
    """The Spark-readable root of a logs URL, without a trailing slash.

    ``parquet:///abs/path`` and ``file:///abs/path`` give ``file:///abs/path``; ``s3a://``,
    ``s3://``, ``gs://``, ``abfss://`` and ``hdfs://`` URLs are kept as they are.
    """
    text = (url or "").strip()
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in ("parquet", "file"):
        if parts.netloc:
            raise LakeUrlError(f"logs URL {text!r}: use three slashes and an absolute path, e.g. parquet:///data/logs")
        if not parts.path.startswith("/") or parts.path.rstrip("/") == "":
            raise LakeUrlError(f"logs URL {text!r}: the path must be absolute, e.g. parquet:///data/logs")
        if parts.query or parts.fragment:
            raise LakeUrlError(f"logs URL {text!r}: no query or fragment allowed")
        return "file://" + parts.path.rstrip("/")
    if scheme in REMOTE_SCHEMES:
        if not parts.netloc:
            raise LakeUrlError(f"logs URL {text!r}: name the bucket or host, e.g. {scheme}://bucket/logs")
        return text.rstrip("/")
    raise LakeUrlError(f"unsupported logs URL {text!r}: use parquet:///abs/path or one of "
                       f"{', '.join(s + '://' for s in REMOTE_SCHEMES)}")


def day_dir(root: str, table: str, day: dt.date) -> str:
    """The folder of one table's day under a root from ``lake_root``."""
    if table not in TABLES:
        raise ValueError(f"unknown log table {table!r}: one of {', '.join(TABLES)}")
    return f"{root}/{table}/day={day.isoformat()}"


def _arrow():
    try:
        import pyarrow as pa
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq
    except ImportError:
        raise LakeUrlError("writing Parquet logs needs pyarrow: pip install 'rollout-pipeline[spark]'") from None
    return pa, pafs, pq


def arrow_schema(table: str):
    """The pyarrow schema of a log table in the lake."""
    pa, _, _ = _arrow()
    ts = pa.timestamp("us", tz="UTC")
    if table == "prediction_log":
        fields = [("correlation_id", pa.string()), ("ts", ts), ("model_name", pa.string()),
                  ("variant", pa.string()), ("served", pa.bool_()), ("entity_id", pa.string()),
                  ("latency_ms", pa.float64()), ("status", pa.string()), ("prediction", pa.float64()),
                  ("label", pa.string()), ("sample_bucket", pa.int32())]
    elif table == "feedback":
        fields = [("correlation_id", pa.string()), ("ts", ts), ("model_name", pa.string()), ("kind", pa.string()),
                  ("value", pa.float64()), ("label", pa.string())]
    else:
        raise ValueError(f"unknown log table {table!r}: one of {', '.join(TABLES)}")
    return pa.schema([pa.field(name, kind, nullable=name not in ("ts", "model_name", "variant", "served", "kind"))
                      for name, kind in fields])


def _filesystem(root: str):
    """(pyarrow filesystem, path of the root in it). ``s3a://`` is read as ``s3://`` by pyarrow."""
    _, pafs, _ = _arrow()
    if root.startswith("file://"):  # a local path is taken literally (from_uri refuses spaces, for one)
        return pafs.LocalFileSystem(), root[len("file://"):]
    uri = "s3://" + root[len("s3a://"):] if root.startswith("s3a://") else root
    return pafs.FileSystem.from_uri(uri)


def _day_of(ts: dt.datetime) -> dt.date:
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts.isoformat()} has no time zone: log timestamps are UTC-aware")
    return ts.astimezone(dt.UTC).date()


class LakeWriter:
    """Writes log rows into the day layout; each (table, day) gets one new part file per writer.

    ``append`` takes rows with the table's columns — mappings (extra keys ignored) or
    tuples in the contract's column order (``domain.records.PredictionRow`` /
    ``FeedbackRow``) — and may be called many times; rows are buffered ``batch_rows``
    at a time and written as row groups, so memory stays bounded whatever the day's
    size. ``replace_days`` makes the writer replace days instead of adding to them
    (``export-logs`` re-exporting a day must not double it). Files appear under their
    final names at ``close`` (use the writer as a context manager). Not thread-safe:
    callers from several threads hold a lock around ``append``.
    """

    def __init__(self, url: str, *, batch_rows: int = DEFAULT_BATCH_ROWS):
        if batch_rows < 1:
            raise ValueError("batch_rows must be >= 1")
        self.root = lake_root(url)
        self._pa, self._pafs, self._pq = _arrow()
        self._fs, self._base = _filesystem(self.root)
        self._batch_rows = batch_rows
        self._buffers: dict[tuple[str, dt.date], list[tuple]] = {}
        # prediction_log rows with their bucket, per (day, band), until a band has a row group's worth
        self._bands: dict[tuple[dt.date, int], list[Any]] = {}  # pyarrow tables
        self._writers: dict[tuple[str, dt.date], tuple[Any, str, str]] = {}
        self._replaced: dict[str, None] = {}  # old files to delete at close (ordered set)
        self.rows_written: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.rows_kept: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.files: list[str] = []

    def __enter__(self) -> LakeWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(discard=exc_type is not None)

    def _dir(self, table: str, day: dt.date) -> str:
        return f"{self._base}/{table}/day={day.isoformat()}"

    def replace_days(self, table: str, days: Iterable[dt.date], *,
                     only_models: Collection[str] | None = None) -> None:
        """Make what this writer writes replace what the lake holds for these days of ``table``.

        The files there now are deleted at ``close``, once the new ones are complete, so a
        writer that fails or is discarded leaves the days as they were. With ``only_models``
        only those models' rows are replaced: the other models' rows are copied from the old
        files into this writer's now (a batch at a time), so re-exporting one model keeps them.
        """
        if table not in TABLES:
            raise ValueError(f"unknown log table {table!r}: one of {', '.join(TABLES)}")
        pafs = self._pafs
        own = {hidden for _, hidden, _ in self._writers.values()}
        for day in days:
            selector = pafs.FileSelector(self._dir(table, day), allow_not_found=True, recursive=True)
            old = sorted(info.path for info in self._fs.get_file_info(selector)
                         if info.type == pafs.FileType.File and info.path not in own
                         and info.path not in self._replaced)
            if only_models is not None:
                for path in old:
                    if _visible(path):
                        self._keep_other_models(table, path, only_models)
            self._replaced.update(dict.fromkeys(old))

    def _keep_other_models(self, table: str, path: str, models: Collection[str]) -> None:
        import pyarrow.compute as pc

        drop = self._pa.array(sorted(models), type=self._pa.string())
        with self._fs.open_input_file(path) as source:
            for batch in self._pq.ParquetFile(source).iter_batches(batch_size=self._batch_rows):
                kept = batch.filter(pc.invert(pc.is_in(batch.column("model_name"), value_set=drop)))
                if kept.num_rows:
                    self.rows_kept[table] += self.append(table, kept.to_pylist(), count=False)

    def append(self, table: str, rows: Iterable[Mapping[str, Any] | tuple], *, count: bool = True) -> int:
        """Buffer rows (mappings with the table's columns, or tuples in their order); returns how many were taken."""
        if table not in TABLES:
            raise ValueError(f"unknown log table {table!r}: one of {', '.join(TABLES)}")
        columns = COLUMNS[table]
        taken = 0
        for row in rows:
            if isinstance(row, tuple):
                if len(row) != len(columns):
                    raise ValueError(f"{table} row has {len(row)} fields, expected {len(columns)} {columns}")
            else:
                row = tuple(row.get(name) for name in columns)
            key = (table, _day_of(row[1]))
            buffer = self._buffers.setdefault(key, [])
            buffer.append(row)
            taken += 1
            if len(buffer) >= self._batch_rows:
                self._flush(key)
        if count:
            self.rows_written[table] += taken
        return taken

    def _flush(self, key: tuple[str, dt.date], *, final: bool = False) -> None:
        rows = self._buffers.pop(key, [])
        table, day = key
        if table != "prediction_log":
            if rows:
                self._write_group(key, self._table(table, rows))
            return
        # Each row's bucket, then the rows of each band apart; a band is written when it has a row group's worth.
        import numpy as np

        bands = self._bands
        if rows:
            buckets = xxhash64_buckets([r[0] for r in rows])
            batch = self._table(table, rows, buckets)
            band_of = np.searchsorted(BUCKET_BANDS, [0 if b is None else b for b in buckets], side="right") - 1
            for band in np.unique(band_of).tolist():
                bands.setdefault((day, band), []).append(batch.take(np.flatnonzero(band_of == band)))
        for band in range(len(BUCKET_BANDS)):
            held = bands.pop((day, band), [])
            count = sum(t.num_rows for t in held)
            if not held or (count < self._batch_rows and not final):
                if held:
                    bands[(day, band)] = held
                continue
            whole = self._pa.concat_tables(held)
            start = 0
            while count - start >= self._batch_rows or (final and start < count):
                self._write_group(key, whole.slice(start, self._batch_rows))
                start += self._batch_rows
            if start < count:
                bands[(day, band)] = [whole.slice(start)]

    def _table(self, table: str, rows: list[tuple], buckets: list[int | None] | None = None):
        """Rows (tuples in the contract's order) as a pyarrow table of the lake's schema."""
        pa = self._pa
        schema = arrow_schema(table)
        columns = dict(zip(COLUMNS[table], zip(*rows)))
        if buckets is not None:
            columns["sample_bucket"] = buckets
        return pa.table({name: pa.array(columns[name], type=schema.field(name).type) for name in schema.names},
                        schema=schema)

    def _write_group(self, key: tuple[str, dt.date], batch) -> None:
        """Write one row group, sorted by model then ts (a stable sort: equal keys keep their order)."""
        table, day = key
        batch = batch.sort_by([("model_name", "ascending"), ("ts", "ascending")])
        schema = batch.schema
        if key not in self._writers:
            folder = self._dir(table, day)
            self._fs.create_dir(folder, recursive=True)
            name = f"part-{uuid.uuid4().hex}.parquet"
            hidden = f"{folder}/.{name}.tmp"
            self._writers[key] = (self._pq.ParquetWriter(hidden, schema, filesystem=self._fs,
                                                         compression="zstd"), hidden, f"{folder}/{name}")
        self._writers[key][0].write_table(batch)

    def close(self, *, discard: bool = False) -> None:
        """Write what is buffered, delete the files being replaced and give the new part files their final
        names (with ``discard``, or when writing fails: remove the new files and leave the lake as it was)."""
        try:
            if not discard:
                for key in sorted(set(self._buffers) | {("prediction_log", day) for day, _ in self._bands}):
                    self._flush(key, final=True)
            for writer, _, _ in self._writers.values():
                writer.close()
        except BaseException:
            discard = True
            raise
        finally:
            parts = [(hidden, final) for _, hidden, final in self._writers.values()]
            self._buffers.clear()
            self._bands.clear()
            self._writers.clear()
            if discard:
                self._replaced.clear()
                for hidden, _ in parts:
                    if self._fs.get_file_info(hidden).type == self._pafs.FileType.File:
                        self._fs.delete_file(hidden)
        if discard:
            return
        # The old files go first: a reader may briefly find a day empty, never doubled.
        for path in self._replaced:
            self._fs.delete_file(path)
        self._replaced.clear()
        for hidden, final in parts:
            self._fs.move(hidden, final)
            self.files.append(final)


def _visible(path: str) -> bool:
    """False for the hidden files readers skip (``.…`` and ``_…``, e.g. a crashed writer's ``.part-….tmp``)."""
    name = path.rsplit("/", 1)[-1]
    return not name.startswith((".", "_"))
