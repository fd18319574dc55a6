"""How a step fails: a refusal is final, a database error says what it is, and only transient ones are retried."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

import dagster as dg
import sqlalchemy as sa

INFRASTRUCTURE = "infrastructure"
REFUSED = "refused"
# One retry policy for transient database errors, on every step: the daily assets, their asset checks, and the
# routing, retention, guardrail, approval and backtest ops. A connection lost or a server restarted is tried again
# after 5 s, then 10 s. Refusals and a database that refuses us fail at once (``refuse``, ``database_errors``:
# ``dg.Failure(allow_retries=False)``).
DATABASE_RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL)
# Errors no retry can fix: wrong credentials, a database or role that does not exist, missing rights.
_PERMANENT = ("authentication failed", "password authentication", "no password supplied", "does not exist",
              "permission denied", "no pg_hba.conf entry")


def refuse(message: str) -> dg.Failure:
    """A failure that retrying cannot fix (bad input or a refused decision): no retries, one line."""
    return dg.Failure(description=message, allow_retries=False, metadata={"kind": REFUSED})


def config_day(name: str, value: str) -> dt.date:
    """A day from run config (YYYY-MM-DD), or a refusal naming the field."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise refuse(f"{name} {value!r} is not a date: use YYYY-MM-DD") from None


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (a driver's error, not SQLAlchemy's wrapping of it)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_permanent(exc: BaseException) -> bool:
    message = str(getattr(exc, "orig", None) or exc).lower()
    return any(p in message for p in _PERMANENT)


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Turn a database that refuses us into one final line; let transient errors reach the retry policy."""
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        if is_permanent(exc):
            raise dg.Failure(description=f"cannot connect to the database: {first_line(exc)}",
                             allow_retries=False, metadata={"kind": INFRASTRUCTURE}) from None
        raise
