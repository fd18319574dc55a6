"""Which days can be decided: one rule for `decide`, backtests and their Dagster jobs."""

from __future__ import annotations

import datetime as dt


def not_over(day: dt.date, today: dt.date | None = None) -> str | None:
    """Why ``day`` cannot be decided yet (it is today or in the future, UTC), or None once it is over."""
    today = today or dt.datetime.now(dt.UTC).date()
    if day < today:
        return None
    what = "today" if day == today else "in the future"
    return f"{day} is {what}: a day can be decided once it is over (UTC), i.e. up to {today - dt.timedelta(days=1)}"
