"""One home for the log tables' identity columns: the exactly-once check and the serving role's grants use it."""

import re

from rollout_pipeline.store.roles import SERVING_ROLE, roles_sql
from rollout_pipeline.store.tables import IDENTITY_COLUMNS, LOG_TABLES, metadata


def test_every_log_table_has_identity_columns_that_exist():
    assert set(IDENTITY_COLUMNS) == set(LOG_TABLES)
    for table, columns in IDENTITY_COLUMNS.items():
        assert set(columns) <= set(metadata.tables[table].columns.keys()), table
        assert {"ts", "correlation_id", "model_name"} <= set(columns)


def test_the_serving_role_may_read_exactly_the_identity_columns():
    grants = re.findall(rf"GRANT SELECT \(([^)]*)\) ON (\w+) TO {SERVING_ROLE};", roles_sql())
    assert {table: tuple(columns.split(", ")) for columns, table in grants} == IDENTITY_COLUMNS
