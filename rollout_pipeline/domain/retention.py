"""Retention rules: when an inactive variant is torn down, and when a rollback is still possible.

Pure functions over routing records; no SQL, no Dagster.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from rollout_pipeline.domain.routing import VariantRoute


@dataclass(frozen=True)
class RetentionVerdict:
    """One inactive variant on one day: torn down now, or kept (and for how many more days)."""

    variant: str
    inactive_since: dt.date | None
    days_inactive: int
    retention_days: int
    due: bool

    @property
    def days_left(self) -> int:
        """Days the variant is still kept (0 when it is due)."""
        return 0 if self.due else self.retention_days + 1 - self.days_inactive

    def as_dict(self, model: str) -> dict:
        """The verdict as the retention job and ``teardown --json`` report a kept variant."""
        return {"model": model, "variant": self.variant, "reason": self.reason, "days_left": self.days_left}

    @property
    def reason(self) -> str:
        since = self.inactive_since.isoformat() if self.inactive_since else "an unknown day"
        if self.due:
            return (f"{self.variant} inactive since {since} ({self.days_inactive} days) "
                    f"> retention {self.retention_days} days")
        return f"{self.variant} inactive since {since}: kept {self.days_left} more day(s) (retention {self.retention_days})"


def retention_verdicts(routes: Iterable[VariantRoute], retention_days: int, day: dt.date) -> list[RetentionVerdict]:
    """For each inactive variant: is it due for teardown on ``day``?

    A variant is torn down once it has been inactive for *longer* than the
    retention window: inactive since D with 3 retention days, it is still
    deployable (and a rollback is instant) on D+1..D+3 and torn down on D+4.
    An inactive variant without a date (older data) is due at once.
    """
    out = []
    for r in routes:
        if r.role != "inactive":
            continue
        days = (day - r.inactive_since).days if r.inactive_since else retention_days + 1
        out.append(RetentionVerdict(r.variant, r.inactive_since, days, retention_days, days > retention_days))
    return out


def retired_route(route: VariantRoute) -> VariantRoute:
    """The route of a torn-down variant: no traffic, no shadow, kept in the routing as a record."""
    return VariantRoute(route.variant, "retired", 0.0, False, route.inactive_since)
