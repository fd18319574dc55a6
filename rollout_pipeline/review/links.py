"""Where a review lives on the web: the decision partition's page in the Dagster UI and the served reports.

`rollout-pipeline ui` serves ``<state>/reports`` at :data:`REPORTS_ROUTE` beside the Dagster UI (same origin), so
the links in the asset metadata and in the reports are relative and work on whatever host and port the UI runs.
Absolute links (notifications, which are read elsewhere) put ``ROLLOUT_UI_BASE_URL`` in front.
"""

from __future__ import annotations

import urllib.parse

REPORTS_ROUTE = "/reports"
PLOTS_FOLDER = "img"  # the plots' PNGs, beside the reports (``<state>/reports/img``)


def partition_path(day: str, model: str, asset: str = "decision") -> str:
    """The asset's Partitions view with ``day|model`` selected (a bare asset URL opens any partition's latest)."""
    return f"/assets/{asset}?view=partitions&partition={urllib.parse.quote(f'{day}|{model}', safe='')}"


def partition_url(ui_base_url: str, day: str, model: str, asset: str = "decision") -> str:
    """:func:`partition_path` on the UI at ``ui_base_url``."""
    return ui_base_url.rstrip("/") + partition_path(day, model, asset)


def report_href(name: str, report_base_url: str = "") -> str:
    """The link to a file of ``<state>/reports``: under ``report_base_url`` when the reports are served elsewhere,
    else the UI's own :data:`REPORTS_ROUTE` (relative, same origin)."""
    return f"{(report_base_url or REPORTS_ROUTE).rstrip('/')}/{urllib.parse.quote(name)}"
