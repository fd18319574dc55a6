"""The store resource: one SQLAlchemy engine per process, on the database named by the environment."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from pydantic import PrivateAttr

from rollout_pipeline.config import load_settings
from rollout_pipeline.store.engine import make_engine


class StoreResource(dg.ConfigurableResource):
    """The log store and the pipeline's tables.

    ``database_url`` empty means: ROLLOUT_DATABASE_URL, else the embedded SQLite
    file in the state folder. It is read at run time, so secrets in the URL stay
    in the environment and out of run config and the UI.
    """

    database_url: str = ""
    _engine: sa.Engine | None = PrivateAttr(default=None)

    def url(self) -> str:
        return self.database_url or load_settings().database_url

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = make_engine(self.url())
        return self._engine

    def teardown_after_execution(self, context) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
