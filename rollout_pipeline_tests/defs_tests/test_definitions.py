"""The code location loads and every job, schedule and check resolves (a layout move cannot break it silently)."""

from rollout_pipeline.definitions import defs


def test_definitions_load_and_jobs_resolve():
    job = defs.resolve_job_def("daily_analysis")
    assert job.partitions_def is not None
    assert {s.name for s in defs.schedules} == {"nightly_analysis", "nightly_retention", "hourly_guardrail"}
    assert {s.name for s in defs.sensors} == {"routing_sensor", "blocked_day_hold"}
    for name in ("apply_routing", "retention", "backtest", "guardrail"):
        assert defs.resolve_job_def(name).name == name
    # On by default in `dagster dev` and the daemon (README: how to turn them off).
    assert all(s.default_status.value == "RUNNING" for s in [*defs.schedules, *defs.sensors])
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys >= {"day_summary", "judgement", "decision"}
    checks = {k.name for k in repo.asset_graph.asset_check_keys}
    assert checks == {"log_quality", "latency_slo", "prediction_distribution"}
