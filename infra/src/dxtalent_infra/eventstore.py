"""`PostgresEventStore`: an append-only event store with optimistic concurrency per stream.

Tables in the service's schema (see `MIGRATIONS`):

- `streams(stream_id, version)`: the current version of each stream. Appends lock its row
  (`UPDATE … WHERE version = expected`, or an upsert for "any version"), so two writers at one
  expected version never both succeed: the second waits for the first, re-checks and fails
  with `ConcurrencyError`. Positions are allocated only after that lock, so within a stream
  position order is version order. Appends to many streams are one statement too: an upsert
  locks and bumps the streams in stream id order, with the expected versions in its
  condition (`_APPEND_MANY`, decision 0235; migration 1's `lock_streams()` is no longer
  called).
- `events`: the log. `position` is global, `event_id` unique (idempotency), `event_type` the
  CloudEvents type with its version (never a Python path). Rows are immutable (a trigger
  refuses UPDATE, DELETE and TRUNCATE); corrections are new events.
- `outbox(position, event_id, trace_context)`: filled in the same transaction as `events`
  (transactional outbox); the relay deletes a row only after JetStream acknowledged the event.
  `trace_context` is the W3C `traceparent` of the message or request the event was decided in
  (`tracing.outbox_contexts`), so the relay continues that trace; NULL when traces are off.

Gap safety of `read_all`. A transaction may take position 10, stay open, and commit after a
transaction holding position 11 committed; a reader that had moved past 11 would never see 10.
Each append therefore allocates its positions in `allocate_positions()`, inside a short
critical section (a session advisory lock held for microseconds, not until commit), and
stamps its rows with `stamp` = the greatest transaction id of every appender that allocated
so far (its own included). Stamps thus never decrease along positions. `read_all` returns only
rows with `stamp < pg_snapshot_xmin(current snapshot)`: every transaction that allocated a
position below such a row has finished, so nothing earlier can still appear. (Filtering on
each row's own transaction id alone is not enough: an older transaction can allocate after a
younger one that is still open.) An open writing transaction anywhere in the cluster delays
`read_all` until it ends; it never makes it skip.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from pydantic_core import to_json

from dxtalent_infra import pool_reset, tracing
from dxtalent_infra.migrations import Migration, Privilege, migrate, quote_ident
from dxtalent_infra.records import NewEvent, RecordedEvent

_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9]*(\.[A-Za-z][A-Za-z0-9_-]*)+\.v[0-9]+$")

MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "streams, events, outbox, position allocation",
        """
CREATE SEQUENCE {schema}.position_seq AS bigint;
CREATE SEQUENCE {schema}.stamp_seq AS bigint MINVALUE 0 START 0;
CREATE TABLE {schema}.streams (
    stream_id text PRIMARY KEY,
    version int NOT NULL CHECK (version >= 0)
);
CREATE TABLE {schema}.events (
    position bigint PRIMARY KEY,
    stream_id text NOT NULL,
    stream_version int NOT NULL CHECK (stream_version > 0),
    event_id text NOT NULL CONSTRAINT events_event_id_key UNIQUE,
    event_type text NOT NULL,
    data jsonb NOT NULL,
    subject text,
    causation_id text,
    correlation_id text,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    stamp xid8 NOT NULL,
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);
CREATE TABLE {schema}.outbox (
    position bigint PRIMARY KEY,
    event_id text NOT NULL
);
CREATE FUNCTION {schema}.events_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable: append a correcting event instead';
END $$;
CREATE TRIGGER events_immutable BEFORE UPDATE OR DELETE ON {schema}.events
    FOR EACH ROW EXECUTE FUNCTION {schema}.events_immutable();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON {schema}.events
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.events_immutable();
-- n positions and a stamp >= the xid of every earlier allocator (see the module docstring);
-- the session lock is released on every path, cancellation included.
CREATE TYPE {schema}.allocation AS (first_position bigint, stamp xid8);
CREATE FUNCTION {schema}.allocate_positions(n int, lock_key bigint, channel text)
RETURNS {schema}.allocation LANGUAGE plpgsql AS $$
DECLARE
    s bigint;
    first bigint;
BEGIN
    BEGIN
        PERFORM pg_advisory_lock(lock_key);
        SELECT greatest(last_value, pg_current_xact_id()::text::bigint) INTO s
            FROM {schema}.stamp_seq;
        PERFORM setval('{schema}.stamp_seq', s);
        first := nextval('{schema}.position_seq');
        IF n > 1 THEN
            PERFORM setval('{schema}.position_seq', first + n - 1);
        END IF;
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        PERFORM pg_advisory_unlock(lock_key);
        RAISE;
    END;
    PERFORM pg_advisory_unlock(lock_key);
    IF channel IS NOT NULL THEN
        PERFORM pg_notify(channel, '');
    END IF;
    RETURN ROW(first, s::text::xid8)::{schema}.allocation;
END $$;
-- insert missing streams at version 0 and lock all, both in stream order (no deadlocks)
CREATE FUNCTION {schema}.lock_streams(ids text[])
RETURNS TABLE (stream_id text, version int) LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.streams AS s (stream_id, version)
        SELECT i, 0 FROM unnest(ids) AS i ORDER BY i ON CONFLICT DO NOTHING;
    RETURN QUERY SELECT s.stream_id, s.version FROM {schema}.streams AS s
        WHERE s.stream_id = ANY(ids) ORDER BY s.stream_id FOR UPDATE;
END $$;
""",
    ),
    Migration(
        2,
        "outbox rows keep the trace context of the transaction that wrote them",
        """
ALTER TABLE {schema}.outbox ADD COLUMN trace_context text;
COMMENT ON COLUMN {schema}.outbox.trace_context IS
    'W3C traceparent the relay publishes the event with; NULL when traces are off';
""",
    ),
]


COMPONENT = "eventstore"

#: What the service role may do (granted by the migration role, see `migrations`): append and
#: read events, never change or remove them (the trigger is a second line, not the only one);
#: bump and lock stream versions (`SELECT .. FOR UPDATE` needs UPDATE); the relay deletes
#: published outbox rows; `allocate_positions` reads and sets both sequences.
PRIVILEGES: tuple[Privilege, ...] = (
    Privilege("events", ("SELECT", "INSERT")),
    Privilege("streams", ("SELECT", "INSERT", "UPDATE")),
    Privilege("outbox", ("SELECT", "INSERT", "DELETE")),
    Privilege("position_seq", ("USAGE", "SELECT", "UPDATE"), sequence=True),
    Privilege("stamp_seq", ("USAGE", "SELECT", "UPDATE"), sequence=True),
)


@dataclass(frozen=True, slots=True)
class Write:
    """A data-modifying statement that travels with an append (`append_many(along=...)`,
    `append_new(along=...)`), for a caller that writes its own tables in the transaction of
    its events: one round trip instead of two. `sql` is one `INSERT`, `UPDATE` or `DELETE`
    (no `WITH` of its own, no `$` but its parameters), written with its own parameters
    `$1`..`$n`, which `args` gives; the store renumbers them. Its `RETURNING` rows, if any,
    are not returned. It runs as a data-modifying `WITH` of the append, so it sees the same
    snapshot: not the events appended, nor they its rows (decision 0296)."""

    sql: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Gate:
    """Data-modifying `WITH` queries that travel first in an append (`append_gated`) and let
    through only the events whose key their last one returns: a consumer's inbox claim, so
    that its batch is one statement, committed on its own (decision 0325). `ctes` is
    `name AS (...), ..., gate AS (...)`, the last named `gate` with one text column `key`
    (no `$` but its parameters, written `$1`..`$n`, which `args` gives; the store
    renumbers them). They run before the append reads its events."""

    ctes: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Gated:
    """What `append_gated` did: the keys the gate let through, and the ids of their events
    that were stored already (and skipped)."""

    passed: set[str]
    stored: set[str]


_PARAMETER = re.compile(r"\$(\d+)")
#: a `$` that starts no parameter: a dollar quote (`$$`, `$tag$`), which renumbering would break
_NOT_A_PARAMETER = re.compile(r"\$(?!\d)")


def _with_along(statement: str, along: Sequence[str], first: int, gate: str = "") -> str:
    """`statement` (starting with `WITH`) with each of `along` as a data-modifying `WITH`
    before its own, then `gate`'s (a `Gate.ctes`), their parameters shifted to follow its
    `first - 1`."""
    ctes = []
    offset = first - 1

    def shifted(sql: str) -> str:
        def shift(match: re.Match[str], by: int = offset) -> str:
            return f"${int(match[1]) + by}"

        return _PARAMETER.sub(shift, sql)

    for i, sql in enumerate(along):
        if _NOT_A_PARAMETER.search(sql) or sql.lstrip()[:4].upper() == "WITH":
            raise ValueError(f"a Write is one statement without WITH or dollar quotes: {sql!r}")
        ctes.append(f"along_{i} AS ({shifted(sql)})")
        offset += max((int(n) for n in _PARAMETER.findall(sql)), default=0)
    if gate:
        if _NOT_A_PARAMETER.search(gate):
            raise ValueError(f"a Gate's queries have no dollar quotes: {gate!r}")
        ctes.append(shifted(gate))
    head, rest = statement.lstrip().split(None, 1)
    assert head.upper() == "WITH"
    return f"WITH {', '.join(ctes)},\n{rest}"


@contextmanager
def _appending(
    conn: asyncpg.Connection, stream_id: str | None, expected_version: int | None
) -> Iterator[None]:
    """Around an append statement: a duplicate event id becomes `DuplicateEventError`, and a
    connection whose append did not return normally is marked for asyncpg's full reset (an
    interrupted `allocate_positions()` may keep its session lock; decision 0285)."""
    try:
        yield
    except BaseException as exc:
        pool_reset.needs_full_reset(conn)
        if isinstance(exc, asyncpg.UniqueViolationError):
            raise _unique_violation(exc, stream_id, expected_version) from exc
        raise


class EventStoreError(Exception):
    """Base of the event store's errors."""


class ConcurrencyError(EventStoreError):
    """The stream is not at the version the writer expected (someone else appended first)."""

    def __init__(self, stream_id: str, expected: int | None, actual: int | None) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        now = "at another version" if actual is None else f"at version {actual}"
        wanted = "any version" if expected is None else f"version {expected}"
        super().__init__(
            f"stream {stream_id!r} is {now}; the append expected {wanted} "
            "(another writer appended first: reload the stream and decide again)"
        )


class DuplicateEventError(EventStoreError):
    """An event with this id is already stored (events are idempotent by id)."""

    def __init__(self, event_id: str | None) -> None:
        self.event_id = event_id
        super().__init__(f"event {event_id!r} is already in the store")


def outbox_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel that appends to `schema` notify (at most 63 bytes)."""
    return f"dxt_outbox_{schema}"[:63]


#: Inside `wake_relays_after_commit()`: the hand-overs whose relay to wake at its end.
_deferred_wakes: ContextVar[set[OutboxHandover] | None] = ContextVar(
    "dxt_deferred_wakes", default=None
)


@contextmanager
def wake_relays_after_commit() -> Iterator[None]:
    """Around a transaction the caller commits before leaving the block (a consumer's batch):
    an append inside it by a store whose relay runs in this process on this loop (attached to
    the store's `OutboxHandover`) sends no NOTIFY, and that relay is woken directly when the
    block ends normally, after the COMMIT.

    A NOTIFY costs more than the wake it carries: PostgreSQL serialises the commits of
    notifying transactions in a database (each holds a database-wide lock through its WAL
    flush, so no two share one), writes the notification to its queue, signals every
    listening backend of the database (each service's relay listener, whatever its channel),
    which reads the queue, and the relay's listener sends it on to its client (decision 0310).
    Appends elsewhere (another process, no relay running here, outside this block) notify as
    before. A block left by an exception wakes nothing: its transaction did not commit."""
    pending: set[OutboxHandover] = set()
    token = _deferred_wakes.set(pending)
    try:
        yield
    finally:
        _deferred_wakes.reset(token)
    for handover in pending:
        handover.wake()


def lock_key(schema: str, purpose: str) -> int:
    """A bigint advisory-lock key for `purpose` in `schema`."""
    return zlib.crc32(f"dxtalent-{purpose}:{schema}".encode()) - 2**31


_COLUMNS = (
    "position, stream_id, stream_version, event_id, event_type, data::text AS data, "
    "occurred_at, recorded_at, subject, causation_id, correlation_id"
)


def to_recorded(row: asyncpg.Record) -> RecordedEvent:
    """A row selected with the store's columns as a `RecordedEvent`."""
    return RecordedEvent(
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        position=row["position"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        data=json.loads(row["data"]),
        occurred_at=row["occurred_at"],
        recorded_at=row["recorded_at"],
        subject=row["subject"],
        causation_id=row["causation_id"],
        correlation_id=row["correlation_id"],
    )


_CHECKED_TYPES: set[str] = set()  # event types that matched `_EVENT_TYPE` (a handful)


def _check(e: NewEvent) -> None:
    if e.event_type in _CHECKED_TYPES:
        pass
    elif _EVENT_TYPE.match(e.event_type):
        _CHECKED_TYPES.add(e.event_type)
    else:
        raise ValueError(
            f"event type {e.event_type!r} must be a CloudEvents type ending in its version, "
            "like 'dxtalent.enrollment.CourseCompleted.v1'"
        )
    if e.occurred_at.tzinfo is None:
        raise ValueError(f"event {e.event_id!r}: occurred_at must be timezone-aware")


def _columns_of(events: Sequence[NewEvent]) -> list[list[Any]]:
    """The events as seven parallel arrays for `unnest`, validated."""
    cols: list[list[Any]] = [[], [], [], [], [], [], []]
    for e in events:
        _check(e)
        cols[0].append(e.event_id)
        cols[1].append(e.event_type)
        cols[2].append(json.dumps(e.data, separators=(",", ":"), ensure_ascii=False))
        cols[3].append(e.subject)
        cols[4].append(e.causation_id)
        cols[5].append(e.correlation_id)
        cols[6].append(e.occurred_at)
    return cols


def _json_rows(events: Sequence[tuple[str, NewEvent]], keys: Sequence[str] | None = None) -> str:
    """`(stream_id, event)` pairs as one JSON array of rows, validated, with their trace
    contexts. One parameter instead of nine arrays: asyncpg checks every element of an array
    parameter against abstract base classes, a tenth of enrollment's CPU under load. The
    statement reads it as jsonb, parsed once (a `json` value is parsed again by every `->>`).
    Encoded by pydantic-core (the same compact text as `json.dumps`, in about half the time).
    """
    contexts = tracing.outbox_contexts([e for _, e in events]) or [None] * len(events)
    rows: list[list[Any]] = []
    for n, ((stream_id, e), context) in enumerate(zip(events, contexts, strict=True)):
        _check(e)
        rows.append(
            [
                stream_id,
                e.event_id,
                e.event_type,
                e.data,
                e.subject,
                e.causation_id,
                e.correlation_id,
                e.occurred_at.isoformat(),
                context,
            ]
        )
        if keys is not None:  # the gate's key of the event (`append_gated`)
            rows[-1].append(keys[n])
    return to_json(rows).decode()


# One round trip per append: lock and bump the stream, then (only if that matched) allocate
# positions, insert the events and their outbox rows. $1 stream, $2 count, $3 lock key,
# $4 channel, $5..$11 event columns, $12 trace contexts (NULL: none), $13 expected version
# (BUMP_AT only).
_BUMP_ANY = """INSERT INTO {s}.streams AS s (stream_id, version) VALUES ($1, $2)
    ON CONFLICT (stream_id) DO UPDATE SET version = s.version + $2 RETURNING s.version"""
_BUMP_NEW = """INSERT INTO {s}.streams AS s (stream_id, version) VALUES ($1, $2)
    ON CONFLICT (stream_id) DO UPDATE SET version = $2 WHERE s.version = 0
    RETURNING s.version"""
_BUMP_AT = """UPDATE {s}.streams AS s SET version = s.version + $2
    WHERE s.stream_id = $1 AND s.version = $13 RETURNING s.version"""
_APPEND = """
WITH bump AS MATERIALIZED ({bump}),
alloc AS MATERIALIZED (
    SELECT b.version, {s}.allocate_positions($2, $3, $4) AS a FROM bump AS b
),
ins AS (
    INSERT INTO {s}.events (position, stream_id, stream_version, event_id, event_type, data,
                            subject, causation_id, correlation_id, occurred_at, stamp)
    SELECT (x.a).first_position + e.ord - 1, $1, x.version - $2 + e.ord, e.event_id,
           e.event_type, e.data::jsonb, e.subject, e.causation_id, e.correlation_id,
           e.occurred_at, (x.a).stamp
    FROM alloc AS x, unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                            $10::text[], $11::timestamptz[]) WITH ORDINALITY
        AS e(event_id, event_type, data, subject, causation_id, correlation_id,
             occurred_at, ord)
    RETURNING position, event_id
),
ob AS (
    INSERT INTO {s}.outbox (position, event_id, trace_context)
    SELECT i.position, i.event_id, ($12::text[])[i.position - (x.a).first_position + 1]
    FROM ins AS i, alloc AS x
)
SELECT version, (a).first_position FROM alloc"""

# Many streams in one statement (`append_many`, `append_new`). $1 the call's stream ids (a
# JSON array: asyncpg checks every element of a `text[]` parameter, 0.3 ms per 500), $2
# required start versions (jsonb {stream: version}, only for streams with an expected
# version; -1 when the call's expectations cannot all hold), $3 skip events already stored,
# $4 lock key, $5 channel, $6 the events as one JSON array of rows (`_json_rows`).
# `fresh` drops stored events (with $3), `req` counts each stream's events, and `bump`
# locks and bumps every stream in stream id order (no deadlocks between callers): an
# upsert, so a stream another writer is creating is waited for and then seen at its
# committed version. A stream whose start version is not the required one is locked but
# neither bumped nor returned; positions are then not allocated and nothing is inserted,
# and `append_many` undoes the other bumps (`_UNDO_BUMPS`). The result: without $3 each
# bumped stream's version (`append_new` has no use for them: a row per stream to decode),
# with $3 the ids that were stored already (`stored` looks them up with `= ANY(array)`,
# so by index whatever the planner thinks of the CTE's size); and, when events were
# inserted, one row with the first position they took (the outbox hand-over's key). A data-modifying CTE runs
# to completion whether or not the query reads it, so `bump` bumps either way.
_APPEND_MANY = """
WITH given AS MATERIALIZED (
    SELECT e->>0 AS stream_id, e->>1 AS event_id, e->>2 AS event_type, e->3 AS data,
           e->>4 AS subject, e->>5 AS causation_id, e->>6 AS correlation_id,
           (e->>7)::timestamptz AS occurred_at, e->>8 AS trace_context, j.ord
    FROM jsonb_array_elements($6::jsonb) WITH ORDINALITY AS j(e, ord){gated}
),
stored AS MATERIALIZED (
    SELECT x.event_id FROM {s}.events AS x
    WHERE $3 AND x.event_id = ANY(ARRAY(SELECT g.event_id FROM given AS g))
),
fresh AS MATERIALIZED (
    SELECT g.*, row_number() OVER (ORDER BY g.ord) AS n,
           row_number() OVER (PARTITION BY g.stream_id ORDER BY g.ord) AS k
    FROM given AS g WHERE g.event_id NOT IN (SELECT event_id FROM stored)
),
req AS MATERIALIZED (
    SELECT i.stream_id, count(f.ord)::int AS total
    FROM jsonb_array_elements_text($1::jsonb) AS i(stream_id) LEFT JOIN fresh AS f USING (stream_id)
    GROUP BY i.stream_id
    HAVING NOT $3 OR count(f.ord) > 0
),
bump AS MATERIALIZED (
    INSERT INTO {s}.streams AS s (stream_id, version)
    SELECT r.stream_id, r.total FROM req AS r ORDER BY r.stream_id
    ON CONFLICT (stream_id) DO UPDATE SET version = s.version + excluded.version
        WHERE NOT $2::jsonb ? s.stream_id OR s.version = ($2::jsonb ->> s.stream_id)::int
    RETURNING s.stream_id, s.version
),
start AS MATERIALIZED (
    SELECT b.stream_id, b.version - r.total AS version
    FROM bump AS b JOIN req AS r USING (stream_id)
    WHERE NOT $2::jsonb ? b.stream_id OR b.version - r.total = ($2::jsonb ->> b.stream_id)::int
),
alloc AS MATERIALIZED (
    SELECT {s}.allocate_positions(c.n::int, $4, $5) AS a
    FROM (SELECT count(*) AS n FROM fresh) AS c
    WHERE c.n > 0 AND (SELECT count(*) FROM start) = (SELECT count(*) FROM req)
),
ins AS (
    INSERT INTO {s}.events (position, stream_id, stream_version, event_id, event_type, data,
                            subject, causation_id, correlation_id, occurred_at, stamp)
    SELECT (x.a).first_position + f.n - 1, f.stream_id, t.version + f.k, f.event_id,
           f.event_type, f.data, f.subject, f.causation_id, f.correlation_id,
           f.occurred_at, (x.a).stamp
    FROM alloc AS x, fresh AS f JOIN start AS t USING (stream_id)
),
ob AS (
    INSERT INTO {s}.outbox (position, event_id, trace_context)
    SELECT (x.a).first_position + f.n - 1, f.event_id, f.trace_context
    FROM alloc AS x, fresh AS f
)
SELECT b.stream_id, b.version, NULL::text AS stored, NULL::bigint AS first_position{passed}
FROM bump AS b WHERE NOT $3
UNION ALL
SELECT NULL, NULL, event_id, NULL{null} FROM stored{passed_rows}
UNION ALL
SELECT NULL, NULL, NULL, (x.a).first_position{null} FROM alloc AS x"""
#: `_APPEND_MANY` without a gate, and with one (`append_gated`): `given` keeps the events
#: whose key (a tenth element of each row) the gate returned, and a fifth column `passed`
#: returns those keys.
_UNGATED = {"gated": "", "passed": "", "null": "", "passed_rows": ""}
_GATED = {
    "gated": "\n    WHERE e->>9 IN (SELECT p.key FROM gate AS p)",
    "passed": ", NULL::text AS passed",
    "null": ", NULL",
    "passed_rows": "\nUNION ALL\nSELECT NULL, NULL, NULL, NULL, p.key FROM gate AS p",
}

# After a failed expectation: undo the bumps ($1 streams, $2 counts) of the streams that were
# bumped and read the versions of those that were not ($3), all still locked.
_UNDO_BUMPS = """
WITH undo AS (
    UPDATE {s}.streams AS s SET version = s.version - u.total
    FROM unnest($1::text[], $2::int[]) AS u(stream_id, total) WHERE s.stream_id = u.stream_id
)
SELECT stream_id, version FROM {s}.streams WHERE stream_id = ANY($3::text[])"""


class OutboxHandover:
    """What a store hands the outbox relay of the same process: the events it appended, by
    position (decision 0320), and the wake after a consumer batch's COMMIT instead of a
    NOTIFY (`wake_relays_after_commit`, decision 0310; the relay `attach`es while it runs).

    An append stages its inserted events with the positions the statement returned, before
    its transaction commits. The relay still learns *which* events to publish from the
    outbox (committed rows, in position order); for a row whose position is staged with the
    same event id it takes the event from here instead of reading it from `events`. A
    position is never given twice, so a staged event is exactly the row's event, or stale
    (its transaction rolled back: its position never shows up in the outbox). The relay
    drops what it published; what it never publishes (rolled back, published by a relay in
    another process) goes after `max_age` seconds, or oldest first beyond `max_events`.
    Missing entries only cost the read from `events`.
    """

    def __init__(self, *, max_age: float = 60.0, max_events: int = 100_000) -> None:
        self.events: dict[int, NewEvent] = {}
        self._max_age = max_age
        self._max_events = max_events
        self._spans: deque[tuple[float, int, int]] = deque()  # (staged at, first, end)
        #: the running relay's event loop and wake (`attach`)
        self._relay: tuple[asyncio.AbstractEventLoop, Callable[[], None]] | None = None

    def attach(self, wake: Callable[[], None]) -> None:
        """The relay taking this hand-over runs on this event loop: the store's appends inside
        `wake_relays_after_commit()` then call `wake` after their COMMIT instead of
        notifying."""
        self._relay = (asyncio.get_running_loop(), wake)

    def detach(self, wake: Callable[[], None]) -> None:
        """Undo `attach` (when `wake` is still the one attached)."""
        if self._relay is not None and self._relay[1] == wake:
            self._relay = None

    def defer_wake(self) -> bool:
        """Inside `wake_relays_after_commit()`, with the relay attached on this loop: wake it
        at the block's end, and say so (the append then sends no NOTIFY)."""
        pending = _deferred_wakes.get()
        relay = self._relay
        if pending is None or relay is None or relay[0] is not asyncio.get_running_loop():
            return False
        pending.add(self)
        return True

    def wake(self) -> None:
        """Wake the attached relay, if one is."""
        if self._relay is not None:
            self._relay[1]()

    def stage(self, first_position: int, events: Sequence[NewEvent]) -> None:
        """`events` took the positions from `first_position` on, in order."""
        staged = self.events
        for offset, e in enumerate(events):
            staged[first_position + offset] = e
        now = time.monotonic()
        spans = self._spans
        spans.append((now, first_position, first_position + len(events)))
        while spans and (spans[0][0] < now - self._max_age or len(staged) > self._max_events):
            _, first, end = spans.popleft()
            for position in range(first, end):
                staged.pop(position, None)

    def published(self, positions: Sequence[int]) -> None:
        """Forget the events at `positions` (published, their outbox rows deleted)."""
        staged = self.events
        for position in positions:
            staged.pop(position, None)


class PostgresEventStore:
    """The event store of one service, in its own PostgreSQL schema.

    Every method takes an optional `conn`: given, it runs on that connection, inside the
    caller's transaction when one is open (a handler appending inside its batch transaction);
    otherwise on a pooled connection in a transaction of its own. `ConcurrencyError` is
    raised before anything is written and leaves the caller's transaction usable;
    `DuplicateEventError` leaves it aborted, so append inside a savepoint
    (`conn.transaction()`) to carry on after one. Appends must run at READ COMMITTED (the
    default): they rely on seeing rows that concurrent writers just committed.

    With `notify` (the default) every append sends a NOTIFY on `outbox_channel(schema)` so
    the relay wakes at once; PostgreSQL serialises the commits of notifying transactions,
    so a store with many concurrent single-event writers may turn it off and let the relay
    poll. Inside `wake_relays_after_commit()`, with the store's relay running in this
    process (attached to its `outbox_handover()`), an append wakes that relay directly after
    the COMMIT instead.
    """

    def __init__(self, pool: asyncpg.Pool, schema: str, *, notify: bool = True) -> None:
        self._pool = pool
        self.schema = schema
        self._s = s = quote_ident(schema)
        self._lock_key = lock_key(schema, "allocate")
        # NOTIFY wakes the relay at once, but PostgreSQL serialises the commits of notifying
        # transactions; without it the relay finds new events by polling
        self._channel = outbox_channel(schema) if notify else None
        self._append_sql = {
            kind: _APPEND.format(s=s, bump=bump.format(s=s))
            for kind, bump in (("any", _BUMP_ANY), ("new", _BUMP_NEW), ("at", _BUMP_AT))
        }
        self._append_many_sql = _APPEND_MANY.format(s=s, **_UNGATED)
        self._gated_sql = _APPEND_MANY.format(s=s, **_GATED)
        # `_APPEND_MANY` with writes (and a gate's queries, the last of the key)
        self._along_sql: dict[tuple[str, ...], str] = {}
        self._undo_bumps_sql = _UNDO_BUMPS.format(s=s)
        self._handover: OutboxHandover | None = None

    def outbox_handover(self) -> OutboxHandover:
        """From now on, keep each appended event in memory by its position for this
        process's outbox relay (`OutboxRelay(handover=...)`), which then publishes it
        without reading it back from `events` (decision 0320)."""
        if self._handover is None:
            self._handover = OutboxHandover()
        return self._handover

    def _notify_channel(self) -> str | None:
        """The channel an append notifies: none when the store's relay runs on this loop and
        the append is inside `wake_relays_after_commit()`, which then wakes it after COMMIT."""
        if self._channel is None or self._handover is None or not self._handover.defer_wake():
            return self._channel
        return None

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool the store uses when no connection is passed."""
        return self._pool

    async def migrate(self, conn: asyncpg.Connection | None = None) -> list[int]:
        """Create or upgrade the store's tables (over `conn`, e.g. the migration role's, or
        a pooled connection); safe when several processes start at once."""
        if conn is not None:
            return await migrate(conn, self.schema, COMPONENT, MIGRATIONS)
        async with self._pool.acquire() as pooled:
            return await migrate(
                cast(asyncpg.Connection, pooled), self.schema, COMPONENT, MIGRATIONS
            )

    @asynccontextmanager
    async def _connection(
        self, conn: asyncpg.Connection | None, *, transaction: bool = False
    ) -> AsyncIterator[asyncpg.Connection]:
        if conn is None:
            async with self._pool.acquire() as proxy:
                pooled = cast(asyncpg.Connection, proxy)
                if transaction:
                    async with pooled.transaction():
                        yield pooled
                else:
                    yield pooled
        elif transaction and not conn.is_in_transaction():
            async with conn.transaction():
                yield conn
        else:
            yield conn

    async def append(
        self,
        stream_id: str,
        expected_version: int | None,
        events: Sequence[NewEvent],
        *,
        conn: asyncpg.Connection | None = None,
    ) -> int:
        """Append `events` to `stream_id`; returns the stream's new version.

        `expected_version` None appends whatever the version; 0 requires a new stream; n
        requires the stream to be at version n, else `ConcurrencyError`.
        """
        if expected_version is not None and expected_version < 0:
            raise ValueError(f"expected_version must be None or >= 0, not {expected_version}")
        if not events:
            return await self._check_version(stream_id, expected_version, conn)
        cols = _columns_of(events)
        args: list[Any] = [stream_id, len(events), self._lock_key, self._notify_channel(), *cols]
        args.append(tracing.outbox_contexts(events))
        if expected_version is None:
            kind = "any"
        elif expected_version == 0:
            kind = "new"
        else:
            kind = "at"
            args.append(expected_version)
        async with self._connection(conn) as c:
            with _appending(c, stream_id, expected_version):
                row = await c.fetchrow(self._append_sql[kind], *args)
            if row is None:
                actual = await self.stream_version(stream_id, conn=c)
                raise ConcurrencyError(stream_id, expected_version, actual)
            if self._handover is not None:
                self._handover.stage(row["first_position"], events)
            version: int = row["version"]
            return version

    async def _check_version(
        self, stream_id: str, expected: int | None, conn: asyncpg.Connection | None
    ) -> int:
        actual = await self.stream_version(stream_id, conn=conn)
        if expected is not None and expected != actual:
            raise ConcurrencyError(stream_id, expected, actual)
        return actual

    async def append_many(
        self,
        batches: Sequence[tuple[str, int | None, Sequence[NewEvent]]],
        *,
        conn: asyncpg.Connection | None = None,
        along: Sequence[Write] = (),
    ) -> list[int]:
        """Append to many streams in one transaction, all or nothing; new version per batch.

        Each batch is `(stream_id, expected_version, events)` with `append`'s rules; a stream
        may appear more than once (later batches see the earlier ones' versions). Streams are
        locked in id order, so concurrent calls cannot deadlock each other. One statement
        (`_APPEND_MANY`) when every expectation holds; a `ConcurrencyError` costs a second
        one that undoes the bumps, so nothing is written and the transaction stays usable.

        `along` are the caller's writes, made exactly when the events are appended: in the
        same statement when every batch appends at any version (nothing can then fail but
        the whole statement), else each in a statement of its own after the append
        succeeded, so a `ConcurrencyError` still leaves nothing written.
        """
        if not batches:
            return []
        counts: dict[str, int] = {}  # events per stream so far, in batch order
        required: dict[str, int] = {}  # the start version each stream's expectations need
        for stream_id, expected, events in batches:
            before = counts.setdefault(stream_id, 0)
            if expected is not None:
                start = expected - before
                if start < 0 or required.get(stream_id, start) != start:
                    start = -1  # no start version satisfies every batch: fails below
                required[stream_id] = start
            counts[stream_id] = before + len(events)
        pairs = [(stream_id, e) for stream_id, _, events in batches for e in events]
        expecting = any(expected is not None for _, expected, _ in batches)
        async with self._connection(conn, transaction=True) as c:
            rows = await self._append_statement(
                c, list(counts), required, pairs, skip=False, along=() if expecting else along
            )
            starts = {
                r["stream_id"]: r["version"] - counts[r["stream_id"]]
                for r in rows
                if r["stream_id"] is not None
            }
            if len(starts) < len(counts) or any(
                starts[k] != v for k, v in required.items() if k in starts
            ):
                await self._raise_concurrency(c, batches, counts, starts)
            if expecting:
                for write in along:
                    await c.execute(write.sql, *write.args)
        versions = dict(starts)
        results: list[int] = []
        for stream_id, _, events in batches:
            versions[stream_id] += len(events)
            results.append(versions[stream_id])
        return results

    async def append_new(
        self,
        events: Sequence[tuple[str, NewEvent]],
        *,
        conn: asyncpg.Connection | None = None,
        along: Sequence[Write] = (),
    ) -> set[str]:
        """Append each `(stream_id, event)` whose event id is not stored yet, at any stream
        version, in one statement; returns the ids that were stored already (and skipped).
        `along` are the caller's writes, in the same statement (see `Write`).

        The ids must be distinct within a call. For a consumer recording facts idempotently:
        the lookup of stored ids and the append travel together. An id another transaction
        stores at the same moment still raises `DuplicateEventError` (nothing is appended).
        """
        if not events:
            return set()
        streams = list(dict.fromkeys(stream_id for stream_id, _ in events))
        async with self._connection(conn, transaction=True) as c:
            rows = await self._append_statement(c, streams, {}, events, skip=True, along=along)
        return {r["stored"] for r in rows if r["stored"] is not None}

    async def append_gated(
        self,
        events: Sequence[tuple[str, NewEvent, str]],
        gate: Gate,
        *,
        conn: asyncpg.Connection,
        along: Sequence[Write] = (),
    ) -> Gated:
        """`append_new` of the `(stream_id, event, key)` whose key `gate` lets through, the
        gate's queries (a consumer's inbox claim) and `along` in the same statement, on
        `conn` as it is: outside a transaction, the statement is one of its own, committed
        when it returns (decision 0325). `events` may be empty (the gate still runs); the
        event ids must be distinct."""
        streams = list(dict.fromkeys(stream_id for stream_id, _, _ in events))
        rows = await self._append_statement(
            conn,
            streams,
            {},
            [(stream_id, e) for stream_id, e, _ in events],
            skip=True,
            along=along,
            gate=gate,
            keys=[k for _, _, k in events],
        )
        return Gated(
            passed={r["passed"] for r in rows if r["passed"] is not None},
            stored={r["stored"] for r in rows if r["stored"] is not None},
        )

    async def _append_statement(
        self,
        conn: asyncpg.Connection,
        streams: list[str],
        required: dict[str, int],
        events: Sequence[tuple[str, NewEvent]],
        *,
        skip: bool,
        along: Sequence[Write] = (),
        gate: Gate | None = None,
        keys: Sequence[str] | None = None,
    ) -> list[asyncpg.Record]:
        sql = self._append_many_sql
        extra: list[Any] = []
        if along or gate is not None:
            key = tuple(w.sql for w in along)
            if gate is not None:
                key += ("gate", gate.ctes)
            sql = self._along_sql.get(key) or self._along_sql.setdefault(
                key,
                _with_along(
                    self._gated_sql if gate else sql,
                    [w.sql for w in along],
                    7,
                    gate.ctes if gate else "",
                ),
            )
            extra = [a for w in along for a in w.args]
            if gate is not None:
                extra.extend(gate.args)
        with _appending(conn, None, None):
            rows: list[asyncpg.Record] = await conn.fetch(
                sql,
                to_json(streams).decode(),
                json.dumps(required),
                skip,
                self._lock_key,
                self._notify_channel(),
                _json_rows(events, keys),
                *extra,
            )
        if self._handover is not None and rows and rows[-1]["first_position"] is not None:
            # the events inserted, in the order their positions were given (`fresh`)
            stored = {r["stored"] for r in rows if r["stored"] is not None}
            if keys is None:
                inserted = [e for _, e in events if e.event_id not in stored]
            else:  # gated: only the events of keys the gate let through were candidates
                passed = {r["passed"] for r in rows if r["passed"] is not None}
                inserted = [
                    e
                    for (_, e), k in zip(events, keys, strict=True)
                    if k in passed and e.event_id not in stored
                ]
            self._handover.stage(rows[-1]["first_position"], inserted)
        return rows

    async def _raise_concurrency(
        self,
        conn: asyncpg.Connection,
        batches: Sequence[tuple[str, int | None, Sequence[NewEvent]]],
        counts: dict[str, int],
        starts: dict[str, int],
    ) -> None:
        """Undo the bumps of a failed `append_many`, then raise for its first batch whose
        expectation does not hold (with the version that batch would have seen)."""
        unbumped = [k for k in counts if k not in starts]
        rows = await conn.fetch(
            self._undo_bumps_sql, list(starts), [counts[k] for k in starts], unbumped
        )
        versions = dict(starts) | {r["stream_id"]: r["version"] for r in rows}
        for stream_id, expected, events in batches:
            actual = versions[stream_id]
            if expected is not None and expected != actual:
                raise ConcurrencyError(stream_id, expected, actual)
            versions[stream_id] = actual + len(events)
        raise AssertionError("append_many: a stream was not bumped, yet every expectation held")

    async def read_stream(
        self, stream_id: str, from_version: int = 1, *, conn: asyncpg.Connection | None = None
    ) -> list[RecordedEvent]:
        """The events of one stream from `from_version` on, in version order."""
        async with self._connection(conn) as c:
            rows = await c.fetch(
                f"SELECT {_COLUMNS} FROM {self._s}.events "
                "WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version",
                stream_id,
                from_version,
            )
        return [to_recorded(r) for r in rows]

    async def read_all(
        self, after_position: int, limit: int = 1000, *, conn: asyncpg.Connection | None = None
    ) -> list[RecordedEvent]:
        """Up to `limit` events after `after_position`, in position order, never skipping one.

        Only events no earlier position can still join are returned (module docstring), so
        a reader may always continue from the last position it got. Events of transactions
        still open, the caller's own included, are not returned yet.
        """
        async with self._connection(conn) as c:
            rows = await c.fetch(
                f"SELECT {_COLUMNS} FROM {self._s}.events WHERE position > $1 "
                "AND stamp < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY position LIMIT $2",
                after_position,
                limit,
            )
        return [to_recorded(r) for r in rows]

    async def stream_version(
        self, stream_id: str, *, conn: asyncpg.Connection | None = None
    ) -> int:
        """The stream's current version; 0 when it has no events."""
        async with self._connection(conn) as c:
            version: int | None = await c.fetchval(
                f"SELECT version FROM {self._s}.streams WHERE stream_id = $1", stream_id
            )
        return version or 0

    async def event_exists(self, event_id: str, *, conn: asyncpg.Connection | None = None) -> bool:
        """Whether an event with this id is stored."""
        return bool(await self.existing_event_ids([event_id], conn=conn))

    async def existing_event_ids(
        self, event_ids: Sequence[str], *, conn: asyncpg.Connection | None = None
    ) -> set[str]:
        """Which of `event_ids` are stored (one query for a whole batch)."""
        async with self._connection(conn) as c:
            rows = await c.fetch(
                f"SELECT event_id FROM {self._s}.events WHERE event_id = ANY($1::text[])",
                list(event_ids),
            )
        return {r["event_id"] for r in rows}


_KEY_DETAIL = re.compile(r"^Key \((?P<cols>[^)]*)\)=\((?P<vals>.*)\) already exists\.?$")


def _unique_violation(
    exc: asyncpg.UniqueViolationError, stream_id: str | None, expected: int | None
) -> Exception:
    """Map a unique violation of the events table to the store's errors."""
    match = _KEY_DETAIL.match(exc.detail or "")
    values = match.group("vals").split(", ") if match else []
    if exc.constraint_name == "events_event_id_key":
        return DuplicateEventError(values[0] if values else None)
    if exc.constraint_name == "events_stream_version_key":
        stream = stream_id or (values[0] if values else "?")
        return ConcurrencyError(stream, expected, None)
    return exc
