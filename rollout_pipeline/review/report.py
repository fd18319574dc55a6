"""The review's HTML report in the state folder: written by the decision asset and by `rollout-pipeline report`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import base64

from rollout_pipeline.config import load_settings
from rollout_pipeline.review.content import HistoryPoint, Review, history_points, review_from_record
from rollout_pipeline.review.links import PLOTS_FOLDER, partition_path
from rollout_pipeline.review.plots import review_plots
from rollout_pipeline.review.render import render_html


class NoDecision(LookupError):
    """There is no decision to report on; the message says which."""


def report_path(model: str, day: str) -> Path:
    """Where the report of ``model``'s ``day`` lives: <state>/reports/<model>-<day>.html."""
    return load_settings().state_dir / "reports" / f"{model}-{day}.html"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_report(review: Review, history: tuple[HistoryPoint, ...], plots: list[tuple[str, str]] | None = None) -> Path:
    """Render ``review`` as HTML into its report path (atomically, with a link to the day's partition in the
    Dagster UI that serves it) and return the path."""
    path = report_path(review.model, review.day)
    page = render_html(review, history, plots if plots is not None else review_plots(review, history),
                       ui_link=partition_path(review.day, review.model))
    _atomic_write(path, page.encode("utf-8"))
    return path


def write_plots(review: Review, plots: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The plots (title, base64 PNG) as PNG files beside the reports; [(title, file name under the reports)]."""
    folder = report_path(review.model, review.day).parent / PLOTS_FOLDER
    out = []
    for k, (title, png) in enumerate(plots):
        name = f"{review.model}-{review.day}-{k + 1}.png"
        _atomic_write(folder / name, base64.b64decode(png))
        out.append((title, f"{PLOTS_FOLDER}/{name}"))
    return out


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
