"""What a pooled PostgreSQL connection is reset with when it goes back to the pool.

asyncpg's default reset runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
RESET ALL;` on every release: one more round trip per consumer batch and per relay batch
(decision 0285). The services' pools pass `reset_on_release` as `create_pool(reset=...)`
instead. asyncpg still runs its own part first on every release (an open transaction is
rolled back, the connection's listener callbacks are dropped); the server round trip runs only
for a connection that was marked with `needs_full_reset`.

Our code's normal paths leave no session state on a pooled connection: every `SET` is
`SET LOCAL`, advisory locks are transaction-level (`pg_advisory_xact_lock`) or released by
the code that took them, no cursor is declared WITH HOLD and no temporary table is made.
The three places that may leave some mark the connection they use:

- the outbox relay's listener connection (LISTEN, held while the relay runs), and the
  connection of a relay batch that failed (its session advisory lock, decision 0320);
- a rebuild's guard connection (a session `pg_try_advisory_lock`);
- an event store append that did not return normally: `allocate_positions` holds a session
  advisory lock while it allocates, and an interrupted call (a cancel, a statement timeout)
  between its end of the protected block and its unlock would keep it.

`tests/unit/infra/test_pool_reset.py` fails when session-state SQL appears in a module that
is not one of these; `tests/integration/infra/test_pool_reset.py` checks that a connection
carries nothing into its next acquire.

A connection is known by its server process id (public on a pool's proxy and on the
connection alike). A mark that outlives its connection (terminated before its release) costs
at most one full reset of a later connection that gets the same process id: the marks err
only towards resetting more.
"""

from __future__ import annotations

import contextlib

import asyncpg
from asyncpg.pool import PoolConnectionProxy

_marked: set[int] = set()


def needs_full_reset(conn: asyncpg.Connection | PoolConnectionProxy[asyncpg.Record]) -> None:
    """Have asyncpg's full reset query run when `conn` goes back to its pool: call it before
    leaving session state on a pooled connection (session advisory lock, LISTEN, session SET,
    cursor WITH HOLD, temporary table), or when a statement that takes such state failed."""
    with contextlib.suppress(asyncpg.InterfaceError, AttributeError):
        # a closed connection is not pooled again; nothing to mark
        _marked.add(conn.get_server_pid())


def marked_for_full_reset(conn: asyncpg.Connection) -> bool:
    """Whether `conn` will get the full reset on its next release."""
    return conn.get_server_pid() in _marked


async def reset_on_release(conn: asyncpg.Connection) -> None:
    """`create_pool(reset=...)`: the full reset query only for a connection marked with
    `needs_full_reset`; nothing for the others (asyncpg's rollback and listener clean-up have
    run already)."""
    pid = conn.get_server_pid()
    if pid in _marked:
        await conn.execute(conn.get_reset_query())
        _marked.discard(pid)
