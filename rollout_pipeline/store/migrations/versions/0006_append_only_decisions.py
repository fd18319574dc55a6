"""The audit is append-only for every role that does not own the table, ``superseded_by`` included (PostgreSQL).

The pipeline role may UPDATE two columns of ``decisions`` (docs/roles.sql): ``superseded_by`` when a re-run
supersedes a decision, ``applied_at`` when it is applied. A column grant cannot say how: with it, a role could
point every decision's ``superseded_by`` anywhere and ``history`` printed "no decisions". These triggers allow
exactly the moves ``store.rollouts`` makes, for every role:

- no other column ever changes;
- ``applied_at`` is set once;
- ``superseded_by`` is set once, to a newer decision of the same model and day (``-1`` for the moment the
  superseding row is inserted: ``store.tables.insert_superseding``), and never left at ``-1`` at COMMIT (a
  deferred constraint trigger).

A refusal is SQLSTATE 42501 (insufficient_privilege), "permission denied: ...". The owner of the table may still
drop or disable the triggers (a migration's own data fix would): "every role but the migration owner". SQLite
(the embedded, single-user default) has no roles: nothing to add there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The tables are read through TG_TABLE_SCHEMA/TG_TABLE_NAME, never an unqualified name a temporary table of the
# caller's could shadow (pg_temp comes first in the search path).
_GUARD = """
CREATE OR REPLACE FUNCTION rollout_decisions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  successor_ok boolean;
BEGIN
  IF to_jsonb(NEW) - 'superseded_by' - 'applied_at' IS DISTINCT FROM to_jsonb(OLD) - 'superseded_by' - 'applied_at'
  THEN
    RAISE EXCEPTION 'permission denied: decision % is append-only: only superseded_by and applied_at are set, once',
      OLD.id USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF OLD.applied_at IS NOT NULL AND NEW.applied_at IS DISTINCT FROM OLD.applied_at THEN
    RAISE EXCEPTION 'permission denied: decision % was applied at %, and stays so', OLD.id, OLD.applied_at
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.superseded_by IS DISTINCT FROM OLD.superseded_by THEN
    IF OLD.superseded_by IS NOT NULL AND OLD.superseded_by <> -1 THEN
      RAISE EXCEPTION 'permission denied: decision % is superseded by decision % already', OLD.id, OLD.superseded_by
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.superseded_by IS NULL THEN
      successor_ok := false;
    ELSIF NEW.superseded_by = -1 THEN
      successor_ok := OLD.superseded_by IS NULL;  -- frees the live slot while the successor is inserted
    ELSE
      EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I WHERE id = $1 AND id > $2 AND model_name = $3 AND day = $4)',
                     TG_TABLE_SCHEMA, TG_TABLE_NAME)
        INTO successor_ok USING NEW.superseded_by, OLD.id, OLD.model_name, OLD.day;
    END IF;
    IF NOT successor_ok THEN
      RAISE EXCEPTION 'permission denied: decision % can only be superseded by a newer decision of % %',
        OLD.id, OLD.model_name, OLD.day USING ERRCODE = 'insufficient_privilege';
    END IF;
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER rollout_decisions_append_only BEFORE UPDATE ON decisions
  FOR EACH ROW EXECUTE FUNCTION rollout_decisions_append_only();

CREATE OR REPLACE FUNCTION rollout_decisions_superseded_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  left_open boolean;
BEGIN
  EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I WHERE id = $1 AND superseded_by = -1)',
                 TG_TABLE_SCHEMA, TG_TABLE_NAME) INTO left_open USING NEW.id;
  IF left_open THEN
    RAISE EXCEPTION 'permission denied: decision % was left without its successor (superseded_by -1)', NEW.id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER rollout_decisions_superseded_at_commit AFTER UPDATE OF superseded_by ON decisions
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rollout_decisions_superseded_at_commit();
"""

_DROP = """
DROP TRIGGER IF EXISTS rollout_decisions_superseded_at_commit ON decisions;
DROP TRIGGER IF EXISTS rollout_decisions_append_only ON decisions;
DROP FUNCTION IF EXISTS rollout_decisions_superseded_at_commit();
DROP FUNCTION IF EXISTS rollout_decisions_append_only();
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_GUARD)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_DROP)
