"""The log contract's two tables as Parquet in a lake, laid out by day (issue #16).

Layout under a root URL (``ROLLOUT_LOGS_URL``)::

    <root>/prediction_log/day=YYYY-MM-DD/part-<id>.parquet
    <root>/feedback/day=YYYY-MM-DD/part-<id>.parquet

The columns are the contract's (``store.tables``), ``ts`` a UTC timestamp in
microseconds; a row lives under the day of its own ``ts`` (feedback too: feedback
about a day's requests may sit under the next two days). Rows are sorted by model
within a file, so a reader filtering on one model skips the other models' row
groups by their statistics. Spark (``store.spark_summary``) reads this layout; this
module writes it with pyarrow (``export-logs`` from the database, ``simulate --sink``).

A part file is written under a hidden name (``.part-….parquet.tmp``, which Spark and
pyarrow skip) and renamed when complete, so a reader never sees half a file.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

LOGS_URL_ENV = "ROLLOUT_LOGS_URL"
TABLES = ("prediction_log", "feedback")
COLUMNS = {
    "prediction_log": ("correlation_id", "ts", "model_name", "variant", "served", "entity_id", "latency_ms",
                       "status", "prediction", "label"),
    "feedback": ("correlation_id", "ts", "model_name", "kind", "value", "label"),
}
REMOTE_SCHEMES = ("s3a", "s3", "gs", "abfss", "hdfs")
DEFAULT_BATCH_ROWS = 200_000  # rows per row group: ~10 MB of Python objects at a time


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
                  ("label", pa.string())]
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
    uri = "s3://" + root[len("s3a://"):] if root.startswith("s3a://") else root
    return pafs.FileSystem.from_uri(uri)


def _day_of(ts: dt.datetime) -> dt.date:
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts.isoformat()} has no time zone: log timestamps are UTC-aware")
    return ts.astimezone(dt.UTC).date()


class LakeWriter:
    """Writes log rows into the day layout; each (table, day) gets one new part file per writer.

    ``append`` takes mappings with the table's columns (extra keys ignored) and may be
    called many times; rows are buffered ``batch_rows`` at a time and written as row
    groups, so memory stays bounded whatever the day's size. ``replace_days`` empties the
    given days of a table first (``export-logs`` re-exporting a day must not double it).
    Files appear under their final names at ``close`` (use the writer as a context manager).
    """

    def __init__(self, url: str, *, batch_rows: int = DEFAULT_BATCH_ROWS):
        self.root = lake_root(url)
        self._pa, _, self._pq = _arrow()
        self._fs, self._base = _filesystem(self.root)
        self._batch_rows = batch_rows
        self._buffers: dict[tuple[str, dt.date], list[Mapping[str, Any]]] = {}
        self._writers: dict[tuple[str, dt.date], tuple[Any, str, str]] = {}
        self.rows_written: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.files: list[str] = []

    def __enter__(self) -> LakeWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(discard=exc_type is not None)

    def _dir(self, table: str, day: dt.date) -> str:
        return f"{self._base}/{table}/day={day.isoformat()}"

    def replace_days(self, table: str, days: Iterable[dt.date]) -> None:
        """Delete what the lake holds for these days of ``table`` (before writing them again)."""
        _, pafs, _ = _arrow()
        for day in days:
            path = self._dir(table, day)
            if self._fs.get_file_info(path).type == pafs.FileType.Directory:
                self._fs.delete_dir_contents(path)

    def append(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Buffer rows (mappings with the table's columns); returns how many were taken."""
        if table not in TABLES:
            raise ValueError(f"unknown log table {table!r}: one of {', '.join(TABLES)}")
        taken = 0
        for row in rows:
            key = (table, _day_of(row["ts"]))
            buffer = self._buffers.setdefault(key, [])
            buffer.append(row)
            taken += 1
            if len(buffer) >= self._batch_rows:
                self._flush(key)
        return taken

    def _flush(self, key: tuple[str, dt.date]) -> None:
        rows = self._buffers.pop(key, [])
        if not rows:
            return
        table, day = key
        pa = self._pa
        schema = arrow_schema(table)
        rows.sort(key=lambda r: (r["model_name"], r["ts"]))
        batch = pa.table({name: pa.array([r.get(name) for r in rows], type=schema.field(name).type)
                          for name in COLUMNS[table]}, schema=schema)
        if key not in self._writers:
            folder = self._dir(table, day)
            self._fs.create_dir(folder, recursive=True)
            name = f"part-{uuid.uuid4().hex}.parquet"
            hidden = f"{folder}/.{name}.tmp"
            self._writers[key] = (self._pq.ParquetWriter(hidden, schema, filesystem=self._fs,
                                                         compression="zstd"), hidden, f"{folder}/{name}")
        self._writers[key][0].write_table(batch)
        self.rows_written[table] += len(rows)

    def close(self, *, discard: bool = False) -> None:
        """Write what is buffered and give every part file its final name (or remove them with ``discard``)."""
        if not discard:
            for key in list(self._buffers):
                self._flush(key)
        self._buffers.clear()
        for writer, hidden, final in self._writers.values():
            writer.close()
            if discard:
                self._fs.delete_file(hidden)
            else:
                self._fs.move(hidden, final)
                self.files.append(final)
        self._writers.clear()
