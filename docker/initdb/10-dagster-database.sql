-- Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d), as POSTGRES_USER.
-- Dagster's run/event/schedule storage and the pipeline's tables each keep their schema version in an
-- Alembic table named alembic_version: they must not share a database (see docker/compose.yaml).
CREATE DATABASE dagster;
