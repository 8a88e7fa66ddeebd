-- dxtalent database roles and schemas: a migration role that owns everything, and one login
-- role per service that may only do what the service's code does.
--
-- Least privilege (docs/architecture.md, "PostgreSQL roles"; decision 0185):
--   dxt_migrator     owns the three schemas and every table, sequence and function in them.
--                    Only the migration step logs in as it (DXT_MIGRATION_DATABASE_URL); it
--                    applies the migrations and then grants the service role its rights.
--                    CREATE on the database: it builds new schemas (a prefixed instance, a
--                    projection rebuilt into a schema of its own).
--   dxt_enrollment,  CONNECT to the database, USAGE on their own schema, and per table the
--   dxt_certification, rights their component declares (the event log: SELECT and INSERT,
--   dxt_reporting    never UPDATE, DELETE or TRUNCATE). They own nothing, so they cannot drop
--                    the `events_immutable` trigger, drop or alter a table, or create one;
--                    nothing on the other services' schemas, nothing on `public`, no TEMP.
-- The per-table grants are not in this file: the migration runner applies them after every
-- migration run (`dxtalent_infra.migrations.grant_privileges`), so they follow the tables.
--
-- Run as a superuser (REASSIGN OWNED needs one, or membership in every dxt_ role), once per
-- database, and again to rotate passwords (idempotent):
--   psql -v ON_ERROR_STOP=1 -d dxtalent -v migrator_password=... \
--        -v enrollment_password=... -v certification_password=... -v reporting_password=... \
--        -f deploy/postgres/roles.sql
-- docker-compose runs it through deploy/postgres/init.sh on the first start of the volume.
-- Upgrading a database where the service roles owned their tables: run this file, then start
-- the services with DXT_MIGRATION_DATABASE_URL set (their first start grants the rights).

\set ON_ERROR_STOP on

-- roles (created when missing, password set every run)
SELECT format('CREATE ROLE %I', r)
  FROM unnest(ARRAY['dxt_migrator', 'dxt_enrollment', 'dxt_certification', 'dxt_reporting']) AS r
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r)
\gexec

ALTER ROLE dxt_migrator      LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 10 PASSWORD :'migrator_password';
ALTER ROLE dxt_enrollment    LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 50 PASSWORD :'enrollment_password';
ALTER ROLE dxt_certification LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 50 PASSWORD :'certification_password';
ALTER ROLE dxt_reporting     LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 50 PASSWORD :'reporting_password';

-- the database: the four roles may connect; only the migration role creates schemas
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC, dxt_enrollment, dxt_certification, dxt_reporting',
              current_database())
\gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO dxt_enrollment, dxt_certification, dxt_reporting',
              current_database())
\gexec
SELECT format('GRANT CONNECT, CREATE ON DATABASE %I TO dxt_migrator', current_database())
\gexec
REVOKE ALL ON SCHEMA public FROM PUBLIC;

-- what the service roles owned before (schemas, tables, sequences, functions, types) now
-- belongs to the migration role; their rights come from the migration runner's grants
REASSIGN OWNED BY dxt_enrollment, dxt_certification, dxt_reporting TO dxt_migrator;

-- one schema per service, owned by the migration role; its service role may use it
CREATE SCHEMA IF NOT EXISTS enrollment    AUTHORIZATION dxt_migrator;
CREATE SCHEMA IF NOT EXISTS certification AUTHORIZATION dxt_migrator;
CREATE SCHEMA IF NOT EXISTS reporting     AUTHORIZATION dxt_migrator;
ALTER SCHEMA enrollment    OWNER TO dxt_migrator;
ALTER SCHEMA certification OWNER TO dxt_migrator;
ALTER SCHEMA reporting     OWNER TO dxt_migrator;
REVOKE ALL ON SCHEMA enrollment, certification, reporting
  FROM PUBLIC, dxt_enrollment, dxt_certification, dxt_reporting;
GRANT USAGE ON SCHEMA enrollment    TO dxt_enrollment;
GRANT USAGE ON SCHEMA certification TO dxt_certification;
GRANT USAGE ON SCHEMA reporting     TO dxt_reporting;

ALTER ROLE dxt_enrollment    SET search_path = enrollment;
ALTER ROLE dxt_certification SET search_path = certification;
ALTER ROLE dxt_reporting     SET search_path = reporting;
ALTER ROLE dxt_migrator      SET search_path = pg_catalog;
-- a stuck transaction must not hold the relay's advisory lock or the outbox forever
ALTER ROLE dxt_enrollment    SET idle_in_transaction_session_timeout = '60s';
ALTER ROLE dxt_certification SET idle_in_transaction_session_timeout = '60s';
ALTER ROLE dxt_reporting     SET idle_in_transaction_session_timeout = '60s';
ALTER ROLE dxt_migrator      SET idle_in_transaction_session_timeout = '60s';
