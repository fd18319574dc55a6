"""Retention rules: an inactive variant is kept for the window, then it is due."""

import datetime as dt

from rollout_pipeline.domain.retention import retention_verdicts, retired_route
from rollout_pipeline.domain.routing import VariantRoute

D = dt.date(2026, 7, 4)


def test_kept_for_the_window_then_due_on_the_day_after():
    routes = [VariantRoute("v2", "stable", 100.0), VariantRoute("v1", "inactive", 0.0, True, D)]
    outcomes = {}
    for k in range(0, 6):
        (v,) = retention_verdicts(routes, 3, D + dt.timedelta(days=k))
        outcomes[k] = (v.due, v.days_left)
    assert outcomes == {0: (False, 4), 1: (False, 3), 2: (False, 2), 3: (False, 1), 4: (True, 0), 5: (True, 0)}
    (v,) = retention_verdicts(routes, 3, D + dt.timedelta(days=4))
    assert v.reason == "v1 inactive since 2026-07-04 (4 days) > retention 3 days"


def test_only_inactive_variants_are_judged_and_a_zero_window_retires_the_next_day():
    routes = [VariantRoute("a", "stable", 100.0), VariantRoute("b", "retired", 0.0, False, D),
              VariantRoute("c", "inactive", 0.0, False, D), VariantRoute("d", "candidate", 0.0, True)]
    assert [(v.variant, v.due) for v in retention_verdicts(routes, 0, D)] == [("c", False)]
    assert [(v.variant, v.due) for v in retention_verdicts(routes, 0, D + dt.timedelta(days=1))] == [("c", True)]


def test_an_inactive_variant_without_a_date_is_due_and_a_retired_route_gets_nothing():
    (v,) = retention_verdicts([VariantRoute("old", "inactive", 0.0, True)], 3, D)
    assert v.due
    assert retired_route(VariantRoute("old", "inactive", 0.0, True, D)) == VariantRoute("old", "retired", 0.0, False, D)
