"""Helpers for the serving tests: routing set-up and a database URL that refuses connections."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import sqlalchemy as sa
import uvicorn

from rollout_pipeline.domain.routing import VariantRoute
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.routing import read_routing, write_routing
from rollout_pipeline.store.serving_queries import count_rows, duplicate_identities, read_rows


def set_routing(engine, model: str, candidate_percent: float, *, shadow: bool = False, stable="v1", candidate="v2"):
    """Write ``model``'s routing: stable + candidate at ``candidate_percent`` (shadowing if asked)."""
    routes = (VariantRoute(stable, "stable", 100 - candidate_percent),
              VariantRoute(candidate, "candidate", candidate_percent, shadow))
    with engine.begin() as conn:
        current = read_routing(conn, model)
        return write_routing(conn, model, routes, expected_version=current.version if current else None,
                             actor="test", reason="test")


def rows(engine, model: str):
    with engine.connect() as conn:
        return read_rows(conn, "prediction_log", model)


def count(engine, model: str | None = None, table: str = "prediction_log") -> int:
    with engine.connect() as conn:
        return count_rows(conn, table, model)


def duplicates(engine, table: str = "prediction_log") -> int:
    with engine.connect() as conn:
        return duplicate_identities(conn, table)


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unreachable_engine(db_url, tmp_path):
    """An engine on the same backend as ``db_url`` that cannot connect (closed port / unopenable file)."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path}/missing-dir/{'x' * 10}/db.sqlite"
        engine = sa.create_engine(url)  # not make_engine: that would create the folder
    else:
        url = sa.engine.make_url(db_url).set(host="127.0.0.1", port=closed_port())
        engine = make_engine(url, connect_args={"connect_timeout": 2})
    yield engine
    engine.dispose()


def set_connections(pg_server: str, database: str, allowed: bool) -> None:
    """Let a PostgreSQL database accept connections, or refuse them and kill its sessions (an outage)."""
    admin = make_engine(pg_server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": database})
    admin.dispose()


def run_server(app):
    """Start ``app`` on uvicorn on a free local port; returns (base url, stop function)."""
    port = closed_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started

    def stop():
        server.should_exit = True
        thread.join(10)  # the lifespan shutdown closes routers and writer: rows flushed

    return f"http://127.0.0.1:{port}", stop
