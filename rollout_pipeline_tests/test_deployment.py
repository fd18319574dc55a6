"""The deployment files agree with the project (no Docker engine runs here), and the documented settings exist.

- every environment variable the code, docker/ and dagster.yaml read is in the README's configuration table;
- docker/: the module the code location loads exists and holds the definitions, ports and paths match;
- the production instance config (docker/dagster.yaml: PostgreSQL storage) records a real run on PostgreSQL;
- its run launcher (dagster-docker's DockerRunLauncher) and run coordinator (QueuedRunCoordinator with tag limits)
  validate against Dagster's schemas and load through Dagster's own machinery (no Docker engine needed), and agree
  with compose (image, network, volumes, the environment the launcher passes through);
- the compose layout starts: Dagster's schema (opening a DagsterInstance on docker/dagster.yaml) and ours
  (`rollout-pipeline init-db`) migrate the databases compose gives them, in either order and again, while one
  shared database cannot hold both (both keep their revision in `alembic_version`);
- the compose file migrates before the code location starts, has healthchecks and restart policies, and
  turns serving authentication on.
"""

import re
import shlex
import shutil
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from rollout_pipeline_tests import postgres

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _documented() -> set[str]:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+) \|", section, flags=re.M)
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}


def _code_variables() -> set[str]:
    found = set()
    for path in (ROOT / "rollout_pipeline").rglob("*.py"):
        text = path.read_text()
        found |= set(re.findall(r'^ENV_[A-Z_]+ = "([A-Z][A-Z0-9_]+)"', text, flags=re.M))
        found |= set(re.findall(r'os\.environ(?:\.get)?[\(\[]"([A-Z][A-Z0-9_]+)"', text))
    return found


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())


# What an .env file beside docker/compose.yaml gives it in these tests: a password per role, the serving token.
SECRETS = {"POSTGRES_PASSWORD": "pw", "OWNER_DB_PASSWORD": "owner-pw", "PIPELINE_DB_PASSWORD": "pipeline-pw",
           "SERVING_DB_PASSWORD": "serving-pw", "DAGSTER_PG_PASSWORD": "dagster-pw", "ROLLOUT_SERVE_TOKEN": "t"}


def _substitute(value: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:?message} and ${NAME:-default} substitution (a required one must be given)."""
    def one(m):
        name, op, rest = m.group(1), m.group(2), m.group(3) or ""
        if name in variables:
            return variables[name]
        assert op == ":-", f"{name} is required by docker/compose.yaml and not given"
        return rest
    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:\?|:-)([^}]*))?\}", one, value)


def _service_env(name: str, variables: dict[str, str] = SECRETS) -> dict[str, str]:
    """A compose service's environment as its container gets it (substituted)."""
    return {k: _substitute(str(v), variables) for k, v in (_compose()["services"][name].get("environment") or {}).items()}


def _compose_variables() -> set[str]:
    text = (ROOT / "docker" / "compose.yaml").read_text()
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", text)) | {
        k for service in _compose()["services"].values() for k in (service.get("environment") or {})
        if k.startswith(("ROLLOUT_", "DAGSTER_"))}


def _instance_variables(path: Path) -> set[str]:
    return set(re.findall(r"env: ([A-Z][A-Z0-9_]+)", path.read_text()))


def test_every_environment_variable_is_documented():
    used = _code_variables() | _compose_variables() | _instance_variables(ROOT / "docker" / "dagster.yaml")
    assert {"ROLLOUT_DATABASE_URL", "ROLLOUT_TEARDOWN_COMMAND", "DAGSTER_PG_HOST", "POSTGRES_PASSWORD"} <= used
    missing = used - _documented() - {"ROLLOUT_MODEL", "ROLLOUT_VARIANT", "ROLLOUT_DAY"}  # set for the action, not read
    assert not missing, f"not in the README's configuration table: {sorted(missing)}"
    for passed_to_action in ("ROLLOUT_MODEL", "ROLLOUT_VARIANT", "ROLLOUT_DAY"):
        assert passed_to_action in README


def test_compose_loads_the_code_location_that_exists():
    compose = _compose()
    code = compose["services"]["code"]["command"]
    module = code[code.index("-m") + 1]
    port = int(code[code.index("-p") + 1])
    loaded = __import__(module, fromlist=["defs"])
    assert isinstance(loaded.defs, dg.Definitions)
    grpc = yaml.safe_load((ROOT / "docker" / "workspace.yaml").read_text())["load_from"][0]["grpc_server"]
    assert (grpc["host"], grpc["port"]) == ("code", port)
    local = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"][0]["python_module"]
    assert local["module_name"] == module
    assert grpc["location_name"] == local["location_name"]


def test_compose_ports_paths_and_bindings_match_the_image():
    compose = _compose()
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    workdir = re.search(r"^WORKDIR (\S+)", dockerfile, flags=re.M).group(1)
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", dockerfile, flags=re.M) for p in line.split()}
    web = compose["services"]["webserver"]
    web_port = int(web["command"][web["command"].index("-p") + 1])
    code = compose["services"]["code"]["command"]
    assert {web_port, int(code[code.index("-p") + 1])} <= exposed
    # The UI is published on the host's loopback only.
    assert web["ports"] == [f"127.0.0.1:{web_port}:{web_port}"]
    for name in ("webserver", "daemon"):
        service = compose["services"][name]
        workspace = service["command"][service["command"].index("-w") + 1]
        mounts = {m.split(":")[1]: m.split(":")[0] for m in service.get("volumes", [])}
        source = mounts[f"{workdir}/{workspace}"]
        assert (ROOT / "docker" / source).resolve() == (ROOT / "docker" / "workspace.yaml").resolve()
        assert service["depends_on"] == {"code": {"condition": "service_healthy"}}
    # Every COPY source exists in the repository (the build context is the repository root).
    for line in re.findall(r"^COPY (.+)$", dockerfile, flags=re.M):
        for source in shlex.split(line)[:-1]:
            assert (ROOT / source).exists(), f"Dockerfile copies a missing {source}"
    home = re.search(r"^ENV DAGSTER_HOME=(\S+)", dockerfile, flags=re.M).group(1)
    assert f"COPY docker/dagster.yaml {home}/dagster.yaml" in dockerfile
    assert "-c requirements.lock" in dockerfile
    # One environment for all three Dagster services: same database, same Dagster storage.
    envs = [compose["services"][n]["environment"] for n in ("code", "webserver", "daemon")]
    assert envs[0] == envs[1] == envs[2]
    assert envs[0]["DAGSTER_PG_HOST"] == "postgres" and "@postgres:5432/" in envs[0]["ROLLOUT_DATABASE_URL"]


def test_compose_migrates_first_checks_health_and_restarts():
    services = _compose()["services"]
    migrate = services["migrate"]
    # The owner migrates and grants the least-privilege roles their privileges (docs/roles.sql).
    assert migrate["command"] == ["rollout-pipeline", "init-db", "--grant-roles"] and migrate["restart"] == "no"
    owner = sa.make_url(_service_env("migrate")["ROLLOUT_DATABASE_URL"])
    code = sa.make_url(_service_env("code")["ROLLOUT_DATABASE_URL"])
    assert (owner.username, owner.database) == ("rollout", code.database) and code.username != owner.username
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["code"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    for name in ("postgres", "code", "webserver", "daemon", "serve"):
        assert services[name]["restart"] == "unless-stopped", name
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    assert "grpc-health-check" in services["code"]["healthcheck"]["test"]
    assert "liveness-check" in services["daemon"]["healthcheck"]["test"]
    # Serving in the deployment requires a bearer token, taken from .env (compose refuses to start without it).
    serve = services["serve"]
    assert serve["environment"]["ROLLOUT_SERVE_TOKEN"].startswith("${ROLLOUT_SERVE_TOKEN:?")
    assert serve["ports"] == ["127.0.0.1:8000:8000"]


def _compose_databases() -> tuple[str, str, dict]:
    """(pipeline database, Dagster database, environment) as compose gives them to the code location."""
    env = _service_env("code")
    return sa.make_url(env["ROLLOUT_DATABASE_URL"]).database, env["DAGSTER_PG_DB"], env


def _both_migrations(pipeline_url: str, dagster_url: str, home: Path, monkeypatch) -> None:
    """Dagster's schema, then ours, then Dagster again (a run recorded), then ours again: what a deployment does
    on its first start and on every restart. Raises, or fails an assertion, when the two collide."""
    from click.testing import CliRunner

    from rollout_pipeline.cli import cli
    from rollout_pipeline.defs.runner import run_retention

    url = sa.make_url(dagster_url)
    home.mkdir(exist_ok=True)
    shutil.copy(ROOT / "docker" / "dagster.yaml", home / "dagster.yaml")
    for key, value in {"DAGSTER_PG_HOST": url.host, "DAGSTER_PG_PORT": str(url.port or 5432),
                       "DAGSTER_PG_USER": url.username, "DAGSTER_PG_PASSWORD": url.password or "",
                       "DAGSTER_PG_DB": url.database}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", pipeline_url)
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    def init_db() -> None:
        result = CliRunner().invoke(cli, ["init-db", "--partition-days-ahead", "0"])
        assert result.exit_code == 0, result.output

    with dg.DagsterInstance.get() as instance:  # creates and stamps Dagster's schema
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    init_db()
    with dg.DagsterInstance.get() as instance:
        instance.upgrade()  # what `dagster instance migrate` does on an upgrade
        assert run_retention(dg_day(), instance=instance).success
    init_db()


def test_the_compose_layout_runs_both_migrations_in_either_order(pg_server, tmp_path, monkeypatch):
    pipeline_db, dagster_db, _env = _compose_databases()
    assert pipeline_db != dagster_db, "compose puts Dagster and the pipeline in one database"
    initdb = (ROOT / "docker" / "initdb" / "10-roles-and-databases.sh").read_text()
    assert re.search(rf"CREATE DATABASE %I OWNER %I', d, d\) FROM unnest\(ARRAY\['{pipeline_db}', '{dagster_db}'\]\)",
                     initdb), "nothing creates them"
    urls = {name: postgres.create_database(pg_server) for name in {pipeline_db, dagster_db}}
    try:
        _both_migrations(urls[pipeline_db], urls[dagster_db], tmp_path / "home", monkeypatch)
    finally:
        for url in urls.values():
            postgres.drop_database(pg_server, url)


def test_one_shared_database_cannot_hold_both_schemas(pg_server, tmp_path, monkeypatch):
    """Why the layout above matters: the compose file as it was (one database `rollout`) never started."""
    url = postgres.create_database(pg_server)
    try:
        with pytest.raises((AssertionError, Exception)) as failed:
            _both_migrations(url, url, tmp_path / "home", monkeypatch)
        assert "revision" in str(failed.value).lower(), failed.value
    finally:
        postgres.drop_database(pg_server, url)


def test_local_dagster_yaml_and_the_cli_instance_agree():
    from rollout_pipeline.defs.runner import LOCAL_INSTANCE_YAML

    assert yaml.safe_load((ROOT / "dagster.yaml").read_text()) == yaml.safe_load(LOCAL_INSTANCE_YAML)


def test_the_production_instance_records_a_run_in_postgresql(pg_url, empty_pg_url, tmp_path, monkeypatch):
    """docker/dagster.yaml as shipped, pointed at a test database by its DAGSTER_PG_* variables."""
    from rollout_pipeline.defs.runner import run_retention

    url = sa.make_url(empty_pg_url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "docker" / "dagster.yaml", home / "dagster.yaml")
    for key, value in {"DAGSTER_PG_HOST": url.host, "DAGSTER_PG_PORT": str(url.port or 5432),
                       "DAGSTER_PG_USER": url.username, "DAGSTER_PG_PASSWORD": url.password or "",
                       "DAGSTER_PG_DB": url.database}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", pg_url)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_launcher).__name__ == "DockerRunLauncher"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        retention_run = run_retention(dg_day(), instance=instance)
        assert retention_run.success
        run_id = retention_run.run_id
    engine = sa.create_engine(url.set(drivername="postgresql+psycopg2"))
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT pipeline_name, status FROM runs WHERE run_id = :id"),
                              {"id": run_id}).one()
        events = conn.execute(sa.text("SELECT count(*) FROM event_logs WHERE run_id = :id"), {"id": run_id}).scalar()
    engine.dispose()
    assert tuple(stored) == ("retention", "SUCCESS") and events > 0


def dg_day():
    import datetime as dt

    return dt.date(2026, 7, 1)


@pytest.mark.parametrize("path", ["docker/compose.yaml", "docker/dagster.yaml", "docker/workspace.yaml",
                                  "workspace.yaml", "dagster.yaml"])
def test_yaml_files_parse(path):
    assert yaml.safe_load((ROOT / path).read_text())


def _production_config(tmp_path, monkeypatch) -> dict:
    """docker/dagster.yaml validated by Dagster as an instance reads it (DAGSTER_PG_* set; no server needed)."""
    from dagster._core.instance.config import dagster_instance_config

    shutil.copy(ROOT / "docker" / "dagster.yaml", tmp_path / "dagster.yaml")
    for key in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(key, "5432" if key.endswith("PORT") else "x")
    config, _cls = dagster_instance_config(str(tmp_path))  # raises DagsterInvalidConfigError on a bad file
    return config


def _load(entry: dict):
    """The configured class, imported and given its config as a DagsterInstance does (config checked first)."""
    from dagster._serdes.config_class import ConfigurableClassData

    return ConfigurableClassData(entry["module"], entry["class"], yaml.safe_dump(entry.get("config") or {})).rehydrate()


def test_the_run_launcher_and_coordinator_load_with_their_config(tmp_path, monkeypatch):
    config = _production_config(tmp_path, monkeypatch)
    launcher = _load(config["run_launcher"])
    assert type(launcher).__name__ == "DockerRunLauncher"
    coordinator = _load(config["run_coordinator"])
    assert type(coordinator).__name__ == "QueuedRunCoordinator"
    queue = coordinator.get_run_queue_config()
    assert queue.max_concurrent_runs >= 1
    limits = {limit["key"]: limit for limit in queue.tag_concurrency_limits}
    # Runs touching one model's routing never overlap; the schedules' runs leave room for the others.
    assert limits["rollout/model"] == {"key": "rollout/model", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    assert limits["rollout/actor"]["value"] == "schedule" and limits["rollout/actor"]["limit"] < queue.max_concurrent_runs

    compose = _compose()
    services = compose["services"]
    # The runs' containers: the code location's image, on compose's network, with the state volume compose names.
    assert launcher.image == services["code"]["image"]
    assert launcher.networks == [compose["networks"]["default"]["name"]]
    for mount in launcher.container_kwargs["volumes"]:
        volume, path = mount.split(":")[:2]
        assert compose["volumes"][volume]["name"] == volume
        assert f"{volume}:{path}" in services["daemon"]["volumes"]
    # Every variable passed through is set in the daemon's environment (else each launch fails), and together they
    # are what the code location runs with: the same databases, the same state folder.
    daemon_env = services["daemon"]["environment"]
    assert set(launcher.env_vars) == set(daemon_env)
    assert daemon_env["ROLLOUT_STATE_DIR"] == launcher.container_kwargs["volumes"][0].split(":")[1]
    # The daemon reaches the Docker engine through its socket, and only the daemon holds it.
    socket = "/var/run/docker.sock:/var/run/docker.sock"
    assert [n for n, svc in services.items() if socket in (svc.get("volumes") or [])] == ["daemon"]
    # The image has the launcher's library (the `deploy` extra).
    assert "'.[deploy]'" in (ROOT / "docker" / "Dockerfile").read_text()


@pytest.mark.parametrize("section, bad", [
    ("run_launcher", {"network": "rollout", "netwrk": "typo"}),
    ("run_launcher", {"image": 3}),
    ("run_coordinator", {"max_concurrent_runs": "four"}),
    ("run_coordinator", {"tag_concurrency_limits": [{"key": "rollout/model", "limt": 1}]}),
])
def test_a_wrong_launcher_or_coordinator_config_is_refused(tmp_path, monkeypatch, section, bad):
    """The checks above are real: Dagster's schema refuses what the file must not say."""
    from dagster._core.errors import DagsterInvalidConfigError

    config = _production_config(tmp_path, monkeypatch)
    entry = {**config[section], "config": {**(config[section].get("config") or {}), **bad}}
    with pytest.raises(DagsterInvalidConfigError):
        _load(entry)


# Who reads which documented setting: the serving side's own, the tests', and the pipeline's (all the others).
SERVING_SETTINGS = {"ROLLOUT_SERVE_TOKEN", "ROLLOUT_SERVE_MAX_BODY_BYTES", "ROLLOUT_FEEDBACK_MAX_AGE_SECONDS",
                    "ROLLOUT_FEEDBACK_MAX_AHEAD_SECONDS"}
TEST_SETTINGS = {"ROLLOUT_TEST_DATABASE_URL", "ROLLOUT_TEST_ARTIFACTS"}


def test_compose_passes_every_documented_setting_to_the_code_location_and_the_run_containers(tmp_path, monkeypatch):
    """Issue #22, probe 8: ROLLOUT_NOTIFY_*, ROLLOUT_TEARDOWN_* and ROLLOUT_UI_BASE_URL reached neither the code
    location nor the run containers, so in compose notifications and teardown actions were silently off."""
    documented = {v for v in _documented() if v.startswith("ROLLOUT_")}
    pipeline = documented - SERVING_SETTINGS - TEST_SETTINGS
    assert {"ROLLOUT_NOTIFY_WEBHOOK", "ROLLOUT_NOTIFY_SLACK_WEBHOOK", "ROLLOUT_TEARDOWN_COMMAND",
            "ROLLOUT_TEARDOWN_WEBHOOK", "ROLLOUT_UI_BASE_URL", "ROLLOUT_DATABASE_URL"} <= pipeline
    services = _compose()["services"]
    launcher = _load(_production_config(tmp_path, monkeypatch)["run_launcher"])
    for name in ("code", "webserver", "daemon"):
        missing = pipeline - set(services[name]["environment"])
        assert not missing, f"compose's {name} service does not get {sorted(missing)}"
    missing = pipeline - set(launcher.env_vars)
    assert not missing, f"docker/dagster.yaml's run launcher does not pass {sorted(missing)} to the runs"
    serve = services["serve"]["environment"]
    assert not (SERVING_SETTINGS | {"ROLLOUT_DATABASE_URL", "ROLLOUT_STATE_DIR", "ROLLOUT_LOG_LEVEL"}) - set(serve)
    # Each one passed through as it is set in .env: the value given there reaches the container.
    given = {**SECRETS, **{v: f"value-of-{v}" for v in documented}}
    env = _service_env("code", given)
    for name in pipeline - {"ROLLOUT_DATABASE_URL", "ROLLOUT_STATE_DIR"}:  # those two are the deployment's own
        assert env[name] == f"value-of-{name}", name
    # Left out of .env, it is empty, which the code reads as unset (the README's defaults).
    empty = _service_env("code")
    for name, value in empty.items():
        if name in pipeline - {"ROLLOUT_DATABASE_URL", "ROLLOUT_STATE_DIR"}:
            assert value == "", name
            monkeypatch.setenv(name, value)
    from rollout_pipeline.defs.resources import resources_from_environment
    from rollout_pipeline.notify import DEFAULT_UI_BASE_URL

    with dg.build_resources(resources_from_environment()) as resources:
        assert resources.notifier.ui_base_url == DEFAULT_UI_BASE_URL and not resources.notifier.configured
        assert type(resources.teardown_action).__name__ == "RecordOnlyTeardown"
        assert resources.logs.url == "" and resources.store.log_retention_days is None


def test_every_service_runs_as_its_least_privilege_role_never_the_superuser():
    """Issue #22, probe 4: the compose file ran every service, serve included, as the image's superuser, and
    roles.sql was never applied. The roles it uses are the ones docker/initdb creates."""
    initdb = (ROOT / "docker" / "initdb" / "10-roles-and-databases.sh").read_text()
    users = {name: sa.make_url(_service_env(name)["ROLLOUT_DATABASE_URL"]).username
             for name in ("migrate", "code", "webserver", "daemon", "serve")}
    assert users == {"migrate": "rollout", "code": "pipeline_app", "webserver": "pipeline_app",
                     "daemon": "pipeline_app", "serve": "router_app"}
    superuser = _service_env("postgres")["POSTGRES_USER"]
    assert superuser not in users.values() and _service_env("code")["DAGSTER_PG_USER"] == "dagster" != superuser
    for role in ("rollout", "dagster", "pipeline_app", "router_app"):
        assert f"'{role}'" in initdb
    assert "GRANT rollout_pipeline TO pipeline_app;" in initdb and "GRANT rollout_serving TO router_app;" in initdb
    passwords = [_service_env("migrate")["ROLLOUT_DATABASE_URL"], _service_env("code")["ROLLOUT_DATABASE_URL"],
                 _service_env("serve")["ROLLOUT_DATABASE_URL"], _service_env("code")["DAGSTER_PG_PASSWORD"]]
    assert len({sa.make_url(p).password if "://" in p else p for p in passwords}) == 4  # one password per role
