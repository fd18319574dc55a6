"""A review rendered twice from the same cells: markdown for Dagster metadata, a self-contained HTML report."""

from __future__ import annotations

import html
from dataclasses import dataclass

from rollout_pipeline.domain.formatting import num  # one formatter for gates, review and CLI
from rollout_pipeline.review.content import Check, HistoryPoint, Review, Side

# How a verdict reads to a person (``nodata`` is the gates' word for "too little data to tell").
VERDICT_WORDS = {"nodata": "not judged"}
# Markdown of 1,000 characters or more shows in the Dagster UI only behind "Show Markdown".
MD_INLINE_LIMIT = 1000


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


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?)" else text + "."


def reason_sentences(reasons: tuple[str, ...]) -> tuple[str, ...]:
    """The decision's reasons as full sentences: a heading ("critical failure:") joined with what follows it
    (the state machine lists a heading, then its items), each sentence capitalised and ended."""
    out: list[str] = []
    i = 0
    while i < len(reasons):
        text = reasons[i].strip()
        if text.endswith(":"):
            items = []
            j = i + 1
            while j < len(reasons) and not reasons[j].strip().endswith(":"):
                items.append(reasons[j].strip())
                j += 1
            if items:
                out.extend(_sentence(f"{text} {item}") for item in items)
            else:
                out.append(_sentence(text[:-1] + ": nothing more was recorded"))
            i = j
            continue
        out.append(_sentence(text))
        i += 1
    return tuple(out)


def verdict_word(classification: str) -> str:
    return VERDICT_WORDS.get(classification, classification)


def counted_over(c: Check) -> str:
    """What a gate's numbers count: its population and units ("2,000 paired requests"), and what it needed."""
    units = f"{c.units:,}" if c.units else ""
    text = " ".join(x for x in (units, c.population) if x) or "-"
    if c.classification == "nodata" and c.needed:
        text += f" (of {c.needed:,} needed)"
    return text


def _side_label(side: Side | None) -> str:
    if side is None:
        return "n/a"
    return f"{side.requests:,} {'served' if side.served else 'shadow'} ({side.variant})"


def breakable(name: str) -> str:
    """A gate's name that may wrap after its underscores (a zero-width space), so a narrow pane can show it."""
    return name.replace("_", "_\u200b")


def metrics_table(r: Review, narrow: bool = False) -> Table:
    """The one table of the day: the volumes of both sides, then every gate with its verdict, both numbers and
    what they count (a gate's numbers come from its own population, which the first row does not replace)."""
    s, c = r.side("stable"), r.side("candidate")
    rows = []
    if s or c:
        rows.append(("requests logged", "", _side_label(s), _side_label(c), "whole day"))
    rows += [(breakable(ch.name) if narrow else ch.name,
              verdict_word(ch.classification) + (" *" if ch.criticality == "critical" else ""),
              num(ch.stable), num(ch.candidate), counted_over(ch)) for ch in r.checks]
    return Table(("metric", "verdict", "stable", "candidate", "counted over"), tuple(rows))


def checks_table(r: Review) -> Table:
    """Every gate with its reason (the HTML report has room for it)."""
    return Table(("metric", "verdict", "criticality", "stable", "candidate", "counted over", "why"),
                 tuple((c.name, verdict_word(c.classification), c.criticality, num(c.stable), num(c.candidate),
                        counted_over(c), c.reason) for c in r.checks))


def why_lines(r: Review) -> tuple[tuple[str, str], ...]:
    """Each gate's reason, prefixed by its verdict and criticality: (metric, text)."""
    return tuple((c.name, f"{verdict_word(c.classification)} ({c.criticality}): {c.reason}") for c in r.checks)


def validation_table(r: Review) -> Table:
    """The day's validation suites (asset checks): passed, failed or not judged (narrow: what failed is listed
    apart by :func:`validation_notes`)."""
    rows = [(v.name, v.outcome, "blocking" if v.severity == "ERROR" else "warning") for v in r.validations]
    if not rows:
        rows.append(("log_quality (judgement)", "failed" if r.data_quality_failures else "passed", "blocking"))
    return Table(("suite", "result", "kind"), tuple(rows))


def validation_notes(r: Review) -> tuple[str, ...]:
    """What failed, or could not be judged, in the day's validation, one line each."""
    if not r.validations:
        return tuple(r.data_quality_failures)
    return tuple([*(f for v in r.validations for f in v.failures),
                  *(f"not judged: {x}" for v in r.validations for x in v.not_judged)])


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


def md_list(items, limit: int = MD_INLINE_LIMIT - 100, more: str = "in the report") -> str:
    """A markdown bullet list kept under ``limit`` characters (so it renders inline); the rest is counted."""
    out, used = [], 0
    items = list(items)
    for k, item in enumerate(items):
        line = f"- {_md_cell(item)}"
        if used + len(line) + 60 > limit:
            out.append(f"- ... {len(items) - k} more {more}")
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out)


def md_reasons(r: Review) -> str:
    return f"**{headline(r)}**\n\n" + md_list(reason_sentences(r.reasons))


def md_metrics(r: Review) -> str:
    """The metrics table, under a line saying which sides were compared and which nights back the verdicts."""
    lead = [f"Compared: {r.compared}." if r.compared else "", f"Pooled: {r.pooled}." if r.pooled else ""]
    head = "\n\n".join(x for x in lead if x)  # one line each: the pane is narrow
    note = "\n\n\\* critical gate" if any(c.criticality == "critical" for c in r.checks) else ""
    return (f"{head}\n\n" if head else "") + md_table(metrics_table(r, narrow=True)) + note


def md_validation(r: Review) -> str:
    notes = validation_notes(r)
    return md_table(validation_table(r)) + ("\n\n" + md_list(notes, MD_INLINE_LIMIT - 300) if notes else "")


def md_plots(plots: list[tuple[str, str]]) -> str:
    """Plots as markdown images of the served PNGs ``[(title, url)]`` (short: they render inline)."""
    return "\n\n".join(f"![{_md_cell(title)}]({url})" for title, url in plots) or "_no plots_"


def markdown_sections(r: Review, history: tuple[HistoryPoint, ...], plots: list[tuple[str, str]]) -> dict[str, str]:
    """The review as markdown, one entry per metadata key; ``plots`` are (title, URL of the PNG)."""
    return {
        "reasons": md_reasons(r),
        "metrics": md_metrics(r),
        "validation": md_validation(r),
        "plots": md_plots(plots),
        "extremes": md_table(extremes_table(r, id_chars=MD_ID_CHARS)),
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


def render_html(r: Review, history: tuple[HistoryPoint, ...], plots: list[tuple[str, str]],
                ui_link: str | None = None) -> str:
    """The review as one self-contained HTML page (plots inline as data URIs); ``ui_link``: the day's partition
    in the Dagster UI."""
    e = html.escape
    reasons = "".join(f"<li>{e(x)}</li>" for x in reason_sentences(r.reasons))
    notes = "".join(f"<li>{e(x)}</li>" for x in validation_notes(r))
    back = f'<p class="meta"><a id="dagster-link" href="{e(ui_link)}">This day in the Dagster UI</a></p>' \
        if ui_link else ""
    images = "".join(f'<img alt="{e(t)}" title="{e(t)}" src="data:image/png;base64,{png}">' for t, png in plots)
    ids = f"decision #{r.decision_id}" if r.decision_id is not None else "decision"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(r.model)} {e(r.day)}: {e(r.action)}</title>
<style>{CSS}</style></head><body>
<h1>{e(r.model)} &middot; {e(r.day)}</h1>
<p class="action {e(r.action)}">{e(headline(r))}</p>
<p class="meta">{e(ids)} by {e(r.actor)}{' &middot; Dagster run ' + e(r.run_id) if r.run_id else ''}
{' &middot; compared: ' + e(r.compared) if r.compared else ''}</p>
{back}
<h2>Why</h2><ul>{reasons}</ul>
<h2>Metrics</h2>
<p class="meta">{e(f"Compared: {r.compared}." if r.compared else "")} {e(f"Pooled: {r.pooled}." if r.pooled else "")} {e(f"Plan: {r.plan}." if r.plan else "")}</p>
{html_table(metrics_table(r))}
{html_table(checks_table(r))}
<h2>Validation</h2>{html_table(validation_table(r))}{f"<ul>{notes}</ul>" if notes else ""}
<h2>Extremes</h2>{html_table(extremes_table(r))}
<h2>Plots</h2><div>{images or '<p><em>no plots</em></p>'}</div>
<h2>History</h2>{html_table(history_table(history))}
</body></html>
"""
