"""A model's audit on one timeline: its decisions, its routing changes and its teardowns, oldest first.

Pure: built from the stored rows (``DecisionRecord``, routing history rows, ``TeardownRecord``), rendered by the
CLI's ``history`` as lines and as JSON.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

KIND_ORDER = {"decision": 0, "routing": 1, "teardown": 2}  # a decision comes before the routing change it made


@dataclass(frozen=True)
class Event:
    """One entry of the audit: what happened, when, by whom, and why."""

    kind: str  # decision | routing | teardown
    at: dt.datetime | None
    day: dt.date | None  # the day it is about (a decision's or a teardown's day), None for a routing change
    actor: str
    summary: str
    details: tuple[str, ...] = ()
    data: dict = field(default_factory=dict)  # the row's own fields, for --json

    def as_dict(self) -> dict:
        return {"kind": self.kind, "at": self.at.isoformat() if self.at else None,
                "day": self.day.isoformat() if self.day else None, "actor": self.actor, "summary": self.summary,
                "details": list(self.details), **self.data}


def _utc(at: dt.datetime | None) -> dt.datetime | None:
    if at is None:
        return None
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)


def routes_text(config) -> str:
    """A routing config (the stored list of routes) in a few words: "v2 candidate 5%, v1 stable 95% (shadow)"."""
    parts = []
    for r in config or ():
        shadow = " (shadow)" if r.get("shadow") else ""
        parts.append(f"{r['variant']} {r['role']} {float(r['traffic_percent']):g}%{shadow}")
    return ", ".join(parts)


def decision_event(d, superseded_by: int | None = None) -> Event:
    later = f" [superseded by #{superseded_by}]" if superseded_by else ""
    summary = (f"decision #{d.id} {d.action.upper()}{' (forced)' if d.forced else ''}: {d.stage_before} "
               f"{d.percent_before}% -> {d.stage_after} {d.percent_after}%{later}")
    data = {"id": d.id, "action": d.action, "forced": d.forced, "reasons": list(d.reasons),
            "stage_before": d.stage_before, "percent_before": d.percent_before, "stage_after": d.stage_after,
            "percent_after": d.percent_after, "applied_at": d.applied_at.isoformat() if d.applied_at else None,
            "approval": getattr(d, "approval", None), "superseded_by": superseded_by}
    return Event("decision", _utc(d.created_at), d.day, d.actor, summary, tuple(d.reasons), data)


def routing_event(row) -> Event:
    why = f" for decision #{row.decision_id}" if row.decision_id else ""
    return Event("routing", _utc(row.created_at), None, row.actor,
                 f"routing v{row.version}{why}: {routes_text(row.config)}", (row.reason,) if row.reason else (),
                 {"version": row.version, "decision_id": row.decision_id, "routes": list(row.config or ())})


def teardown_event(t) -> Event:
    since = f" (inactive since {t.inactive_since})" if t.inactive_since else ""
    return Event("teardown", _utc(getattr(t, "created_at", None)), t.day, t.actor,
                 f"teardown of {t.variant} {t.status}{since}", (t.detail,) if t.detail else (),
                 {"variant": t.variant, "status": t.status, "attempts": t.attempts, "action": t.action})


def timeline(decisions, routing_rows, teardowns, superseded: dict[int, int] | None = None) -> list[Event]:
    """Every event, oldest first (by when it was recorded; a decision before the routing change it made)."""
    superseded = superseded or {}
    events = ([decision_event(d, superseded.get(d.id)) for d in decisions] + [routing_event(r) for r in routing_rows]
              + [teardown_event(t) for t in teardowns])
    floor = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(events, key=lambda e: (e.at or floor, KIND_ORDER[e.kind]))


def lines(events: list[Event]) -> list[str]:
    """The timeline as text: one line per event, its reasons or details indented under it."""
    out = []
    for e in events:
        when = e.at.strftime("%Y-%m-%d %H:%M") if e.at else "-"
        day = f" [{e.day}]" if e.day else ""
        out.append(f"{when} {e.kind:<8}{day} {e.summary} (by {e.actor})")
        out.extend(f"    - {x}" for x in e.details)
    return out
