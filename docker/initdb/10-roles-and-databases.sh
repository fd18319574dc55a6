#!/bin/bash
# Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d), as its superuser
# (POSTGRES_USER), which nothing else uses. It creates, each with its own password from compose's .env:
#   rollout        the owner of the pipeline's database `rollout` (migrations, day partitions: the migrate service)
#   dagster        the owner of Dagster's own database `dagster` (runs, events, schedules)
#   pipeline_app   a login of the group role rollout_pipeline (the code location, the daemon, the webserver, runs)
#   router_app     a login of the group role rollout_serving (the serve service)
# The group roles get their privileges from `rollout-pipeline init-db --grant-roles` (docs/roles.sql), run by the
# migrate service as the owner once the tables exist. Dagster's storage and the pipeline's tables each keep their
# schema version in an Alembic table named alembic_version: they must not share a database.
# Idempotent (existing roles get their password reset), so it may be run again by hand; the passwords go through
# psql variables (:'name' quotes them), never into the SQL text.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
     -v owner_pw="$OWNER_DB_PASSWORD" -v dagster_pw="$DAGSTER_PG_PASSWORD" \
     -v pipeline_pw="$PIPELINE_DB_PASSWORD" -v serving_pw="$SERVING_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I NOLOGIN', r) FROM unnest(ARRAY['rollout_pipeline', 'rollout_serving']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
SELECT format('CREATE ROLE %I LOGIN', r) FROM unnest(ARRAY['rollout', 'dagster', 'pipeline_app', 'router_app']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L', r, pw)
  FROM (VALUES ('rollout', :'owner_pw'), ('dagster', :'dagster_pw'), ('pipeline_app', :'pipeline_pw'),
               ('router_app', :'serving_pw')) AS logins(r, pw) \gexec
GRANT rollout_pipeline TO pipeline_app;
GRANT rollout_serving TO router_app;
SELECT format('CREATE DATABASE %I OWNER %I', d, d) FROM unnest(ARRAY['rollout', 'dagster']) AS d
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = d) \gexec
SQL
