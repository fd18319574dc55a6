"""Engines and URL handling: the one place a database URL is interpreted."""

from __future__ import annotations

import math
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from rollout_pipeline.store.buckets import blake2b_bucket

_POSTGRES_ALIASES = {"postgres", "postgresql", "postgresql+psycopg2"}


class DatabaseUrlError(ValueError):
    """The database URL cannot be used."""


def normalize_url(url: str | URL) -> URL:
    """Parse a URL and pin PostgreSQL to psycopg2.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which is not a
    dependency of ours; ``postgres://`` (Heroku style) is accepted too.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL inside: keep the secret out
        raise DatabaseUrlError(f"not a database URL: {redact(str(url))}") from exc
    if parsed.drivername in _POSTGRES_ALIASES:
        return parsed.set(drivername="postgresql+psycopg2")
    if parsed.drivername.startswith("postgresql+"):
        raise DatabaseUrlError(
            f"unsupported PostgreSQL driver {parsed.drivername!r}: use postgresql:// (psycopg2 is the driver we ship)"
        )
    if parsed.drivername in {"sqlite", "sqlite+pysqlite"}:
        return parsed
    raise DatabaseUrlError(f"unsupported database {parsed.drivername!r}: use postgresql:// or sqlite:///")


def redact(url: str | URL) -> str:
    """The URL with its password hidden, for logs and messages."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception:
        return "<unparseable database URL>"
    return parsed.render_as_string(hide_password=True)


def _sqlite_ln1p(value: float | None) -> float | None:
    return None if value is None or value <= -1 else math.log1p(value)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # The SQL functions store.summary needs that SQLite lacks (PostgreSQL has its own).
    dbapi_connection.create_function("rp_hash_bucket", 1, blake2b_bucket, deterministic=True)
    dbapi_connection.create_function("rp_ln1p", 1, _sqlite_ln1p, deterministic=True)
    cursor = dbapi_connection.cursor()
    # WAL lets the pipeline read while a writer appends; NORMAL is durable enough with WAL.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str | URL, **kwargs) -> Engine:
    """An Engine for a normalized URL; SQLite files get their folder created and WAL mode."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(parsed, **kwargs)


def is_postgres(engine: Engine | sa.Connection) -> bool:
    """True when the engine or connection speaks PostgreSQL."""
    return engine.dialect.name == "postgresql"
