"""Day partitions of the log tables on PostgreSQL.

Partitions are created ahead of time (``init-db``, the nightly job, and the bulk
writer for the days it sees). A row whose day has no partition lands in the
default partition, so no write is ever rejected for its date; creating that
day's partition later moves such rows into it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable

import sqlalchemy as sa

from rollout_pipeline.store.engine import is_postgres
from rollout_pipeline.store.tables import LOG_TABLES

log = logging.getLogger(__name__)

# Serializes partition DDL between concurrent writers (an arbitrary, fixed key).
_PARTITION_LOCK_KEY = 7_261_001


def partition_name(table: str, day: dt.date) -> str:
    """Name of the partition of ``table`` that holds ``day``."""
    if table not in LOG_TABLES:
        raise ValueError(f"not a partitioned log table: {table!r}")
    return f"{table}_p{day:%Y%m%d}"


def existing_partitions(connection: sa.Connection, table: str) -> set[str]:
    """Names of the partitions attached to ``table`` (default included)."""
    rows = connection.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relname = :parent AND p.relnamespace = to_regnamespace(current_schema())"
        ),
        {"parent": table},
    )
    return set(rows.scalars())


def _bounds(day: dt.date) -> tuple[str, str]:
    # Literals built from date objects only: partition bounds cannot be bind parameters.
    lo = dt.datetime.combine(day, dt.time(), dt.UTC)
    return lo.isoformat(), (lo + dt.timedelta(days=1)).isoformat()


def _create_one(connection: sa.Connection, table: str, day: dt.date) -> bool:
    name = partition_name(table, day)
    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PARTITION_LOCK_KEY})
    if name in existing_partitions(connection, table):
        return False
    lo, hi = _bounds(day)
    in_default = connection.execute(
        sa.text(f"SELECT count(*) FROM {table}_default WHERE ts >= :lo AND ts < :hi"), {"lo": lo, "hi": hi}
    ).scalar_one()
    if in_default:
        # Rows of this day were caught by the default partition: move them into the new one.
        connection.execute(sa.text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
        connection.execute(
            sa.text(f"INSERT INTO {name} SELECT * FROM {table}_default WHERE ts >= :lo AND ts < :hi"),
            {"lo": lo, "hi": hi},
        )
        connection.execute(sa.text(f"DELETE FROM {table}_default WHERE ts >= :lo AND ts < :hi"), {"lo": lo, "hi": hi})
        connection.execute(sa.text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')"))
        log.info("created partition %s and moved %d rows into it from %s_default", name, in_default, table)
    else:
        connection.execute(sa.text(f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ('{lo}') TO ('{hi}')"))
        log.debug("created partition %s", name)
    return True


def ensure_day_partitions(engine: sa.Engine, days: Iterable[dt.date], tables: Iterable[str] = LOG_TABLES) -> list[str]:
    """Create the missing day partitions of the log tables; returns the names created.

    A no-op on SQLite. Each partition is created in its own short transaction so
    that no lock on the parent table is held while rows are being written.
    """
    if not is_postgres(engine):
        return []
    days = sorted(set(days))
    tables = list(tables)
    with engine.connect() as connection:
        existing = {table: existing_partitions(connection, table) for table in tables}
    missing = [(t, d) for t in tables for d in days if partition_name(t, d) not in existing[t]]
    created = []
    for table, day in missing:
        try:
            with engine.begin() as connection:
                if _create_one(connection, table, day):
                    created.append(partition_name(table, day))
        except sa.exc.ProgrammingError as exc:
            if getattr(exc.orig, "pgcode", None) != "42501":  # insufficient_privilege
                raise
            # A least-privilege role (the serving side, docs/reliability.md) may not do partition DDL:
            # its rows go to the default partition; the owner's init-db moves them into the day's partition.
            log.warning("no privilege to create day partitions (%s): rows of %s go to the default partition "
                        "until the tables' owner runs `rollout-pipeline init-db`",
                        exc.orig.diag.message_primary, ", ".join(sorted({str(d) for _, d in missing})))
            break
    if created:
        log.info("created %d day partitions: %s", len(created), ", ".join(created))
    return created


def ensure_partitions_around(engine: sa.Engine, today: dt.date, days_back: int = 1, days_ahead: int = 7) -> list[str]:
    """Create the partitions for ``today - days_back`` .. ``today + days_ahead``."""
    return ensure_day_partitions(engine, (today + dt.timedelta(days=k) for k in range(-days_back, days_ahead + 1)))


def drop_day_partitions_before(engine: sa.Engine, cutoff: dt.date, tables: Iterable[str] = LOG_TABLES) -> list[str]:
    """Drop whole day partitions of the log tables for days before ``cutoff``; returns the names dropped.

    Log retention on PostgreSQL: a partition is dropped as a unit (never
    row-by-row deletes). Rows caught by the default partition are left alone.
    On SQLite there are no partitions and nothing is dropped.
    """
    if not is_postgres(engine):
        return []
    dropped = []
    for table in tables:
        with engine.connect() as connection:
            names = sorted(existing_partitions(connection, table))
        prefix = f"{table}_p"
        for name in names:
            suffix = name[len(prefix):] if name.startswith(prefix) else ""
            if len(suffix) != 8 or not suffix.isdigit():
                continue
            if dt.datetime.strptime(suffix, "%Y%m%d").date() >= cutoff:
                continue
            with engine.begin() as connection:
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PARTITION_LOCK_KEY})
                # The name comes from the catalog and matched table_pYYYYMMDD: safe to interpolate.
                connection.execute(sa.text(f"ALTER TABLE {table} DETACH PARTITION {name}"))
                connection.execute(sa.text(f"DROP TABLE {name}"))
            dropped.append(name)
    if dropped:
        log.info("log retention: dropped %d day partitions before %s: %s", len(dropped), cutoff, ", ".join(dropped))
    return dropped


def analyze_stale_day(engine: sa.Engine, table: str, day: dt.date) -> str | None:
    """Give ``day``'s partition of ``table`` statistics if it has none worth the name; the outcome, or None.

    A day partition gets statistics only when autovacuum analyzes it, a minute or
    more after rows arrive. Deciding a day just loaded would otherwise plan every
    query for a few dozen rows (a bitmap scan of the whole day for a 20-row lookup,
    a sort of the whole day on disk for a grouped scan). ``ANALYZE`` samples 30,000
    rows (well under a second) and runs, in its own committed transaction, when the
    partition was never analyzed or has more than doubled in size since. A role
    that does not own the partition may not analyze it: that is logged, and the
    queries still run, only slower. Nothing is done on SQLite.
    """
    if not is_postgres(engine):
        return None
    name = partition_name(table, day)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        # From the catalog, not the cumulative statistics (a writer's counters reach those
        # only when its session goes idle): reltuples is -1 until the first ANALYZE, and
        # relpages is the size the statistics were taken at.
        row = connection.execute(sa.text(
            "SELECT c.reltuples < 0 AS never, c.relpages, "
            "       pg_relation_size(c.oid) / current_setting('block_size')::int AS pages, "
            "       pg_has_role(c.relowner, 'USAGE') AS owner "
            "FROM pg_class c WHERE c.oid = to_regclass(:name)"), {"name": name}).one_or_none()
        if row is None or row.pages == 0:
            return None
        if not (row.never or row.pages > 2 * row.relpages):
            return None
        why = "no statistics yet" if row.never else f"statistics taken at {row.relpages} of its {row.pages} pages"
        if not row.owner:
            outcome = f"{name} has {why} and this role does not own it: the day is read without fresh statistics"
            log.warning(outcome)
            return outcome
        started = time.perf_counter()
        # ``name`` is table_pYYYYMMDD built from a date and a known table: safe to interpolate.
        connection.execute(sa.text(f"ANALYZE {name}"))
    outcome = f"analyzed {name} ({why}) in {time.perf_counter() - started:.2f} s"
    log.info(outcome)
    return outcome
