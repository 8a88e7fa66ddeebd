"""Where the enrollment service keeps every xAPI statement it received, as received.

One table, `xapi_statements`, in the service's schema (migration component `xapi`): the
statement (with the id the service gave it when it had none), when it was stored, and for a
voiding statement the id of the statement it voids. A statement is stored in the request that
brought it, before any fact it means is published; facts carry ids derived from statement ids,
so publishing them again after a crash or a retry changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from dxtalent_enrollment.xapi import Received
from dxtalent_enrollment.xapi_model import Statement
from dxtalent_infra.migrations import Migration, Privilege, quote_ident

COMPONENT = "xapi"
MIGRATIONS = (
    Migration(
        1,
        "xAPI statements as received",
        "CREATE TABLE {schema}.xapi_statements ("
        " statement_id uuid PRIMARY KEY,"
        " statement jsonb NOT NULL,"
        " stored timestamptz NOT NULL,"
        " voids uuid)"
        ";CREATE INDEX xapi_statements_voids ON {schema}.xapi_statements (voids)"
        " WHERE voids IS NOT NULL",
    ),
)

#: The service role's rights: statements are stored and read, never changed (voiding is a
#: new statement).
PRIVILEGES: tuple[Privilege, ...] = (Privilege("xapi_statements", ("SELECT", "INSERT")),)


def _received(row: asyncpg.Record) -> Received:
    statement = Statement.model_validate(json.loads(row["statement"]))
    return Received(str(row["statement_id"]), statement, row["stored"])


class StatementStore:
    """The `xapi_statements` table of one schema."""

    def __init__(self, schema: str) -> None:
        self._table = f"{quote_ident(schema)}.xapi_statements"

    async def insert(
        self, conn: asyncpg.Connection, statements: Sequence[tuple[Received, dict[str, Any]]]
    ) -> dict[str, dict[str, Any]]:
        """Store the statements whose ids are new; returns the stored statement of each id
        that was already there, as it was received then."""
        rows = [
            (r.id, json.dumps(doc, ensure_ascii=False), r.stored, r.voids) for r, doc in statements
        ]
        inserted = await conn.fetch(
            f"INSERT INTO {self._table} (statement_id, statement, stored, voids)"
            " SELECT * FROM unnest($1::uuid[], $2::jsonb[], $3::timestamptz[], $4::uuid[])"
            " ON CONFLICT (statement_id) DO NOTHING RETURNING statement_id",
            *(list(column) for column in zip(*rows, strict=True)),
        )
        new = {str(r["statement_id"]) for r in inserted}
        existing = [r.id for r, _ in statements if r.id not in new]
        found = await conn.fetch(
            f"SELECT statement_id, statement FROM {self._table} WHERE statement_id = ANY($1::uuid[])",
            existing,
        )
        return {str(r["statement_id"]): json.loads(r["statement"]) for r in found}

    async def by_ids(self, conn: asyncpg.Connection, ids: Sequence[str]) -> list[Received]:
        """The stored statements among `ids`."""
        rows = await conn.fetch(
            f"SELECT statement_id, statement, stored FROM {self._table}"
            " WHERE statement_id = ANY($1::uuid[])",
            list(ids),
        )
        return [_received(r) for r in rows]

    async def voiding(self, conn: asyncpg.Connection, ids: Sequence[str]) -> list[Received]:
        """The stored statements that void any of `ids`."""
        rows = await conn.fetch(
            f"SELECT statement_id, statement, stored FROM {self._table}"
            " WHERE voids = ANY($1::uuid[])",
            list(ids),
        )
        return [_received(r) for r in rows]

    async def get(
        self, conn: asyncpg.Connection, statement_id: str
    ) -> tuple[dict[str, Any], dt.datetime, bool] | None:
        """A statement as received, when it was stored, and whether it is voided."""
        row = await conn.fetchrow(
            f"SELECT s.statement, s.stored, s.voids IS NULL AND EXISTS"
            f" (SELECT 1 FROM {self._table} v WHERE v.voids = s.statement_id) AS voided"
            f" FROM {self._table} s WHERE s.statement_id = $1::uuid",
            statement_id,
        )
        if row is None:
            return None
        return json.loads(row["statement"]), row["stored"], bool(row["voided"])
