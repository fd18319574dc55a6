"""The review's plots as small PNGs (matplotlib, Agg backend), base64-encoded for data URIs."""

from __future__ import annotations

import base64
import io

from rollout_pipeline.review.content import Histogram, HistoryPoint, Review

SIZE = (5, 2.5)  # inches; at 80 dpi a plot is 400x200 px (it fits the Dagster UI's metadata pane at 1,400 px)
DPI = 80
COLORS = ("#4a6fa5", "#e07b39", "#5a9e6f")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    _pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def histogram_png(hist: Histogram) -> str:
    """Overlaid step histograms of ``hist``'s series, normalized to shares so that different volumes compare."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=SIZE, layout="constrained")
    edges = list(hist.edges)
    for (label, counts), color in zip(hist.series, COLORS):
        total = sum(counts) or 1
        ax.stairs([c / total for c in counts], edges, label=f"{label} (n={sum(counts):,})", color=color,
                  fill=len(hist.series) == 1, alpha=0.8, linewidth=1.5)
    if hist.log_x:
        ax.set_xscale("symlog", linthresh=1.0)
    ax.set_title(hist.title, fontsize=10)
    ax.set_xlabel(hist.unit or "value", fontsize=8)
    ax.set_ylabel("share", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    return _png(fig)


def history_png(points: tuple[HistoryPoint, ...]) -> str:
    """The candidate's traffic share after each decided day (steps) and the judge score (dots)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=SIZE, layout="constrained")
    x = list(range(len(points)))
    ax.step(x, [p.share for p in points], where="post", color=COLORS[0], marker="s", label="candidate share after (%)")
    # Headroom above 100 for the legend, which would otherwise hide a score of 100.
    ax.set_ylim(-5, 135)
    ax.set_yticks(range(0, 101, 25))
    ax.set_ylabel("share %", fontsize=8)
    ax.set_xticks(x, [f"{p.day[5:]}\n{p.action}" for p in points], fontsize=7)
    score_ax = ax.twinx()
    scored = [(i, p.score) for i, p in enumerate(points) if p.score is not None]
    if scored:
        score_ax.plot([i for i, _ in scored], [s for _, s in scored], "o--", color=COLORS[1], label="judge score")
    score_ax.set_ylim(-5, 135)
    score_ax.set_yticks(range(0, 101, 25))
    score_ax.set_ylabel("score", fontsize=8)
    ax.set_title("Rollout history", fontsize=10)
    handles = ax.get_legend_handles_labels()[0] + score_ax.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="upper left", ncol=2)
    ax.tick_params(labelsize=7)
    score_ax.tick_params(labelsize=7)
    return _png(fig)


def review_plots(review: Review, history: tuple[HistoryPoint, ...]) -> list[tuple[str, str]]:
    """(title, base64 PNG) of every plot the review shows, in order."""
    plots = [(h.title, histogram_png(h)) for h in review.histograms]
    if history:
        plots.append(("Rollout history", history_png(history)))
    return plots
