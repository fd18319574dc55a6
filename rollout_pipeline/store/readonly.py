"""A read-only connection: for readers that must never write (backtests, what-ifs), enforced by the database."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa


@contextlib.contextmanager
def read_only(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction the database refuses to write in; rolled back at the end.

    PostgreSQL: ``SET TRANSACTION READ ONLY``. SQLite: ``PRAGMA query_only``, reset before
    the connection goes back to the pool.
    """
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA query_only = ON")
        else:
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        try:
            yield connection
        finally:
            connection.rollback()
            if sqlite:
                connection.exec_driver_sql("PRAGMA query_only = OFF")
