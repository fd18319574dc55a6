"""Issue #22, probe 2: every policy number has a documented range, checked at `rollout start` and when a
stored policy is loaded, and a policy's YAML is bounded in size and depth.

Before: `approval_expiry_days: 99999999999` was accepted, then every `decide` of the model (`--dry-run`
included) failed with OverflowError (exit 4); a YAML nested 5,000 deep gave exit 4 "RecursionError"."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from annotated_types import Ge, Gt, Le, Lt
from click.testing import CliRunner

from rollout_pipeline.cli import cli
from rollout_pipeline.domain.gates.registry import limit_models
from rollout_pipeline.domain.policy import JudgeThresholds, Policy, PolicyError, load_policy, policy_from_yaml
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline.store.tables import rollouts
from rollout_pipeline_tests.factories import log_day

DAY = dt.date(2026, 11, 28)
DOC = (Path(__file__).resolve().parents[2] / "docs" / "policy.md").read_text()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """The CLI on the embedded SQLite database of a fresh state folder."""
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("ROLLOUT_DATABASE_URL", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    assert CliRunner().invoke(cli, ["init-db"]).exit_code == 0
    return tmp_path


def _numbers(model) -> dict[str, object]:
    """The scalar numeric fields of a policy model (int or float, optional or not), by name. Tuples and mappings
    of numbers (canary_steps, require_approval_for, group_weights) are checked by their validators."""
    out = {}
    for name, field in model.model_fields.items():
        args = set(getattr(field.annotation, "__args__", (field.annotation,))) - {type(None)}
        if args and args <= {int, float}:
            out[name] = field
    return out


def _range(field) -> str:
    """A field's bounds as docs/policy.md writes them: [a, b] includes its ends, (a, b) does not."""
    lo = hi = "?"
    for m in field.metadata:
        lo = f"[{m.ge:g}" if isinstance(m, Ge) else f"({m.gt:g}" if isinstance(m, Gt) else lo
        hi = f"{m.le:g}]" if isinstance(m, Le) else f"{m.lt:g})" if isinstance(m, Lt) else hi
    return f"{lo}, {hi}"


@pytest.mark.parametrize("prefix, model", [("", Policy), ("judge.", JudgeThresholds)] + [
    (f"gates.{name}.", model) for name, model in limit_models().items()])
def test_every_number_of_a_policy_has_an_upper_bound_and_the_doc_says_which(prefix, model):
    unbounded = [name for name, field in _numbers(model).items()
                 if not any(isinstance(m, (Le, Lt)) for m in field.metadata)]
    assert not unbounded, f"policy numbers without an upper bound: {unbounded}"
    ranges = DOC.split("### Ranges", 1)[1].split("\n## ", 1)[0]
    documented = {name: cell for cell, names in re.findall(r"^\| `([^`]+)` \| (.+) \|$", ranges, flags=re.M)
                  for name in re.findall(r"`([^`]+)`", names)}
    for name, field in _numbers(model).items():
        assert documented.get(prefix + name) == _range(field), f"docs/policy.md, Ranges: {prefix}{name}"


@pytest.mark.parametrize("field, value", [
    ("approval_expiry_days", 99_999_999_999), ("retention_days", 10**12), ("min_days_per_step", 10**9),
    ("min_shadow_days", 10**9), ("min_units", 10**18), ("latency_slo_p99_ms", 1e300),
    ("guardrail_min_events", 10**18), ("prediction_bounds", [0, 1e300]), ("max_orphan_rows", 10**18),
    ("gates: {latency: {slo_p99_ms", 1e300), ("gates: {orphan_rows: {max_rows", 10**18),
])
def test_a_number_out_of_its_range_is_refused_naming_the_field(field, value):
    with pytest.raises(PolicyError) as caught:
        policy_from_yaml(f"{field}: {value}" + "}" * field.count("{"), source="p.yaml")
    message = str(caught.value)
    named = field.replace("gates: {", "gates.").replace(": {", ".")
    assert named in message and "\n" not in message, message


def test_rollout_start_refuses_an_approval_window_of_99999999999_days_in_one_line(env):
    path = env / "p.yaml"
    path.write_text("require_approval_for: [1]\napproval_expiry_days: 99999999999\n")
    out = CliRunner().invoke(cli, ["rollout", "start", "--model", "m", "--stable", "v1", "--candidate", "v2",
                                   "--policy", str(path)])
    assert out.exit_code == 1, out.output
    (line,) = out.output.strip().splitlines()
    assert line.startswith("Error: invalid policy") and "approval_expiry_days" in line and "36500" in line


def test_a_stored_policy_out_of_range_is_refused_on_load_naming_the_field_dry_run_included(env):
    """A policy written into the table directly (or by an older version): every decide refuses in one line
    (exit 1) naming the field, instead of an OverflowError (exit 4)."""
    assert CliRunner().invoke(cli, ["rollout", "start", "--model", "m", "--stable", "v1", "--candidate", "v2"]
                              ).exit_code == 0
    engine = make_engine(f"sqlite:///{env / 'state' / 'rollout.db'}")
    write_predictions(engine, log_day("m", DAY, "v1", "v2", requests=300))
    with engine.begin() as conn:
        policy = dict(conn.execute(sa.select(rollouts.c.policy)).scalar_one())
        policy.update(require_approval_for=[1], approval_expiry_days=99_999_999_999)
        conn.execute(rollouts.update().values(policy=policy))
    engine.dispose()
    for extra in ([], ["--dry-run"]):
        out = CliRunner().invoke(cli, ["decide", "--model", "m", "--date", DAY.isoformat(), *extra])
        assert out.exit_code == 1, (extra, out.output)
        (line,) = out.output.strip().splitlines()
        assert "approval_expiry_days" in line and "stored with rollout 1 of m" in line, line
        assert "Overflow" not in line and "internal error" not in line


def test_a_policy_nested_5000_deep_is_refused_in_one_line(env):
    path = env / "deep.yaml"
    path.write_text("metrics: " + "[" * 5000 + "]" * 5000 + "\n")
    out = CliRunner().invoke(cli, ["rollout", "start", "--model", "m", "--stable", "v1", "--candidate", "v2",
                                   "--policy", str(path)])
    assert out.exit_code == 1, out.output
    (line,) = out.output.strip().splitlines()
    assert "nests deeper than 16 levels" in line and "RecursionError" not in line
    block = "".join(" " * i + "a:\n" for i in range(300))
    with pytest.raises(PolicyError, match="nests deeper"):
        policy_from_yaml(block)


def test_a_huge_policy_file_is_refused_without_reading_it_whole(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * 10_000_000 + "\n")
    with pytest.raises(PolicyError, match="larger than 65536 bytes"):
        load_policy(path)
