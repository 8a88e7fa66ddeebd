"""Versioned schema migrations, applied at start-up, safe when several replicas start at once.

Each component (event store, consumer inbox, a service's read model) names its own
migrations; `migrate` applies the missing ones in order inside one transaction while holding
a transaction-level advisory lock keyed by the schema and component, so concurrent starters
wait for each other instead of racing.
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
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(schema, component))
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
    if applied:
        log.info("migrations.applied", schema=schema, component=component, versions=applied)
    return applied
