"""Least privilege in PostgreSQL, checked on a real server (issue 10, decision 0185).

Each test gets a database of its own on the test server, applies the shipped
`deploy/postgres/roles.sql` to it with psql, runs every service's migrations as `dxt_migrator`
(which grants the service roles their rights), then connects as each service role (the test
servers trust local connections) and tries every operation of the allow/deny matrix. Each
attempt runs in a transaction that is rolled back; "allowed" means PostgreSQL passed its
privilege check (the statement ran, or failed afterwards on a constraint), "denied" means
SQLSTATE 42501 (insufficient privilege / must be owner).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from dxtalent.citygen import generate_city
from dxtalent.nats_tools import subject_for
from dxtalent_certification.service import SPEC as CERTIFICATION
from dxtalent_contracts.catalog import load_catalog
from dxtalent_enrollment.service import SPEC as ENROLLMENT
from dxtalent_infra.inbox_retention import prune_inbox
from dxtalent_infra.migrations import MigrationPrivilegeError, quote_ident
from dxtalent_infra.runtime import ServiceSpec, migrate_service, run_service
from dxtalent_infra.servers import free_ports, postgres_bin_dir
from dxtalent_infra.settings import Settings
from dxtalent_infra.topology import Topology
from dxtalent_reporting.service import SPEC as REPORTING
from tests.e2e.helpers import publish_with_ids
from tests.support.polling import eventually
from tests.support.servers import unique_token

ROLES_SQL = Path(__file__).resolve().parents[3] / "deploy" / "postgres" / "roles.sql"
MIGRATOR = "dxt_migrator"
SPECS: dict[str, ServiceSpec] = {
    "dxt_enrollment": ENROLLMENT,
    "dxt_certification": CERTIFICATION,
    "dxt_reporting": REPORTING,
}
OPS = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")

# What each service role may do on each table of its schema: S I U D T = SELECT, INSERT,
# UPDATE, DELETE, TRUNCATE; "." = denied. The code that needs each right is named in the
# component's PRIVILEGES. A table missing here fails the test: declare its rights first.
_EVENT_STORE = {
    "events": "SI...",
    "streams": "SIU..",
    "outbox": "SI.D.",
}
_CONSUMER = {
    "inbox": "SI.D.",
    "consumer_checkpoint": "SIU..",
    "schema_migrations": "S....",
}
EXPECTED: dict[str, dict[str, str]] = {
    "dxt_enrollment": {**_EVENT_STORE, **_CONSUMER, "xapi_statements": "SI..."},
    "dxt_certification": {
        **_EVENT_STORE,
        **_CONSUMER,
        "employees": "SIU..",
        "credentials": "SIU..",
        "credential_counter": "S.U..",
        "membership_days": "SIU..",
        "membership_years": "SIU..",
    },
    "dxt_reporting": {
        **_CONSUMER,
        "employee_records": "SIU..",
        "departures": "SIU..",
        "nominations": "SIU..",
        "levels": "SIU..",
        "completions": "SIU..",
        "skills": "SIU..",
        "improvement_cases": "SIU..",
        "enrollments": "SI...",
        "intake": "SI...",
        "placement_days": "SIU..",
        "placement_years": "SIU..",
        "membership_days": "SIU..",
        "membership_years": "SIU..",
    },
}


def _dsn(url: str, *, user: str | None = None, database: str | None = None) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user or parts.username or 'postgres'}@{host}" + (
        f":{parts.port}" if parts.port else ""
    )
    path = f"/{database}" if database else parts.path
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def _psql() -> str:
    bundled = postgres_bin_dir() / "psql"
    found = str(bundled) if bundled.exists() else shutil.which("psql")
    assert found, "psql is needed to apply deploy/postgres/roles.sql"
    return found


@dataclass(frozen=True)
class RolesDb:
    """A database of the test's own with roles.sql applied; `url(role)` connects as a role."""

    admin_url: str
    name: str

    def url(self, role: str = "postgres") -> str:
        return _dsn(self.admin_url, user=role, database=self.name)


async def _apply_roles_sql(db: RolesDb) -> None:
    """psql -f roles.sql, one session at a time: roles are shared by the whole server."""
    lock = await asyncpg.connect(db.admin_url)
    try:
        await lock.execute("SELECT pg_advisory_lock($1)", zlib.crc32(b"dxtalent-roles.sql"))
        args = [_psql(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db.url(), "-f", str(ROLES_SQL)]
        for var in ("migrator", "enrollment", "certification", "reporting"):
            args[1:1] = ["-v", f"{var}_password={unique_token()}"]
        done = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True)
        assert done.returncode == 0, f"roles.sql failed:\n{done.stderr}"
    finally:
        await lock.close()  # ends the session: the advisory lock goes with it


@pytest.fixture
async def roles_db(database_url: str) -> AsyncIterator[RolesDb]:
    """A fresh database with roles.sql applied, dropped afterwards."""
    db = RolesDb(database_url, f"dxt_roles_{unique_token()}")
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"CREATE DATABASE {quote_ident(db.name)}")
        await _apply_roles_sql(db)
        yield db
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(db.name)} WITH (FORCE)")
        await admin.close()


async def _migrate_all(db: RolesDb, schemas: Mapping[str, str]) -> None:
    """Every service's migrations into its schema, as dxt_migrator, granting its role."""
    conn = await asyncpg.connect(db.url(MIGRATOR))
    try:
        for role, spec in SPECS.items():
            await migrate_service(spec, conn, schemas[role], role)
    finally:
        await conn.close()


# --- the matrix --------------------------------------------------------------------------


async def _attempt(conn: asyncpg.Connection, sql: str) -> bool:
    """True when PostgreSQL let `sql` past its privilege checks; always rolled back."""
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(sql)
    except asyncpg.InsufficientPrivilegeError:
        return False
    except (asyncpg.NotNullViolationError, asyncpg.CheckViolationError, asyncpg.RaiseError):
        return True  # raised after the privilege checks (a constraint, a trigger): allowed
    finally:
        await tx.rollback()
    return True


def _table_ops(table: str) -> dict[str, str]:
    """One statement per operation; each needs exactly that right (no column is read)."""
    return {
        "SELECT": f"SELECT count(*) FROM {table}",
        "INSERT": f"INSERT INTO {table} DEFAULT VALUES",
        "UPDATE": f"UPDATE {table} SET {{col}} = NULL WHERE false",
        "DELETE": f"DELETE FROM {table} WHERE false",
        "TRUNCATE": f"TRUNCATE {table}",
    }


async def _tables(conn: asyncpg.Connection, schema: str) -> dict[str, str]:
    """Every table of `schema` and one of its columns (for UPDATE .. SET col)."""
    rows = await conn.fetch(
        "SELECT c.relname, (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid"
        " AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum LIMIT 1) AS col"
        " FROM pg_class c WHERE c.relnamespace = to_regnamespace($1) AND c.relkind = 'r'"
        " ORDER BY c.relname",
        quote_ident(schema),
    )
    return {r["relname"]: r["col"] for r in rows}


async def _observed_matrix(db: RolesDb, role: str, schema: str) -> dict[str, str]:
    """The role's rights on each table of its schema, in EXPECTED's notation."""
    admin = await asyncpg.connect(db.url())
    try:
        tables = await _tables(admin, schema)
    finally:
        await admin.close()
    conn = await asyncpg.connect(db.url(role))
    try:
        observed: dict[str, str] = {}
        for table, col in tables.items():
            target = f"{quote_ident(schema)}.{quote_ident(table)}"
            cells = ""
            for op, sql in _table_ops(target).items():
                allowed = await _attempt(conn, sql.replace("{col}", quote_ident(col)))
                cells += op[0] if allowed else "."
            observed[table] = cells
        return observed
    finally:
        await conn.close()


def _matrix_differences(role: str, schema: str, observed: Mapping[str, str]) -> list[str]:
    expected = EXPECTED[role]
    problems = [
        f"{role}: table {schema}.{t} has no row in EXPECTED (declare its privileges)"
        for t in sorted(set(observed) - set(expected))
    ]
    problems += [
        f"{role}: table {schema}.{t} expected but not created by the migrations"
        for t in sorted(set(expected) - set(observed))
    ]
    for table in sorted(set(observed) & set(expected)):
        for i, op in enumerate(OPS):
            want, got = expected[table][i] != ".", observed[table][i] != "."
            if want != got:
                problems.append(
                    f"{role} on {schema}.{table}: {op} {'allowed' if got else 'denied'},"
                    f" expected {'allowed' if want else 'denied'}"
                )
    return problems


def _structural_checks(role: str, schemas: Mapping[str, str]) -> list[tuple[str, str, bool]]:
    """(what, SQL, allowed?) beyond the per-table matrix: DDL, other schemas, public."""
    own = quote_ident(schemas[role])
    checks: list[tuple[str, str, bool]] = [
        ("CREATE TABLE in its schema", f"CREATE TABLE {own}.intruder (i int)", False),
        ("DROP TABLE inbox", f"DROP TABLE {own}.inbox", False),
        ("ALTER TABLE inbox", f"ALTER TABLE {own}.inbox ADD COLUMN x int", False),
        ("CREATE SCHEMA", f"CREATE SCHEMA {quote_ident(unique_token())}", False),
        ("CREATE TEMP TABLE", "CREATE TEMP TABLE scratch (i int)", False),
        ("CREATE TABLE in public", "CREATE TABLE public.intruder (i int)", False),
        ("SELECT a table in public", "SELECT count(*) FROM public.probe", False),
    ]
    if SPECS[role].publishes:
        checks += [
            (
                "DROP TRIGGER events_immutable",
                f"DROP TRIGGER events_immutable ON {own}.events",
                False,
            ),
            (
                "ALTER TABLE events DISABLE TRIGGER",
                f"ALTER TABLE {own}.events DISABLE TRIGGER events_immutable",
                False,
            ),
            ("DROP TABLE events", f"DROP TABLE {own}.events", False),
            ("nextval(position_seq)", f"SELECT nextval('{own}.position_seq')", True),
        ]
    for other, schema in schemas.items():
        if other != role:
            q = quote_ident(schema)
            checks += [
                (f"SELECT {schema}.inbox", f"SELECT count(*) FROM {q}.inbox", False),
                (f"DELETE {schema}.inbox", f"DELETE FROM {q}.inbox WHERE false", False),
                (f"CREATE TABLE in {schema}", f"CREATE TABLE {q}.intruder (i int)", False),
            ]
    return checks


async def _structural_differences(db: RolesDb, role: str, schemas: Mapping[str, str]) -> list[str]:
    conn = await asyncpg.connect(db.url(role))
    try:
        problems = []
        for what, sql, want in _structural_checks(role, schemas):
            got = await _attempt(conn, sql)
            if got != want:
                problems.append(
                    f"{role}: {what}: {'allowed' if got else 'denied'},"
                    f" expected {'allowed' if want else 'denied'} ({sql})"
                )
        return problems
    finally:
        await conn.close()


def render_matrix(observed: Mapping[str, Mapping[str, str]]) -> str:
    """The observed matrix as a Markdown table (role, table, one column per operation)."""
    lines = ["| role | table | " + " | ".join(OPS) + " |", "|---|---|" + "---|" * len(OPS)]
    for role, tables in observed.items():
        for table, cells in tables.items():
            marks = " | ".join("yes" if c != "." else "no" for c in cells)
            lines.append(f"| {role} | {table} | {marks} |")
    return "\n".join(lines)


async def _check_matrix(db: RolesDb, schemas: Mapping[str, str]) -> None:
    admin = await asyncpg.connect(db.url())
    try:  # something in `public` for the roles to be refused
        await admin.execute("CREATE TABLE IF NOT EXISTS public.probe (i int)")
    finally:
        await admin.close()
    problems: list[str] = []
    observed: dict[str, dict[str, str]] = {}
    for role in SPECS:
        observed[role] = await _observed_matrix(db, role, schemas[role])
        problems += _matrix_differences(role, schemas[role], observed[role])
        problems += await _structural_differences(db, role, schemas)
    assert not problems, "\n".join(problems) + "\n\nobserved:\n" + render_matrix(observed)


SCHEMAS_OF_ROLES_SQL = {
    "dxt_enrollment": "enrollment",
    "dxt_certification": "certification",
    "dxt_reporting": "reporting",
}


async def test_each_service_role_may_do_exactly_what_its_code_does(roles_db: RolesDb) -> None:
    """roles.sql, then the migrations as dxt_migrator (twice: grants are idempotent), then
    the full allow/deny matrix of every service role."""
    await _migrate_all(roles_db, SCHEMAS_OF_ROLES_SQL)
    await _migrate_all(roles_db, SCHEMAS_OF_ROLES_SQL)
    await _check_matrix(roles_db, SCHEMAS_OF_ROLES_SQL)


async def test_a_new_schema_built_by_the_migrations_gets_the_same_grants(
    roles_db: RolesDb,
) -> None:
    """A schema roles.sql never heard of (a rebuild's, a prefixed instance's), created by the
    migration runner as dxt_migrator, holds the same matrix."""
    prefix = unique_token()
    schemas = {role: f"{prefix}_{spec.name}" for role, spec in SPECS.items()}
    await _migrate_all(roles_db, schemas)
    await _check_matrix(roles_db, schemas)


async def test_a_service_role_cannot_migrate_and_says_what_to_set(roles_db: RolesDb) -> None:
    """Without DXT_MIGRATION_DATABASE_URL a restricted role gets one clear error at start-up."""
    conn = await asyncpg.connect(roles_db.url("dxt_enrollment"))
    try:
        with pytest.raises(MigrationPrivilegeError, match="DXT_MIGRATION_DATABASE_URL"):
            await migrate_service(ENROLLMENT, conn, "enrollment")
    finally:
        await conn.close()


async def test_an_existing_database_moves_to_the_migration_role(roles_db: RolesDb) -> None:
    """The old layout (the service role created and owned its tables) is upgraded by running
    roles.sql again and starting with the migration role: ownership moves, the matrix holds."""
    old_layout = {
        "dxt_enrollment": "enrollment",
        "dxt_certification": "certification",
        "dxt_reporting": "reporting",
    }
    admin = await asyncpg.connect(roles_db.url())
    try:
        for role, schema in old_layout.items():
            await admin.execute(f"ALTER SCHEMA {schema} OWNER TO {role}")
    finally:
        await admin.close()
    for role, spec in SPECS.items():
        conn = await asyncpg.connect(roles_db.url(role))
        try:
            await migrate_service(spec, conn, old_layout[role])  # as the service, as before
        finally:
            await conn.close()
    await _apply_roles_sql(roles_db)
    await _migrate_all(roles_db, old_layout)
    await _check_matrix(roles_db, old_layout)


# --- the services, end to end, as their restricted roles ---------------------------------

API_TOKEN = "query-token"


async def _caught_up(port: int) -> bool:
    async with httpx.AsyncClient(timeout=5) as http:
        r = await http.get(
            f"http://127.0.0.1:{port}/v1/status",
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
        return r.status_code == 200 and r.json()["caught_up"] is True


async def test_the_services_run_end_to_end_as_their_restricted_roles(
    roles_db: RolesDb, nats_url: str, topology: Topology
) -> None:
    """All three services, each connected as its own role with DXT_MIGRATION_DATABASE_URL
    set: they migrate (as dxt_migrator, into new prefixed schemas), consume a small city,
    append events, publish their outboxes and fill the read models, and prune their inboxes."""
    catalog = load_catalog()
    city = generate_city(catalog, seed=7, staff=60)
    items = []
    for event in city.events:
        raw = event.to_json_bytes()
        items.append((subject_for(raw)[0], raw, event.id))
    stop = asyncio.Event()
    ports = dict(zip(SPECS, free_ports(len(SPECS)), strict=True))
    tasks = [
        asyncio.create_task(
            run_service(
                spec,
                Settings(
                    nats_url=nats_url,
                    database_url=roles_db.url(role),
                    migration_database_url=roles_db.url(MIGRATOR),
                    prefix=topology.prefix,
                    http_port=ports[role],
                    api_token=SecretStr(API_TOKEN),
                    relay_poll_interval_s=0.2,
                    provision_streams=True,  # the harness has no `dxtalent provision` step
                ),
                stop,
            )
        )
        for role, spec in SPECS.items()
    ]
    try:

        async def all_up() -> bool:
            failed = [t for t in tasks if t.done()]
            if failed:
                raise AssertionError(f"a service stopped: {failed[0].exception()!r}")
            return all([await _caught_up(p) for p in ports.values()])

        await eventually(all_up, "the three services answer /v1/status", within=60)
        await publish_with_ids(nats_url, topology, items)

        async def settled() -> bool:
            return all([await _caught_up(p) for p in ports.values()])

        await eventually(settled, "the three services caught up", within=120)
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
    errors = [t.exception() for t in tasks if t.done() and not t.cancelled() and t.exception()]
    assert not errors, f"services failed: {errors!r}"

    prefix = topology.prefix
    admin = await asyncpg.connect(roles_db.url())
    try:
        owners = await admin.fetch(
            "SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_class c"
            " WHERE c.relnamespace::regnamespace::text LIKE $1",
            f"{prefix}%",
        )
        assert [r["owner"] for r in owners] == [MIGRATOR]
        recorded = await admin.fetchval(f'SELECT count(*) FROM "{prefix}_enrollment".events')
        certified = await admin.fetchval(
            "SELECT count(DISTINCT (data->>'employee_id', data->>'level'))"
            f' FROM "{prefix}_certification".events'
            " WHERE event_type = 'dxtalent.certification.LevelCertified.v1'"
        )
        levels = await admin.fetchval(f'SELECT count(*) FROM "{prefix}_reporting".levels')
        backlog = await admin.fetchval(
            f'SELECT (SELECT count(*) FROM "{prefix}_enrollment".outbox)'
            f' + (SELECT count(*) FROM "{prefix}_certification".outbox)'
        )
    finally:
        await admin.close()
    assert recorded == len(city.events)
    assert certified > 0
    assert levels == certified
    assert backlog == 0

    # the inbox pruning a service runs: DELETE as the service role, nothing past retention yet
    for role, spec in SPECS.items():
        pool = await asyncpg.create_pool(roles_db.url(role), min_size=1, max_size=1)
        try:
            assert await prune_inbox(pool, f"{prefix}_{spec.name}", 3600) == 0
        finally:
            await pool.close()
