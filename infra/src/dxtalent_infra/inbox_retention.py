"""Inbox retention: rows of the consumer inbox older than a retention are deleted, so the
table stops growing with every message ever applied.

Why it is safe. Within the stream's duplicate window JetStream itself drops a re-published
message id; the inbox is the check for everything else (redeliveries of an unacknowledged
message, a re-publish after the window). A message is redelivered only while it is pending,
i.e. minutes after it was first applied, so a row older than the retention will not be asked
for again. The retention is validated to exceed `DXT_DUPLICATE_WINDOW_S` (`Settings`) and
defaults to 7 days against a 600 s window.

How. `prune_inbox` deletes in batches of `batch_size` rows, each batch its own short
transaction that takes row locks only (no table lock, nothing held between batches), found
through a BRIN index on `processed_at` (rows are appended in time order; the index costs the
consumers' claims almost nothing). `InboxPruner` runs it every `PRUNE_INTERVAL_S` in the
service runtime; replicas may prune at once (a row deleted by one is skipped by the
other). Pruned rows are counted in `dxtalent_inbox_pruned_rows_total{service}`.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

from dxtalent_infra.metrics import INBOX_PRUNED
from dxtalent_infra.migrations import Migration, quote_ident

log = structlog.get_logger(__name__)

#: Applied after the inbox's own migrations (component `consumer`), on its table.
COMPONENT = "inbox_retention"
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "BRIN index on inbox.processed_at for retention",
        "CREATE INDEX inbox_processed_at ON {schema}.inbox USING brin (processed_at)"
        " WITH (autosummarize = on)",
    ),
)

DEFAULT_BATCH_SIZE = 1000
PRUNE_INTERVAL_S = 300.0


async def prune_inbox(
    pool: asyncpg.Pool, schema: str, retention_s: float, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> int:
    """Delete inbox rows of `schema` processed more than `retention_s` ago, `batch_size` rows
    per transaction; returns how many were deleted."""
    q = quote_ident(schema)
    sql = (
        f"DELETE FROM {q}.inbox WHERE ctid = ANY(ARRAY("
        f"SELECT ctid FROM {q}.inbox"
        " WHERE processed_at < now() - make_interval(secs => $1) LIMIT $2))"
    )
    total = 0
    while True:
        status = await pool.execute(sql, retention_s, batch_size)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < batch_size:
            return total
        await asyncio.sleep(0)  # let the service's own work in between batches


class InboxPruner:
    """Prunes the inbox of one service's schema every `interval_s` until stopped."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        *,
        service: str,
        retention_s: float,
        interval_s: float = PRUNE_INTERVAL_S,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self._pool, self._schema, self._service = pool, schema, service
        self._retention_s, self._interval_s, self._batch_size = retention_s, interval_s, batch_size
        self._stop = asyncio.Event()
        self._log = log.bind(service=service, schema=schema)

    async def prune_once(self) -> int:
        """One pass: every row past the retention, in batches; counted and logged."""
        pruned = await prune_inbox(
            self._pool, self._schema, self._retention_s, batch_size=self._batch_size
        )
        INBOX_PRUNED.labels(self._service).inc(pruned)
        if pruned:
            self._log.info("inbox.pruned", rows=pruned, retention_s=self._retention_s)
        return pruned

    async def run(self) -> None:
        """Prune now and then every interval; a failed pass is logged and tried again."""
        while not self._stop.is_set():
            try:
                await self.prune_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._log.warning("inbox.prune_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval_s)

    async def stop(self) -> None:
        """Finish the batch in flight and return."""
        self._stop.set()
