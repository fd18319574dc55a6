"""The HTTP API over a real uvicorn server: predict, feedback and health round-trip into the store;
the edges (size, nesting, shape, non-finite numbers, retried ids, tokens, feedback times) are refused
before anything reaches a model or the log, with a short error that never echoes the input."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from click.testing import CliRunner

from rollout_pipeline.domain.records import FeedbackRow
from rollout_pipeline.serving.app import ServeSettings, create_app
from rollout_pipeline.serving.commands import serve
from rollout_pipeline.serving.router import Router
from rollout_pipeline.serving.writer import LogWriter
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline_tests.serving_tests.conftest import count, rows, run_server, set_routing


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
    url, stop = run_server(create_app(routers, feedback_writer=feedback))
    yield url
    stop()


def call(method: str, url: str, body=None, raw: bytes | None = None, headers=None, with_headers=False):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            got = response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as exc:
        got = exc.code, json.loads(exc.read()), exc.headers
    return got if with_headers else got[:2]


def test_predict_feedback_and_health(server, engine):
    status, answer = call("POST", f"{server}/predict/m", {"features": [1, 2, 3.5], "entity_id": "user-1"})
    assert status == 200
    assert answer["variant"] == "v1" and answer["value"] == 6.5 and answer["prediction"] == 6.5
    cid = answer["correlation_id"]
    status, again = call("POST", f"{server}/predict/m", {"features": [1], "correlation_id": "given-id-1"})
    assert status == 200 and again["correlation_id"] == "given-id-1"

    assert call("POST", f"{server}/predict/nope", {"features": []})[0] == 404
    assert call("POST", f"{server}/predict/m", raw=b"{not json")[0] == 400
    assert call("POST", f"{server}/predict/m", [1, 2])[0] == 422
    assert call("POST", f"{server}/predict/m", {"features": [1], "entity_id": 42})[0] == 422
    status, failed = call("POST", f"{server}/predict/b", {"features": [1], "entity_id": "u"})
    assert status == 500 and failed["variant"] == "v2" and failed["correlation_id"]

    status, _ = call("POST", f"{server}/feedback/m", {"correlation_id": cid, "kind": "complaint", "value": 1})
    assert status == 202
    assert call("POST", f"{server}/feedback/m", {"correlation_id": cid})[0] == 422

    status, health = call("GET", f"{server}/health")
    assert status == 200 and health["status"] == "ok"
    assert health["models"]["m"]["routing_version"] == 1


def test_rows_reach_the_store_after_shutdown(server, engine):
    status, answer = call("POST", f"{server}/predict/m", {"features": [2, 2], "entity_id": "user-9"})
    assert status == 200
    call("POST", f"{server}/feedback/m", {"correlation_id": answer["correlation_id"], "kind": "actual",
                                         "label": ["x"]})
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


# --- the edges --------------------------------------------------------------------------------

NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=dt.UTC)  # the server's clock in these tests: injected
SECRET = "s3cret-token"


@pytest.fixture
def edge(sqlite_url, tmp_path):
    """A server with a small body limit, a bearer token and a fixed clock, on SQLite; yields (url, engine, writers)."""
    engine = make_engine(sqlite_url)
    set_routing(engine, "m", 0, shadow=True)
    calls = []

    def model(features):
        calls.append(features)
        return float(len(json.dumps(features)))

    router = Router(engine, "m", {"v1": model, "v2": model}, spill_dir=tmp_path / "m", refresh_seconds=None)
    feedback = LogWriter(engine, tmp_path / "fb", kind="feedback", flush_seconds=0.02)
    settings = ServeSettings(max_body_bytes=4_096, token=SECRET, recent_ids=3)
    url, stop = run_server(create_app({"m": router}, feedback_writer=feedback, settings=settings, clock=lambda: NOW))
    yield url, engine, router, feedback, calls
    stop()
    engine.dispose()


AUTH = {"authorization": f"Bearer {SECRET}"}


def post(url, body=None, raw=None, headers=AUTH, with_headers=False):
    return call("POST", url, body, raw=raw, headers=headers, with_headers=with_headers)


def raw_request(url: str, head: str, body_parts) -> tuple[int, bytes]:
    """Send a hand-made request (e.g. chunked, or a lying Content-Length); the status and body of the answer."""
    parsed = urllib.parse.urlsplit(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            for part in body_parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything: what a limit should do
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), data.split(b"\r\n\r\n", 1)[1]


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_a_body_over_the_limit_is_413_from_its_length_or_its_stream(edge):
    url, engine, *_ = edge
    big = {"features": "x" * 10_000}
    status, answer = post(f"{url}/predict/m", big)
    assert status == 413 and answer == {"error": "body larger than 4096 bytes"}
    # No Content-Length: chunked transfer, counted while it streams (80 chunks of 1 KiB, never all read).
    head = (f"POST /predict/m HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    parts = [b"400\r\n" + b"[" * 1024 + b"\r\n" for _ in range(80)] + [b"0\r\n\r\n"]
    status, text = raw_request(url, head, parts)
    assert status == 413 and b"larger than 4096" in text
    assert count(engine, "m") == 0


@pytest.mark.parametrize("body, status, words", [
    (b"", 400, "not valid JSON"),
    (b"{}", 422, "features: Field required"),
    (b'{"entity_id": "u"}', 422, "features: Field required"),
    (b"[1, 2]", 422, "body: Input should be a valid dictionary"),
    (b'{"features": [1], "entity_id": 42}', 422, "entity_id: Input should be a valid string"),
    (b'{"features": [1], "correlation_id": ""}', 422, "correlation_id: String should have at least 1 character"),
    (b'{"features": [1], "ECHO-ME-NOT": 1}', 422, "unknown field (allowed: features, entity_id, correlation_id)"),
    (b'{"features": [NaN]}', 422, "numbers must be finite"),
    (b'{"features": {"x": Infinity}}', 422, "numbers must be finite"),
    (b'{"features": [1e999]}', 422, "numbers must be finite"),
    (b'{"features": [1] \xff}', 400, "not"),
    (b"[" * 2_000 + b"]" * 2_000, 400, "nests deeper than 32 levels"),
])
def test_malformed_bodies_are_refused_with_one_short_line_before_the_model(edge, body, status, words):
    url, engine, _router, _fb, calls = edge
    got, answer = post(f"{url}/predict/m", raw=body)
    assert (got, list(answer)) == (status, ["error"]), answer
    assert words in answer["error"] and len(answer["error"]) <= 300
    assert "ECHO-ME-NOT" not in answer["error"] and "[[" not in answer["error"]
    assert calls == [] and count(engine, "m") == 0


def test_json_nested_100000_deep_is_400_without_a_recursion_error():
    from rollout_pipeline.serving.bodies import Refused, json_depth, parse_body

    deep = b'{"features": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert json_depth(deep) == 100_001
    assert json_depth(b'{"a": "[[[[{{{{", "b": ["\\"[[["]}') == 2  # brackets inside strings do not count
    with pytest.raises(Refused) as refused:
        parse_body(deep)
    assert refused.value.status == 400


def test_a_repeated_correlation_id_gets_the_same_answer_and_logs_one_served_row(edge):
    url, engine, router, _fb, calls = edge
    body = {"features": [1, 2, 3], "entity_id": "u1", "correlation_id": "retry-1"}
    first = post(f"{url}/predict/m", body, with_headers=True)
    again = post(f"{url}/predict/m", body, with_headers=True)
    assert first[0] == again[0] == 200 and first[1] == again[1]
    assert again[2]["Idempotent-Replay"] == "true" and "Idempotent-Replay" not in first[2]
    status, answer = post(f"{url}/predict/m", {**body, "features": [9]})
    assert status == 409 and "different request" in answer["error"]
    assert len(calls) == 2  # stable served + candidate shadow, once
    router.drain(10)
    router.writer.flush(10)
    served = [r for r in rows(engine, "m") if r.correlation_id == "retry-1" and r.served]
    assert len(served) == 1


def test_the_bearer_token_guards_predict_and_feedback_but_not_health(edge):
    url, *_ = edge
    body = {"features": [1]}
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": SECRET},
                    {"authorization": f"Basic {SECRET}"}):
        status, answer, got_headers = post(f"{url}/predict/m", body, headers=headers, with_headers=True)
        assert status == 401 and got_headers["WWW-Authenticate"] == "Bearer", headers
        assert SECRET not in json.dumps(answer)
        assert post(f"{url}/feedback/m", {"kind": "complaint"}, headers=headers)[0] == 401
        assert post(f"{url}/predict/no-such-model", body, headers=headers)[0] == 401  # no model names leak
    assert post(f"{url}/predict/m", body)[0] == 200
    assert call("GET", f"{url}/health")[0] == 200
    # Unauthenticated bodies are not read: an oversized one is still 401, not 413.
    assert post(f"{url}/predict/m", {"features": "x" * 10_000}, headers={})[0] == 401


@pytest.mark.parametrize("ts, value, status", [
    (None, 1, 202),
    ("2026-03-15T11:59:00+00:00", 0.5, 202),
    ("2026-03-12T12:00:01+00:00", 1, 202),     # 3 days back, just inside
    ("2026-03-12T11:59:59+00:00", 1, 422),     # just outside
    ("2026-03-15T12:06:00+00:00", 1, 422),     # 6 minutes ahead
    ("9999-12-31T23:59:59", 1, 422),
    ("0001-01-01T00:00:00+14:00", 1, 422),
    ("yesterday", 1, 422),
    (None, 1e308, 422),
    (None, -1e15, 422),
    (None, True, 422),
    (None, "1", 422),
])
def test_feedback_times_and_values_outside_the_contract_are_422(edge, ts, value, status):
    url, engine, _router, feedback, _calls = edge
    body = {"correlation_id": "c1", "kind": "actual", "value": value, **({"ts": ts} if ts else {})}
    got, answer = post(f"{url}/feedback/m", body)
    assert got == status, answer
    assert feedback.flush(10)
    assert count(engine, table="feedback") == (1 if status == 202 else 0)
    if status == 422:
        assert list(answer) == ["error"] and (ts or "§") not in answer["error"]


def test_feedback_nan_is_422(edge):
    url, engine, *_ = edge
    assert post(f"{url}/feedback/m", raw=b'{"kind": "actual", "value": NaN}')[0] == 422


def test_health_is_degraded_while_a_writer_has_set_rows_aside(edge):
    url, _engine, _router, feedback, _calls = edge
    assert call("GET", f"{url}/health")[1]["status"] == "ok"
    feedback.submit(FeedbackRow("c", NOW, "m", "complaint", 1.0, "nul\x00"))  # past the HTTP checks: the store refuses it
    assert feedback.flush(10)
    status, health = call("GET", f"{url}/health")
    assert status == 503 and health["status"] == "degraded"
    assert health["feedback_writer"]["rejected"] == 1


def test_serving_settings_come_from_the_environment_and_refuse_nonsense():
    from rollout_pipeline.config import SettingsError, serve_settings_from_env

    assert serve_settings_from_env({}) == ServeSettings()
    got = serve_settings_from_env({"ROLLOUT_SERVE_MAX_BODY_BYTES": "2048", "ROLLOUT_SERVE_TOKEN": "hunter2",
                                   "ROLLOUT_FEEDBACK_MAX_AGE_SECONDS": "60", "ROLLOUT_FEEDBACK_MAX_AHEAD_SECONDS": "1"})
    assert (got.max_body_bytes, got.token, got.feedback_max_age, got.feedback_max_ahead) == (
        2048, "hunter2", dt.timedelta(seconds=60), dt.timedelta(seconds=1))
    assert "hunter2" not in repr(got) and "token=***" in repr(got)
    for name, text in (("ROLLOUT_SERVE_MAX_BODY_BYTES", "1.5"), ("ROLLOUT_SERVE_MAX_BODY_BYTES", "0"),
                       ("ROLLOUT_FEEDBACK_MAX_AGE_SECONDS", "nan"), ("ROLLOUT_FEEDBACK_MAX_AHEAD_SECONDS", "1e300")):
        with pytest.raises(SettingsError, match=name):
            serve_settings_from_env({name: text})


def test_a_retry_that_arrives_while_the_first_is_answered_waits_for_the_same_answer(sqlite_url, tmp_path):
    engine = make_engine(sqlite_url)
    set_routing(engine, "slow", 0)
    calls = []

    def slow(features):
        calls.append(features)
        time.sleep(0.5)
        return 1.0

    router = Router(engine, "slow", {"v1": slow, "v2": slow}, spill_dir=tmp_path / "s", refresh_seconds=None)
    url, stop = run_server(create_app({"slow": router}))
    try:
        body = {"features": [1], "correlation_id": "twice-at-once"}
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(call("POST", f"{url}/predict/slow", body)))
                   for _ in range(3)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join(10)
        assert [a[0] for a in answers] == [200, 200, 200] and len({json.dumps(a[1]) for a in answers}) == 1
        assert len(calls) == 1
    finally:
        stop()
    assert len([r for r in rows(engine, "slow") if r.served]) == 1
    engine.dispose()
