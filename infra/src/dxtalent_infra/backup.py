"""A logical backup of event stores, and its restore into an empty database (decision 0221).

Only the event stores are backed up: every projection and read model is rebuilt from the
events (guarantee 5). `dump_event_stores` copies each store's `events` and `streams` with
`COPY ... TO STDOUT (FORMAT csv)`, all stores in one `REPEATABLE READ` snapshot, so a
certification event is never in the dump without the enrollment event that caused it. CSV
from COPY does not depend on the server's version: a dump of PostgreSQL 18 restores into 15.

`restore_event_store` creates the store by its own migrations in the target schema (which
must hold no events), copies the rows back, moves the position sequence past them and, with
`republish`, puts every event in the outbox so the relay publishes them again to a stream
that lost them. The `stamp` column (see `eventstore`) is not restored: it holds transaction
ids of the old cluster, which a new cluster has not reached, and `read_all` would hold every
restored event back until it did; restored events are all committed, so they get stamp 0.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from dxtalent_infra.eventstore import MIGRATIONS as EVENTSTORE_MIGRATIONS
from dxtalent_infra.migrations import migrate, quote_ident

MANIFEST = "manifest.json"
EVENT_COLUMNS = (
    "position",
    "stream_id",
    "stream_version",
    "event_id",
    "event_type",
    "data",
    "subject",
    "causation_id",
    "correlation_id",
    "occurred_at",
    "recorded_at",
)


class BackupError(RuntimeError):
    """The backup or restore cannot be done as asked; nothing was changed."""


@dataclass(frozen=True)
class StoreDump:
    """One store in a dump: the service, its event count and last position."""

    service: str
    events: int
    last_position: int


async def dump_event_stores(
    conn: asyncpg.Connection, schemas: dict[str, str], directory: Path
) -> list[StoreDump]:
    """Dump the stores of `schemas` (service -> schema) into `directory`, one snapshot."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    dumped = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for service, schema in schemas.items():
            q = quote_ident(schema)
            if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{q}.events"):
                raise BackupError(f"schema {schema!r} has no event store")
            await conn.copy_from_query(
                f"SELECT {', '.join(EVENT_COLUMNS)} FROM {q}.events ORDER BY position",
                output=directory / f"{service}.events.csv",
                format="csv",
            )
            await conn.copy_from_query(
                f"SELECT stream_id, version FROM {q}.streams ORDER BY stream_id",
                output=directory / f"{service}.streams.csv",
                format="csv",
            )
            n, last = await conn.fetchrow(
                f"SELECT count(*), coalesce(max(position), 0) FROM {q}.events"
            ) or (0, 0)
            dumped.append(StoreDump(service, int(n), int(last)))
        version = await conn.fetchval("SHOW server_version")
    manifest = {
        "format": 1,
        "server_version": version,
        "stores": [vars(d) for d in dumped],
    }
    await asyncio.to_thread((directory / MANIFEST).write_text, json.dumps(manifest, indent=2))
    return dumped


def read_manifest(directory: Path) -> list[StoreDump]:
    """The stores a dump holds."""
    try:
        doc = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{directory} is not a dxtalent event-store dump ({exc})") from None
    return [StoreDump(**s) for s in doc["stores"]]


async def restore_event_store(
    conn: asyncpg.Connection, service: str, schema: str, directory: Path, *, republish: bool
) -> int:
    """Restore `service`'s store from `directory` into `schema`; returns the events restored."""
    q = quote_ident(schema)
    expected = {d.service: d for d in read_manifest(directory)}.get(service)
    if expected is None:
        raise BackupError(f"the dump in {directory} holds no event store of {service!r}")
    await migrate(conn, schema, "eventstore", EVENTSTORE_MIGRATIONS)
    async with conn.transaction():
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {q}.events)"):
            raise BackupError(f"schema {schema!r} already holds events; restore into an empty one")
        await conn.execute(f"ALTER TABLE {q}.events ALTER COLUMN stamp SET DEFAULT '0'::xid8")
        await conn.copy_to_table(
            "events",
            schema_name=schema,
            source=directory / f"{service}.events.csv",
            columns=list(EVENT_COLUMNS),
            format="csv",
        )
        await conn.execute(f"ALTER TABLE {q}.events ALTER COLUMN stamp DROP DEFAULT")
        await conn.copy_to_table(
            "streams",
            schema_name=schema,
            source=directory / f"{service}.streams.csv",
            columns=["stream_id", "version"],
            format="csv",
        )
        count = int(await conn.fetchval(f"SELECT count(*) FROM {q}.events"))
        if count != expected.events:
            raise BackupError(f"{service}: the dump lists {expected.events} events, read {count}")
        if expected.last_position:
            await conn.execute(
                "SELECT setval($1::regclass, $2)", f"{q}.position_seq", expected.last_position
            )
        if republish:
            await conn.execute(
                f"INSERT INTO {q}.outbox (position, event_id) SELECT position, event_id"
                f" FROM {q}.events"
            )
    return count
