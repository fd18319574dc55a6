"""Hostile input: SQL metacharacters, very long strings and unicode in names, reasons, policy values
and log fields are refused with a clear error or stored exactly; no injection (the tables survive)."""

from __future__ import annotations

import datetime as dt
import getpass
import json

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from rollout_pipeline.cli import cli
from rollout_pipeline.domain.policy import parse_policy, Policy, PolicyError, load_policy
from rollout_pipeline.domain.records import FeedbackRow, PredictionRow
from rollout_pipeline.domain.routing import InvalidName, validate_name
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import ContractError, write_feedback, write_predictions
from rollout_pipeline.store.routing import routing_history_rows
from rollout_pipeline.store.serving_queries import read_rows
from rollout_pipeline.store.summary import collect_day
from rollout_pipeline.store.tables import metadata
from rollout_pipeline_tests.factories import log_day

DAY = dt.date(2026, 11, 28)
INJECTIONS = [
    "m'; DROP TABLE decisions; --",
    'm"; DROP TABLE "decisions"; --',
    "m' OR '1'='1",
    "m); DELETE FROM rollouts; --",
    "m\\'; SELECT pg_sleep(10); --",
    "$$; DROP TABLE rollouts; $$",
    "m%s%(x)s{0}",
    "m\x00",
    "m\nDROP TABLE decisions",
    "modèle",
    "модель",
    "🚀",
    "m" * 65,
    "",
    " m",
    "-m",
    "../../etc/passwd",
    "m|2026-11-28",
]
# A reason with every kind of trouble: quotes, comment and statement separators, escapes, format
# placeholders, control characters, right-to-left and astral unicode, and 20,000 characters.
REASON = ("'); DROP TABLE decisions; -- \" \\ \\x00 %s %(x)s {0} $1 $$ ; \t tab\nnew line \r\u202e"
          " ñ 中文 🚀 " + "é" * 20_000 + " end")


@pytest.fixture
def env(tmp_path, monkeypatch, pg_url):
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", pg_url)
    return pg_url


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    names = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    return names


def _run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("name", INJECTIONS, ids=range(len(INJECTIONS)))
def test_hostile_names_are_refused_by_validation(name):
    with pytest.raises(InvalidName, match="use 1-64 letters"):
        validate_name("model", name)


def test_hostile_names_through_the_cli_are_refused_and_the_tables_survive(env):
    before = _tables(env)
    assert set(metadata.tables) <= before
    for name in INJECTIONS:
        for args in (["--model", name, "--stable", "v1", "--candidate", "v2"],
                     ["--model", "m", "--stable", name, "--candidate", "v2"],
                     ["--model", "m", "--stable", "v1", "--candidate", name]):
            out = CliRunner().invoke(cli, ["rollout", "start", *args])
            assert out.exit_code in (1, 2), (name, out.output)  # 2: click refuses a NUL in an argument itself
            assert "Traceback" not in out.output
            if out.exit_code == 1:
                assert "name" in out.output and "use 1-64 letters" in out.output, out.output
    assert _tables(env) == before
    engine = make_engine(env)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM rollouts")).scalar_one() == 0
    engine.dispose()
    # Unknown (hostile) model names in read-only commands: a clear answer, no error.
    out = CliRunner().invoke(cli, ["status", "--model", INJECTIONS[0]])
    assert out.exit_code == 1 and "no rollout and no routing for model" in out.output
    out = CliRunner().invoke(cli, ["history", "--model", INJECTIONS[0]])
    assert out.exit_code == 0 and "no decisions for" in out.output


def test_a_hostile_reason_is_stored_and_shown_exactly(env):
    assert _run("rollout", "start", "--model", "m", "--stable", "v1", "--candidate", "v2").exit_code == 0
    engine = make_engine(env)
    write_predictions(engine, log_day("m", DAY, "v1", "v2"))
    assert _run("decide", "--model", "m", "--date", DAY.isoformat(), "--json").exit_code == 0
    forced = _run("decide", "--model", "m", "--date", DAY.isoformat(), "--force", "rollback", "--reason", REASON,
                  "--json")
    assert forced.exit_code == 0, forced.output
    out = json.loads(forced.stdout)
    expected = f"forced rollback by {getpass.getuser()} (cli): {REASON.strip()}"  # --operator defaults to the OS user
    assert out["reasons"] == [expected] and out["applied"] is True
    history = [e for e in json.loads(_run("history", "--model", "m", "--json").stdout) if e["kind"] == "decision"]
    assert history[-1]["reasons"] == [expected]
    with engine.connect() as conn:
        assert repo.live_decision(conn, "m", DAY).reasons == [expected]
        stored = conn.execute(sa.text("SELECT reasons FROM decisions WHERE superseded_by IS NULL")).scalar_one()
        assert stored == [expected]
        # The routing history keeps the start of the reasons (500 characters), exactly.
        last = routing_history_rows(conn, "m")[-1]
        assert f"rollback on {DAY}: {expected}".startswith(last.reason) and len(last.reason) >= 500
    assert _tables(env) >= set(metadata.tables)
    engine.dispose()


def test_a_reason_with_a_nul_character_is_refused_or_stored_exactly(env):
    """PostgreSQL text cannot hold NUL; a JSON list of reasons can: exactly, or a clear error, never a crash."""
    assert _run("rollout", "start", "--model", "m", "--stable", "v1", "--candidate", "v2").exit_code == 0
    engine = make_engine(env)
    from rollout_pipeline.domain.decide import force_decision

    with engine.begin() as conn:
        rollout = repo.active_rollout(conn, "m")
        decision = force_decision(repo.state_before(conn, rollout, DAY), "hold", "a\x00b", rollout.policy, "t")
        record = repo.record_decision(conn, rollout, DAY, decision, actor="t", metrics={"x": "a\x00b"}, run_id=None)
    with engine.connect() as conn:
        assert repo.get_decision(conn, record.id).reasons == ["forced hold by t: a\x00b"]
    engine.dispose()


def test_hostile_policy_values_are_refused_naming_the_field(tmp_path):
    cases = {
        "latency_slo_p99_ms": "250; DROP TABLE rollouts",
        "canary_steps": [1, "20'); --", 100],
        "metrics": {"latency'; DROP TABLE decisions; --": "critical"},
        "judge": {"pass_score": "1e309"},
        "min_requests": -1,
        "'; DROP TABLE rollouts; --": 1,
        "error_rate_limit": float("nan"),
    }
    for field, value in cases.items():
        path = tmp_path / "policy.yaml"
        path.write_text(yaml.safe_dump({field: value}, allow_unicode=True))
        with pytest.raises(PolicyError) as caught:
            load_policy(path)
        assert field.split("'")[0] in str(caught.value) or "metrics" in str(caught.value), (field, caught.value)
    path.write_text("!!python/object/apply:os.system ['echo pwned']")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(path)


def test_a_hostile_group_name_is_refused_and_the_actor_round_trips(env):
    """group_weights takes known groups only: a hostile name is refused in one line naming the field; a hostile
    actor (free text) is stored with the rollout's routing and read back exactly."""
    name = "g'); DROP TABLE rollouts; -- 🚀"
    with pytest.raises(PolicyError) as caught:
        parse_policy({"group_weights": {name: 10.0}}, "p.yaml")
    assert "group_weights" in str(caught.value) and "\n" not in str(caught.value)
    policy = Policy(group_weights={"latency": 10.0})
    engine = make_engine(env)
    with engine.begin() as conn:
        repo.start_rollout(conn, "m", "v1", "v2", policy, actor=REASON)
    with engine.connect() as conn:
        rollout = repo.active_rollout(conn, "m")
        assert rollout.policy == policy and rollout.policy_version == policy.version
        assert routing_history_rows(conn, "m")[-1].actor == REASON
    engine.dispose()


def test_hostile_log_fields_round_trip_through_copy(db_url):
    """COPY's own metacharacters (tab, newline, backslash, \\N) and SQL ones in every text field of a log row."""
    engine = make_engine(db_url)
    texts = [REASON, "\\N", "\\", "a\tb\nc\rd", "'; DROP TABLE prediction_log; --", "\u2028\u2029", "🚀" * 1000,
             "", "NULL", "\\.", "x" * 100_000]
    t0 = dt.datetime.combine(DAY, dt.time(), dt.UTC)
    model = "m'; DROP TABLE prediction_log; --"  # log rows take any model name: it is data, bound, never SQL
    rows = [PredictionRow(t, t0 + dt.timedelta(seconds=i), model, "v1", True, t, 1.0, "ok", 0.5, t)
            for i, t in enumerate(texts)]
    assert write_predictions(engine, rows) == len(rows)
    write_feedback(engine, [FeedbackRow(t, t0, model, t or "k", 1.0, t) for t in texts])
    with engine.connect() as conn:
        back = read_rows(conn, "prediction_log", model)
        assert [(r.correlation_id, r.entity_id, r.label) for r in back] == [(t, t, t) for t in texts]
        fb = read_rows(conn, "feedback", model)
        assert sorted((r.correlation_id, r.kind, r.label) for r in fb) == sorted((t, t or "k", t) for t in texts)
        summary = collect_day(conn, model, DAY, "v1", "v2")
        assert summary.total_rows == len(texts)
    with pytest.raises(ContractError, match="NUL"):
        write_predictions(engine, [rows[0]._replace(label="a\x00b")])
    assert set(metadata.tables) <= set(sa.inspect(engine).get_table_names())
    engine.dispose()
