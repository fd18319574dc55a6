"""The morning digest: every rollout's decision of one night on one page, pending approvals first.

Built from the stored decisions (``store.rollouts.decisions_on``); each row links to its decision's HTML
report, which sits beside the digest in ``<state>/reports``.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass
from pathlib import Path

from rollout_pipeline.domain.decide import Outcome
from rollout_pipeline.review.render import CSS, share
from rollout_pipeline.review.report import report_path


@dataclass(frozen=True)
class DigestRow:
    """One rollout's decision of the night, as the digest lists it."""

    model: str
    day: str
    decision_id: int
    action: str
    approval: str | None  # None: no approval needed; pending | approved | rejected | expired
    forced: bool
    actor: str
    before: str
    after: str
    reasons: tuple[str, ...]
    report: str  # the report's file name, beside the digest

    @property
    def pending(self) -> bool:
        return self.approval == "pending"


def approval_of(record) -> str | None:
    """A decision's approval state: its column when the store has one, else what its metrics say."""
    return getattr(record, "approval", None) or (record.metrics or {}).get("approval")


def _severity(action: str) -> int:
    """Pending approvals come first (someone has to act), then the worst outcomes: rollbacks, holds, promotions
    (an action this version does not know, first of all)."""
    try:
        return Outcome.of(action)
    except ValueError:
        return len(Outcome)


def digest_rows(records) -> tuple[DigestRow, ...]:
    """The night's decisions (``DecisionRecord``), pending approvals first, then rollbacks, holds, promotions."""
    rows = [DigestRow(r.model_name, r.day.isoformat(), r.id, r.action, approval_of(r), bool(r.forced), r.actor,
                      share(r.stage_before, r.percent_before), share(r.stage_after, r.percent_after),
                      tuple(r.reasons), report_path(r.model_name, r.day.isoformat()).name)
            for r in records]
    return tuple(sorted(rows, key=lambda x: (not x.pending, -_severity(x.action), x.model)))


def digest_path(day: str) -> Path:
    """Where the digest of ``day`` lives: <state>/reports/digest-<day>.html (beside the reports it links)."""
    return report_path("digest", day)


def render_digest_html(day: str, rows: tuple[DigestRow, ...], undecided: tuple[str, ...] = ()) -> str:
    """The digest as one self-contained HTML page; ``undecided``: active rollouts with no decision that day."""
    e = html.escape
    items = []
    for r in rows:
        badge = f' <strong class="pending">approval {e(r.approval)}</strong>' if r.approval else ""
        reasons = "".join(f"<li>{e(x)}</li>" for x in r.reasons)
        items.append(
            f'<tr class="{"pending" if r.pending else ""}"><td><a href="{e(r.report)}">{e(r.model)}</a></td>'
            f'<td class="action {e(r.action)}">{e(r.action.upper())}{" (forced)" if r.forced else ""}{badge}</td>'
            f"<td>{e(r.before)} &rarr; {e(r.after)}</td><td>#{r.decision_id} by {e(r.actor)}</td>"
            f"<td><ul>{reasons}</ul></td></tr>")
    pending = sum(r.pending for r in rows)
    body = ("<table><thead><tr><th>model</th><th>decision</th><th>stage</th><th>audit</th><th>why</th></tr></thead>"
            f"<tbody>{''.join(items)}</tbody></table>") if rows else "<p><em>no decisions that night</em></p>"
    missing = (f'<p class="undecided"><strong>No decision that night</strong> (did the nightly run fail?): '
               f'{", ".join(e(m) for m in undecided)}</p>\n') if undecided else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rollout digest {e(day)}</title>
<style>{CSS} .pending{{background:#fff6d6}} td ul{{margin:0;padding-left:1.1em}}</style></head><body>
<h1>Rollout digest &middot; {e(day)}</h1>
<p class="meta">{len(rows)} decision(s), {pending} waiting for approval; each model links to its report.</p>
{body}
{missing}</body></html>
"""


def write_digest(day: str, rows: tuple[DigestRow, ...], undecided: tuple[str, ...] = ()) -> Path:
    """Render the digest of ``day`` into its path (atomically) and return the path."""
    path = digest_path(day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render_digest_html(day, rows, undecided), encoding="utf-8")
    tmp.replace(path)
    return path


def to_json(rows: tuple[DigestRow, ...]) -> list[dict]:
    return [{**asdict(r), "reasons": list(r.reasons), "pending": r.pending} for r in rows]
