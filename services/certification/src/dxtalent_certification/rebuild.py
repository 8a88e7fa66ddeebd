"""How `dxtalent rebuild certification` rebuilds the `employees` projection and its category
counts (decision 0220).

The source is `DX_EVENTS`' enrollment subjects, the facts the live consumer applies, read
from the first message; the handler is the live one in its replaying form, which writes rows
and their category counts and appends, publishes and issues nothing. Only `employees` and its
counts (`membership_days`, `membership_years`, decision 0207) are swapped: the schema also
holds the service's event store, outbox and credentials, which are records, not projections.

The rebuild applies only messages the live consumer has applied (`follow_live_inbox`): a fact
that reached the new table first would make the live consumer's own application of it a
no-op, and the `LevelCertified` it causes would never be published. Just before the swap,
under the lock, each row's sent ledger is taken from the event store: what was really
published is what later corrections supersede (most of it is done before the lock, and only
what changed since under it).
"""

from __future__ import annotations

import asyncpg

from dxtalent_certification.codec import ledger_to_json
from dxtalent_certification.domain.corrections import SentLedger
from dxtalent_certification.handler import CertificationHandler
from dxtalent_certification.projection import LEDGERS_FROM_EVENTS
from dxtalent_certification.service import SPEC
from dxtalent_infra.delivery import Handler
from dxtalent_infra.migrations import quote_ident
from dxtalent_infra.rebuild import RebuildContext, RebuildSpec


def _handler(ctx: RebuildContext) -> Handler:
    return CertificationHandler.replaying(ctx.catalog, ctx.schema)


async def sent_ledgers_from_store(conn: asyncpg.Connection, ctx: RebuildContext) -> None:
    """Every new row's sent ledger as the live event store records it (empty without events
    that certify); writes only the rows that differ, so a second run writes what changed."""
    employees = f"{quote_ident(ctx.schema)}.employees"
    events = f"{quote_ident(ctx.live_schema)}.events"
    empty = ledger_to_json(SentLedger.empty())
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", events):
        await conn.execute(
            f"UPDATE {employees} SET sent = $1::jsonb WHERE sent IS DISTINCT FROM $1::jsonb", empty
        )
        return
    await conn.execute(
        LEDGERS_FROM_EVENTS.replace("{events}", events)
        + f""", wanted AS (
            SELECT e.employee_id, coalesce(l.sent, $1::jsonb) AS sent
            FROM {employees} AS e LEFT JOIN ledgers AS l USING (employee_id)
        )
        UPDATE {employees} AS e SET sent = w.sent FROM wanted AS w
        WHERE e.employee_id = w.employee_id AND e.sent IS DISTINCT FROM w.sent""",
        empty,
    )


REBUILD = RebuildSpec(
    service=SPEC,
    handler=_handler,
    tables=("employees", "membership_days", "membership_years"),  # counts follow their rows
    follow_live_inbox=True,
    before_swap=sent_ledgers_from_store,
)
