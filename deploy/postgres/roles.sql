-- dxtalent database roles and schemas: one login role and one schema per service.
--
-- Least privilege: each service role owns exactly its schema (event store, outbox, inbox,
-- read models live there) and has no other rights: not superuser, no CREATEDB/CREATEROLE,
-- nothing on the other services' schemas, nothing on `public`. Services talk to each other
-- only through NATS, never through each other's tables.
--
-- Run as the database owner / an admin, once per database, and again to rotate passwords
-- (idempotent):
--   psql -v ON_ERROR_STOP=1 -d dxtalent \
--        -v enrollment_password=... -v certification_password=... -v reporting_password=... \
--        -f deploy/postgres/roles.sql
-- docker-compose runs it through deploy/postgres/init.sh on the first start of the volume.

\set ON_ERROR_STOP on

-- roles (created when missing, password set every run)
SELECT format('CREATE ROLE %I LOGIN', r)
  FROM unnest(ARRAY['dxt_enrollment', 'dxt_certification', 'dxt_reporting']) AS r
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r)
\gexec

ALTER ROLE dxt_enrollment    LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 50 PASSWORD :'enrollment_password';
ALTER ROLE dxt_certification LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 50 PASSWORD :'certification_password';
ALTER ROLE dxt_reporting     LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 50 PASSWORD :'reporting_password';

-- the database: only the service roles may connect; nobody creates objects in `public`
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database())
\gexec
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO dxt_enrollment, dxt_certification, dxt_reporting',
              current_database())
\gexec
REVOKE ALL ON SCHEMA public FROM PUBLIC;

-- one schema per service, owned by its role (the service's migrations create the tables)
CREATE SCHEMA IF NOT EXISTS enrollment    AUTHORIZATION dxt_enrollment;
CREATE SCHEMA IF NOT EXISTS certification AUTHORIZATION dxt_certification;
CREATE SCHEMA IF NOT EXISTS reporting     AUTHORIZATION dxt_reporting;
ALTER SCHEMA enrollment    OWNER TO dxt_enrollment;
ALTER SCHEMA certification OWNER TO dxt_certification;
ALTER SCHEMA reporting     OWNER TO dxt_reporting;
REVOKE ALL ON SCHEMA enrollment, certification, reporting FROM PUBLIC;

ALTER ROLE dxt_enrollment    SET search_path = enrollment;
ALTER ROLE dxt_certification SET search_path = certification;
ALTER ROLE dxt_reporting     SET search_path = reporting;
-- a stuck transaction must not hold the relay's advisory lock or the outbox forever
ALTER ROLE dxt_enrollment    SET idle_in_transaction_session_timeout = '60s';
ALTER ROLE dxt_certification SET idle_in_transaction_session_timeout = '60s';
ALTER ROLE dxt_reporting     SET idle_in_transaction_session_timeout = '60s';
