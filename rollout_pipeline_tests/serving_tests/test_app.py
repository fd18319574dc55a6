"""The HTTP API over a real uvicorn server: predict, feedback and health round-trip into the store."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
import uvicorn
from click.testing import CliRunner

from rollout_pipeline.serving.app import create_app
from rollout_pipeline.serving.commands import serve
from rollout_pipeline.serving.router import Router
from rollout_pipeline.serving.writer import LogWriter
from rollout_pipeline_tests.serving_tests.conftest import closed_port, count, rows, set_routing


@pytest.fixture
def server(engine, tmp_path):
    set_routing(engine, "m", 0, shadow=True)

    def broken(features):
        raise RuntimeError("no")

    routers = {
        "m": Router(engine, "m", {"v1": lambda f: sum(f), "v2": lambda f: ["x", "y"]}, spill_dir=tmp_path / "m",
                    refresh_seconds=None),
    }
    set_routing(engine, "b", 100)
    routers["b"] = Router(engine, "b", {"v1": lambda f: 0.0, "v2": broken}, spill_dir=tmp_path / "b",
                          refresh_seconds=None)
    feedback = LogWriter(engine, tmp_path / "fb", kind="feedback")
    app = create_app(routers, feedback_writer=feedback)
    port = closed_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)  # the lifespan shutdown closes routers and writer: rows flushed


def call(method: str, url: str, body=None, raw: bytes | None = None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_predict_feedback_and_health(server, engine):
    status, answer = call("POST", f"{server}/predict/m", {"features": [1, 2, 3.5], "entity_id": "user-1"})
    assert status == 200
    assert answer["variant"] == "v1" and answer["value"] == 6.5 and answer["prediction"] == 6.5
    cid = answer["correlation_id"]
    status, again = call("POST", f"{server}/predict/m", {"features": [1], "correlation_id": "given-id-1"})
    assert status == 200 and again["correlation_id"] == "given-id-1"

    assert call("POST", f"{server}/predict/nope", {"features": []})[0] == 404
    assert call("POST", f"{server}/predict/m", raw=b"{not json")[0] == 400
    assert call("POST", f"{server}/predict/m", [1, 2])[0] == 400
    assert call("POST", f"{server}/predict/m", {"features": [1], "entity_id": 42})[0] == 400
    status, failed = call("POST", f"{server}/predict/b", {"features": [1], "entity_id": "u"})
    assert status == 500 and failed["variant"] == "v2" and failed["correlation_id"]

    status, _ = call("POST", f"{server}/feedback/m", {"correlation_id": cid, "kind": "complaint", "value": 1})
    assert status == 202
    assert call("POST", f"{server}/feedback/m", {"correlation_id": cid})[0] == 400

    status, health = call("GET", f"{server}/health")
    assert status == 200 and health["status"] == "ok"
    assert health["models"]["m"]["routing_version"] == 1


def test_rows_reach_the_store_after_shutdown(server, engine):
    status, answer = call("POST", f"{server}/predict/m", {"features": [2, 2], "entity_id": "user-9"})
    assert status == 200
    call("POST", f"{server}/feedback/m", {"correlation_id": answer["correlation_id"], "kind": "actual",
                                         "label": ["x"], "ts": "2026-03-15T10:00:00+00:00"})
    status, failed = call("POST", f"{server}/predict/b", {"features": [1]})
    assert status == 500
    # Rows arrive within the writer's flush interval, while the server runs.
    deadline = time.monotonic() + 10
    while count(engine, "m") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    logged = sorted((r.variant, r.served, r.prediction, r.label) for r in rows(engine, "m"))
    assert logged == [("v1", True, 4.0, None), ("v2", False, None, '["x","y"]')]
    while count(engine, table="feedback") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count(engine, table="feedback") == 1
    while count(engine, "b") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    (error_row,) = rows(engine, "b")
    assert error_row.status == "error" and error_row.correlation_id == failed["correlation_id"]


def test_serve_binds_to_localhost_by_default_and_explains_itself():
    result = CliRunner().invoke(serve, ["--help"])
    assert result.exit_code == 0
    assert "[default: 127.0.0.1]" in result.output and "--registry" in result.output
    host = next(p for p in serve.params if p.name == "host")
    assert host.default == "127.0.0.1"


def test_serve_refuses_when_no_model_has_routing(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(serve, ["--registry", "rollout_pipeline_tests.serving_tests.test_app:REGISTRY"])
    assert result.exit_code == 1
    assert "no model of the registry has a routing config" in result.output


REGISTRY = {"lonely": {"v1": lambda f: 1.0}}
