"""During canary the stable variant shadows the candidate's own requests (policy shadow_stable_during_canary),
so shadow's per-request pairing goes on in canary; the Router mirrors a request to a shadow variant only when
that variant did not serve it."""

import collections
import datetime as dt

import pytest

from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.serving.router import Router
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.routing import read_routing
from rollout_pipeline.store.tables import prediction_log
from rollout_pipeline_tests.factories import promoted

D1 = dt.date(2026, 6, 1)


def _routes(conn) -> dict:
    return {r.variant: (r.role, r.traffic_percent, r.shadow) for r in read_routing(conn, "m").routes}


@pytest.mark.parametrize("mirror", [True, False])
def test_routes_for_canary_shadow_the_stable_as_the_policy_says(mirror):
    rollout = repo.Rollout(1, "m", "v1", "v2", "canary", 20, True, Policy(), "p")
    policy = rollout.policy
    if "shadow_stable_during_canary" in type(policy).model_fields:
        rollout = repo.Rollout(1, "m", "v1", "v2", "canary", 20, True,
                               policy.model_copy(update={"shadow_stable_during_canary": mirror}), "p")
    elif not mirror:
        pytest.skip("Policy has no shadow_stable_during_canary field yet: the default (true) is tested")
    routes = repo.routes_for(rollout, repo.RolloutState("canary", 20), D1)
    assert {(r.variant, r.role, r.traffic_percent, r.shadow) for r in routes} == {
        ("v1", "stable", 80.0, mirror), ("v2", "candidate", 20.0, False)}


def test_the_router_mirrors_the_candidates_requests_to_the_stable_only(engine, tmp_path):
    with engine.begin() as conn:
        rollout = repo.start_rollout(conn, "m", "v1", "v2", Policy(), actor="test")
        promoted(conn, rollout, D1, ("shadow", 0), ("canary", 1))
        promoted(conn, rollout, D1 + dt.timedelta(days=1), ("canary", 1), ("canary", 20))
        assert _routes(conn) == {"v1": ("stable", 80.0, True), "v2": ("candidate", 20.0, False)}
    ts = dt.datetime(2026, 6, 3, 12, tzinfo=dt.UTC)
    with Router(engine, "m", {"v1": lambda x: x + 1.0, "v2": lambda x: x + 2.0}, spill_dir=tmp_path / "spill",
                refresh_seconds=None) as router:
        answers = [router.predict(float(k), f"u{k}", ts=ts) for k in range(400)]
    served = collections.Counter(a.variant for a in answers)
    assert served["v2"] > 20 and served["v1"] > 200
    with engine.connect() as conn:
        rows = list(conn.execute(prediction_log.select().where(prediction_log.c.model_name == "m")))
    by_cid = collections.defaultdict(list)
    for r in rows:
        by_cid[r.correlation_id].append((r.variant, r.served))
    for answer in answers:
        if answer.variant == "v2":  # the candidate served: the stable answered the same request in shadow
            assert sorted(by_cid[answer.correlation_id]) == [("v1", False), ("v2", True)]
        else:  # the stable served: no mirror to itself, and the candidate does not shadow in canary
            assert by_cid[answer.correlation_id] == [("v1", True)]
