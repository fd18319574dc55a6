"""The review's HTML report in the state folder: written by the decision asset and by `rollout-pipeline report`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rollout_pipeline.config import load_settings
from rollout_pipeline.review.content import HistoryPoint, Review, history_points, review_from_record
from rollout_pipeline.review.plots import review_plots
from rollout_pipeline.review.render import render_html


class NoDecision(LookupError):
    """There is no decision to report on; the message says which."""


def report_path(model: str, day: str) -> Path:
    """Where the report of ``model``'s ``day`` lives: <state>/reports/<model>-<day>.html."""
    return load_settings().state_dir / "reports" / f"{model}-{day}.html"


def write_report(review: Review, history: tuple[HistoryPoint, ...], plots: list[tuple[str, str]] | None = None) -> Path:
    """Render ``review`` as HTML into its report path (atomically) and return the path."""
    path = report_path(review.model, review.day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render_html(review, history, plots if plots is not None else review_plots(review, history)),
                   encoding="utf-8")
    tmp.replace(path)
    return path


def rollout_history(records, record) -> tuple[HistoryPoint, ...]:
    """History of ``record``'s rollout up to its day, from the model's stored decisions."""
    return history_points([r for r in records if r.rollout_id == record.rollout_id], until=record.day.isoformat())


def report_for(connection, model: str, day: dt.date | None = None) -> Path:
    """Write the report of ``model``'s decision on ``day`` (default: the latest decided day) from the stored rows."""
    from rollout_pipeline.store.rollouts import decision_history

    records = decision_history(connection, model)
    if not records:
        raise NoDecision(f"no decisions for {model}")
    if day is None:
        record = records[-1]
    else:
        record = next((r for r in records if r.day == day), None)
        if record is None:
            raise NoDecision(f"no decision for {model} on {day}")
    return write_report(review_from_record(record), rollout_history(records, record))
