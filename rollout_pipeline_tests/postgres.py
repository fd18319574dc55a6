"""Find or start a real PostgreSQL for the tests and benchmarks.

Order: ``ROLLOUT_TEST_DATABASE_URL`` if set; else the server on
127.0.0.1:5432 (user ``postgres``, as on our machines); else a throwaway
cluster started from the installed binaries (``initdb`` / ``pg_ctl``) in a
temporary folder. ``.ci/run`` installs the binaries when they are missing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from rollout_pipeline.store.engine import make_engine, normalize_url

ENV_TEST_URL = "ROLLOUT_TEST_DATABASE_URL"
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class NoPostgres(RuntimeError):
    """No PostgreSQL could be found or started; the message says why."""


def _reachable(url: str) -> str | None:
    """None when the server answers, else the error text."""
    engine = make_engine(url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return None
    except Exception as exc:  # any failure to connect means "not this one"
        return str(exc).splitlines()[0]
    finally:
        engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return found[0] if found else shutil.which(name)


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Start a private PostgreSQL cluster in a temporary folder; yields its server URL."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise NoPostgres("no PostgreSQL binaries (initdb, pg_ctl) installed: apt-get install postgresql")
    folder = Path(tempfile.mkdtemp(prefix="rollout-pg-"))
    data, port = folder / "data", _free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise NoPostgres("running as root and there is no 'postgres' user to run initdb as") from exc
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder} -c fsync=off"
    subprocess.run([*run_as, pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-o", options, "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield the URL of a PostgreSQL server's maintenance database, starting one if need be."""
    explicit = os.environ.get(ENV_TEST_URL)
    if explicit:
        problem = _reachable(explicit)
        if problem:
            raise NoPostgres(f"{ENV_TEST_URL} is set but not reachable: {problem}")
        yield explicit
        return
    problem = _reachable(LOCAL_URL)
    if problem is None:
        yield LOCAL_URL
        return
    try:
        with throwaway_cluster() as url:
            yield url
    except subprocess.CalledProcessError as exc:
        raise NoPostgres(f"127.0.0.1:5432 unreachable ({problem}) and a throwaway cluster failed: "
                         f"{exc.stderr.decode(errors='replace')[-500:]}") from exc


def database_url(server_url: str, name: str) -> str:
    """URL of database ``name`` on the server of ``server_url``."""
    return normalize_url(server_url).set(database=name).render_as_string(hide_password=False)


def create_database(server_url: str, template: str | None = None, prefix: str = "rp_test") -> str:
    """Create a uniquely named database (optionally from a template); returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = make_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        # Identifiers cannot be bound: the name is ours (hex), the template ours too.
        conn.execute(sa.text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    engine.dispose()
    return database_url(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    """Drop the database named by ``url`` (forcing other sessions off it)."""
    name = normalize_url(url).database
    engine = make_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()
