"""Versioned schema migrations, applied at start-up, safe when several replicas start at once.

Each component (event store, consumer inbox, a service's read model) names its own
migrations; `migrate` applies the missing ones in order inside one transaction while holding
a transaction-level advisory lock keyed by the schema and component, so concurrent starters
wait for each other instead of racing. A component whose migrations are all applied is left
alone after one read of `schema_migrations`: a service role without DDL rights may call it.

Least privilege (docs/architecture.md, "PostgreSQL roles"): in production the migrations run
as the migration role, which owns the schema and every object in it, and the service role is
then granted exactly what its code does. Each component declares those rights next to its
tables as `Privilege`s; `grant_privileges` applies them after every migration run (revoking
whatever else the service role held), so a table added by a later migration, or a new schema
built by the same migrations, gets the same grants. `ALTER DEFAULT PRIVILEGES` is not used:
rights differ per table (the event log: SELECT and INSERT only), and a default would hand a
new table every right until someone revoked it.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Migration:
    """One step: `sql` may use `{schema}`, replaced by the quoted schema name."""

    version: int
    description: str
    sql: str


@dataclass(frozen=True)
class Privilege:
    """What a service role may do on one object of its schema (a table unless `sequence`)."""

    name: str
    rights: tuple[str, ...]
    sequence: bool = False


#: Every schema's migration ledger: services read it (is everything applied?), never write it.
PRIVILEGES: tuple[Privilege, ...] = (Privilege("schema_migrations", ("SELECT",)),)


class MigrationPrivilegeError(RuntimeError):
    """The connection may not change the schema: the migrations need the migration role."""


def quote_ident(name: str) -> str:
    """A PostgreSQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def _lock_key(schema: str, component: str) -> int:
    return zlib.crc32(f"dxtalent-migrate:{schema}:{component}".encode()) - 2**31


async def migrate(
    conn: asyncpg.Connection, schema: str, component: str, migrations: Sequence[Migration]
) -> list[int]:
    """Apply the migrations of `component` that `schema` lacks; returns the versions applied."""
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise ValueError(
            f"migrations of {component!r} must have increasing, unique versions: {versions}"
        )
    q = quote_ident(schema)
    applied: list[int] = []
    try:
        if await _all_applied(conn, q, component, versions):
            return []
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(schema, component))
            await _apply(conn, q, component, migrations, applied)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise MigrationPrivilegeError(
            f"migrations of {component!r} in schema {schema!r} need the migration role"
            f" ({exc}); set DXT_MIGRATION_DATABASE_URL (docs/architecture.md)"
        ) from exc
    if applied:
        log.info("migrations.applied", schema=schema, component=component, versions=applied)
    return applied


async def _all_applied(
    conn: asyncpg.Connection, q: str, component: str, versions: Sequence[int]
) -> bool:
    """True when `schema_migrations` lists every version (read-only, any role with SELECT)."""
    if await conn.fetchval("SELECT to_regclass($1) IS NULL", f"{q}.schema_migrations"):
        return False
    done = await conn.fetch(
        f"SELECT version FROM {q}.schema_migrations WHERE component = $1", component
    )
    return set(versions) <= {r["version"] for r in done}


async def _apply(
    conn: asyncpg.Connection,
    q: str,
    component: str,
    migrations: Sequence[Migration],
    applied: list[int],
) -> None:
    # a least-privilege role may own its schema without CREATE on the database
    if await conn.fetchval("SELECT to_regnamespace($1) IS NULL", q):
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {q}")
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {q}.schema_migrations ("
        " component text NOT NULL, version int NOT NULL, description text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"
    )
    done = {
        r["version"]
        for r in await conn.fetch(
            f"SELECT version FROM {q}.schema_migrations WHERE component = $1", component
        )
    }
    for m in migrations:
        if m.version in done:
            continue
        await conn.execute(m.sql.replace("{schema}", q))
        await conn.execute(
            f"INSERT INTO {q}.schema_migrations (component, version, description) VALUES ($1, $2, $3)",
            component,
            m.version,
            m.description,
        )
        applied.append(m.version)


_RIGHTS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "USAGE"})


async def grant_privileges(
    conn: asyncpg.Connection, schema: str, role: str, privileges: Sequence[Privilege]
) -> None:
    """Give `role` exactly `privileges` in `schema`, run by the schema's owner after migrating.

    `role` gets USAGE on the schema (never CREATE) and, on each declared object, the declared
    rights and no others; an object of the schema nobody declared gets no rights at all (and
    is logged: its component should declare them). Idempotent, in one transaction. Nothing to
    do when `role` is the connection's own role (it owns what it created: dev and tests)."""
    for p in privileges:
        if not p.rights or not set(p.rights) <= _RIGHTS:
            raise ValueError(f"privileges on {p.name!r}: {p.rights} (allowed: {sorted(_RIGHTS)})")
    if role == await conn.fetchval("SELECT current_user"):
        return
    q, r = quote_ident(schema), quote_ident(role)
    declared = {p.name: p for p in privileges}
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(schema, "privileges"))
        await conn.execute(f"GRANT USAGE ON SCHEMA {q} TO {r}")
        await conn.execute(f"REVOKE CREATE ON SCHEMA {q} FROM {r}")
        objects = await conn.fetch(
            "SELECT c.relname, c.relkind = 'S' AS is_sequence FROM pg_class c"
            " WHERE c.relnamespace = to_regnamespace($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'S')"
            " ORDER BY c.relname",
            q,
        )
        undeclared: list[str] = []
        for obj in objects:
            name = obj["relname"]
            kind = "SEQUENCE" if obj["is_sequence"] else "TABLE"
            target = f"{q}.{quote_ident(name)}"
            await conn.execute(f"REVOKE ALL ON {kind} {target} FROM {r}")
            wanted = declared.get(name)
            if wanted is None or wanted.sequence != obj["is_sequence"]:
                undeclared.append(name)
                continue
            await conn.execute(f"GRANT {', '.join(wanted.rights)} ON {kind} {target} TO {r}")
    if undeclared:
        log.warning("privileges.undeclared", schema=schema, role=role, objects=undeclared)
    log.info("privileges.granted", schema=schema, role=role, objects=len(objects))
