"""A review rendered twice from the same cells: markdown for Dagster metadata, a self-contained HTML report."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

from rollout_pipeline.domain.formatting import num, pct  # one formatter for gates, review and CLI
from rollout_pipeline.review.content import HistoryPoint, Review

# Which judged metric speaks for which row of the stable-vs-candidate table.
ROW_CHECK = {"latency p50": "latency_distribution", "latency p99": "latency", "error rate": "error_rate",
             "complaint rate": "complaints", "accuracy": "accuracy", "mean absolute error": "accuracy",
             "prediction mean": "prediction_shift"}


def share(stage: str, percent: int) -> str:
    """Stage and canary share, e.g. ``canary 20%``."""
    return f"{stage} {percent}%"


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def headline(r: Review) -> str:
    """One line: the action, forced or not, and stage and share before -> after."""
    return (f"{r.action.upper()}{' (forced by ' + r.actor + ')' if r.forced else ''}: "
            f"{share(r.stage_before, r.percent_before)} -> {share(r.stage_after, r.percent_after)}")


def comparison_table(r: Review) -> Table:
    """Stable vs candidate, per metric, with the judged metric's verdict and the judge score."""
    s, c = r.side("stable"), r.side("candidate")
    verdict = {ch.name: ch.classification for ch in r.checks}

    def row(name, get, fmt):
        return (name, fmt(get(s)) if s else "n/a", fmt(get(c)) if c else "n/a", verdict.get(ROW_CHECK.get(name, ""), ""))

    rows = [
        ("variant", *((x.variant + ("" if x.served else " (shadow)")) if x else "n/a" for x in (s, c)), ""),
        row("requests", lambda x: x.requests, lambda v: f"{v:,}"),
        row("latency p50", lambda x: x.latency_p50, lambda v: num(v, " ms")),
        row("latency p95", lambda x: x.latency_p95, lambda v: num(v, " ms")),
        row("latency p99", lambda x: x.latency_p99, lambda v: num(v, " ms")),
        row("error rate", lambda x: x.error_rate, pct),
        row("complaint rate", lambda x: x.complaint_rate, pct),
    ]
    if any(x.accuracy is not None for x in (s, c) if x):
        rows.append(row("accuracy", lambda x: x.accuracy, pct))
    if any(x.abs_error_mean is not None for x in (s, c) if x):
        rows.append(row("mean absolute error", lambda x: x.abs_error_mean, num))
    rows.append(row("prediction mean", lambda x: x.prediction_mean, num))
    rows.append(("prediction shift", "", "n/a" if r.prediction_shift_sd is None else f"{r.prediction_shift_sd:+.2f} sd",
                 verdict.get("prediction_shift", "")))
    rows.append(("judge score", "", num(r.score), ""))
    return Table(("metric", "stable", "candidate", "verdict"), tuple(rows))


def checks_table(r: Review) -> Table:
    """Every judged metric: verdict, criticality, the two values and why."""
    return Table(("metric", "verdict", "criticality", "stable", "candidate", "why"),
                 tuple((c.name, c.classification, c.criticality, num(c.stable), num(c.candidate), c.reason)
                       for c in r.checks))


def verdicts_table(r: Review) -> Table:
    """Every judged metric, narrow enough for the Dagster UI at 1,400 px: the "why" is in :func:`why_lines`."""
    return Table(("metric", "verdict", "stable", "candidate"),
                 tuple((c.name, c.classification, num(c.stable), num(c.candidate)) for c in r.checks))


def why_lines(r: Review) -> tuple[tuple[str, str], ...]:
    """Each judged metric's reason, prefixed by its verdict and criticality: (metric, text)."""
    return tuple((c.name, f"{c.classification} ({c.criticality}): {c.reason}") for c in r.checks)


def key_numbers(r: Review) -> dict[str, float | int | str]:
    """The day's headline numbers as plain values (shown inline as metadata entries, no table to scroll)."""
    out: dict[str, float | int | str] = {}
    for side in r.sides:
        out[f"{side.role}_requests"] = side.requests
        for name, value in (("p99_ms", side.latency_p99), ("error_rate", side.error_rate)):
            if value is not None and math.isfinite(value):
                out[f"{side.role}_{name}"] = round(float(value), 6)
    if r.prediction_shift_sd is not None and math.isfinite(r.prediction_shift_sd):
        out["prediction_shift_sd"] = round(r.prediction_shift_sd, 4)
    return out


def validation_table(r: Review) -> Table:
    """The day's validation suites (asset checks) and what failed."""
    rows = [(v.name, "passed" if v.passed else "FAILED", "blocking" if v.severity == "ERROR" else "warning",
             "; ".join(v.failures) or "none") for v in r.validations]
    if not rows:
        rows.append(("log_quality (judgement)", "FAILED" if r.data_quality_failures else "passed", "blocking",
                     "; ".join(r.data_quality_failures) or "none"))
    return Table(("suite", "result", "kind", "failures"), tuple(rows))


def extremes_table(r: Review, id_chars: int | None = None) -> Table:
    """The most unusually high / low candidate outputs, with the correlation id to look each request up
    (cut to its first ``id_chars`` characters where space is short: the report keeps the whole id)."""
    def cid(x: str | None) -> str:
        if not x:
            return "(missing)"
        return x if id_chars is None or len(x) <= id_chars else x[:id_chars] + "…"

    return Table(("side", "correlation_id", "candidate", "stable"),
                 tuple((e.side, cid(e.correlation_id), num(e.candidate_prediction), num(e.stable_prediction))
                       for e in r.extremes))


def history_table(points: tuple[HistoryPoint, ...]) -> Table:
    """The rollout's decided days: action, share after, score."""
    return Table(("day", "action", "after", "score"),
                 tuple((p.day, p.action, share(p.stage_after, p.percent_after), num(p.score)) for p in points))


# --- markdown (Dagster metadata) -------------------------------------------------------------

# A 32-character correlation id widens the whole metadata table past 1,400 px in the Dagster UI's
# partition view; 12 characters still find the request (prefix search), the HTML report shows it whole.
MD_ID_CHARS = 12

def _md_cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def md_table(t: Table) -> str:
    if not t.rows:
        return "_none_"
    lines = ["| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def md_reasons(r: Review) -> str:
    return f"**{headline(r)}**\n\n" + "\n".join(f"- {x}" for x in r.reasons)


def md_plots(plots: list[tuple[str, str]]) -> str:
    return "\n\n".join(f"![{title}](data:image/png;base64,{png})" for title, png in plots) or "_no plots_"


def markdown_sections(r: Review, history: tuple[HistoryPoint, ...], plots: list[tuple[str, str]]) -> dict[str, str]:
    """The review as markdown, one entry per metadata key (tables kept narrow: the "why" is a list of its own)."""
    return {
        "reasons": md_reasons(r),
        "stable_vs_candidate": (f"Compared: {r.compared or 'n/a'}\n\n" if r.compared else "") + md_table(comparison_table(r)),
        "metrics": md_table(verdicts_table(r)),
        "why": "\n".join(f"- **{name}** {_md_cell(text)}" for name, text in why_lines(r)) or "_none_",
        "validation": md_table(validation_table(r)),
        "extremes": md_table(extremes_table(r, id_chars=MD_ID_CHARS)),
        "plots": md_plots(plots),
        "history": md_table(history_table(history)),
    }


# --- HTML (the report) --------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3} .action{font-size:1.2em;font-weight:bold}
.promote{color:#1f7a3a} .hold{color:#8a6d00} .rollback{color:#b3261e} img{margin:.3em;border:1px solid #eee}
.meta{color:#666;font-size:.85em}
"""


def html_table(t: Table) -> str:
    if not t.rows:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in t.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(r: Review, history: tuple[HistoryPoint, ...], plots: list[tuple[str, str]]) -> str:
    """The review as one self-contained HTML page (plots inline as data URIs)."""
    e = html.escape
    reasons = "".join(f"<li>{e(x)}</li>" for x in r.reasons)
    images = "".join(f'<img alt="{e(t)}" title="{e(t)}" src="data:image/png;base64,{png}">' for t, png in plots)
    ids = f"decision #{r.decision_id}" if r.decision_id is not None else "decision"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(r.model)} {e(r.day)}: {e(r.action)}</title>
<style>{CSS}</style></head><body>
<h1>{e(r.model)} &middot; {e(r.day)}</h1>
<p class="action {e(r.action)}">{e(headline(r))}</p>
<p class="meta">{e(ids)} by {e(r.actor)}{' &middot; Dagster run ' + e(r.run_id) if r.run_id else ''}
{' &middot; compared: ' + e(r.compared) if r.compared else ''}</p>
<h2>Why</h2><ul>{reasons}</ul>
<h2>Stable vs candidate</h2>{html_table(comparison_table(r))}
<h2>Metrics</h2>{html_table(checks_table(r))}
<h2>Validation</h2>{html_table(validation_table(r))}
<h2>Extremes</h2>{html_table(extremes_table(r))}
<h2>Plots</h2><div>{images or '<p><em>no plots</em></p>'}</div>
<h2>History</h2>{html_table(history_table(history))}
</body></html>
"""
