"""Fixtures of the reliability tests: a PostgreSQL cluster of their own (stopped, restarted,
given roles), a rollout with a day of logs, and helpers shared by the test modules.

The shared server on 127.0.0.1:5432 is never restarted and gets no roles: everything that
changes a cluster (restart, outage, CREATE ROLE) happens in a throwaway cluster started
from the installed PostgreSQL binaries in a temporary folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.migrate import upgrade
from rollout_pipeline_tests import postgres
from rollout_pipeline_tests.conftest import IN_CI


class Cluster:
    """A private PostgreSQL cluster (trust auth, localhost only) that a test may stop and start."""

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = postgres._pg_bin("initdb"), postgres._pg_bin("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            raise postgres.NoPostgres("no PostgreSQL binaries (initdb, pg_ctl): run scripts/ensure-postgres-binaries")
        self.folder = Path(tempfile.mkdtemp(prefix="rollout-rel-pg-"))
        self.data = self.folder / "data"
        self.port = postgres._free_port()
        self.run_as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            pw = pwd.getpwnam("postgres")
            os.chown(self.folder, pw.pw_uid, pw.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*self.run_as, self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True)
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self.run_as, self.pg_ctl, "-D", str(self.data), *args], check=True, capture_output=True)

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.folder} "
                   "-c fsync=off -c max_connections=60")
        self._ctl("-l", str(self.folder / "log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster():
    """A throwaway PostgreSQL cluster for the whole session (restarted by some tests)."""
    try:
        c = Cluster()
    except (postgres.NoPostgres, subprocess.CalledProcessError, KeyError) as exc:
        if IN_CI:
            pytest.fail(f"CI=true and no throwaway PostgreSQL cluster could be started: {exc}", pytrace=False)
        pytest.skip(f"no throwaway PostgreSQL cluster: {exc}")
    yield c
    c.destroy()


def wait_until_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while postgres._reachable(url) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"PostgreSQL at {url} did not come back")
        time.sleep(0.2)


@pytest.fixture
def cluster_url(cluster):
    """A fresh database at the newest schema in the throwaway cluster (the cluster is started if a test left it down)."""
    if postgres._reachable(cluster.url) is not None:
        cluster.start()
    url = postgres.create_database(cluster.url, prefix="rp_rel")
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    upgrade(engine)
    engine.dispose()
    yield url
    if postgres._reachable(cluster.url) is not None:
        cluster.start()
    postgres.drop_database(cluster.url, url)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


DAY = dt.date(2026, 11, 28)
