"""`rollout-pipeline`: the automation surface, one module per command group.

Commands that analyse or decide run the same Dagster definitions in-process, so
the audit trail is the one the schedule would leave. Each command parses its
options, calls one service function and prints; the services record, apply and
announce (a decision's notification is posted by ``rollout_pipeline.decisions``,
never here). Heavy imports (Dagster, Great Expectations) happen inside the
commands that need them, keeping ``--help`` and ``init-db`` fast.

- ``rollout``: rollout start, plan, policy, backtest
- ``decide``: decide, approve, reject, rollback
- ``review``: status, history, report, digest
- ``lake``: export-logs
- ``admin``: init-db, teardown, demo, ui
- ``base``: exit codes, errors as one line, shared parsing and printing
- ``group``: the root command and the console script (``serve`` and ``simulate`` live with what they run)
"""

from rollout_pipeline.cli.base import collect_less_often, quiet_dagster
from rollout_pipeline.cli.group import cli, main

__all__ = ["cli", "collect_less_often", "main", "quiet_dagster"]
