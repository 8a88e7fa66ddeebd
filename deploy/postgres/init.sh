#!/bin/bash
# First start of the PostgreSQL volume (docker-entrypoint-initdb.d): create the dxtalent roles
# and schemas from deploy/postgres/roles.sql with passwords from the environment.
set -euo pipefail
: "${PG_ENROLLMENT_PASSWORD:?set PG_ENROLLMENT_PASSWORD}"
: "${PG_CERTIFICATION_PASSWORD:?set PG_CERTIFICATION_PASSWORD}"
: "${PG_REPORTING_PASSWORD:?set PG_REPORTING_PASSWORD}"
: "${PG_MIGRATOR_PASSWORD:?set PG_MIGRATOR_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v enrollment_password="$PG_ENROLLMENT_PASSWORD" \
  -v certification_password="$PG_CERTIFICATION_PASSWORD" \
  -v reporting_password="$PG_REPORTING_PASSWORD" \
  -v migrator_password="$PG_MIGRATOR_PASSWORD" \
  -f /etc/dxtalent/postgres/roles.sql
