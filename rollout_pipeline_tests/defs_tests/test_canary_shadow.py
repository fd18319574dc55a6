"""During canary each model shadows the other's requests (policy shadow_stable_during_canary and
shadow_candidate_during_canary), so shadow's per-request pairing goes on in canary on the full volume; the Router
mirrors a request to a shadow variant only when that variant did not serve it."""

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


@pytest.mark.parametrize("stable_mirrors, candidate_mirrors", [(True, True), (True, False), (False, True),
                                                               (False, False)])
def test_routes_for_canary_shadow_as_the_policy_says(stable_mirrors, candidate_mirrors):
    policy = Policy(shadow_stable_during_canary=stable_mirrors, shadow_candidate_during_canary=candidate_mirrors)
    rollout = repo.Rollout(1, "m", "v1", "v2", "canary", 20, True, policy, "p")
    routes = repo.routes_for(rollout, repo.RolloutState("canary", 20), D1)
    assert {(r.variant, r.role, r.traffic_percent, r.shadow) for r in routes} == {
        ("v1", "stable", 80.0, stable_mirrors), ("v2", "candidate", 20.0, candidate_mirrors)}


@pytest.mark.parametrize("candidate_mirrors", [True, False])
def test_the_router_mirrors_each_request_to_the_model_that_did_not_serve_it(engine, tmp_path, candidate_mirrors):
    with engine.begin() as conn:
        rollout = repo.start_rollout(conn, "m", "v1", "v2",
                                     Policy(shadow_candidate_during_canary=candidate_mirrors), actor="test")
        promoted(conn, rollout, D1, ("shadow", 0), ("canary", 1))
        promoted(conn, rollout, D1 + dt.timedelta(days=1), ("canary", 1), ("canary", 20))
        assert _routes(conn) == {"v1": ("stable", 80.0, True), "v2": ("candidate", 20.0, candidate_mirrors)}
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
        elif candidate_mirrors:  # the stable served: the candidate answered it in shadow
            assert sorted(by_cid[answer.correlation_id]) == [("v1", True), ("v2", False)]
        else:
            assert by_cid[answer.correlation_id] == [("v1", True)]
