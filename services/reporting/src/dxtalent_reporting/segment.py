"""Writing a whole segment of events to the read model in one statement, not one per event.

Each table's rows of the segment travel as column arrays (`INSERT … SELECT … FROM unnest(…)`),
every table as a data-modifying `WITH` query of one statement, whose main query reads what
the caller asks for (`SegmentStatement`: the counted employees' rows) in the same snapshot,
so before the writes, and the rows the writes of a `returning` table return.

An `ON CONFLICT DO UPDATE` may touch a row only once per statement. So a key that occurs again
in the segment (the same fact twice, a level certified then revoked, a completion and its void)
goes into the next *round*, a run of the same statement: round n holds the n-th occurrence of
every key, in stream order. Each key's rows are thus applied one after the other in stream
order, as one statement per event applied them, and rows of different keys never meet (every
upsert of the read model reads only the row of its own key): the tables end the same. An
`ON CONFLICT DO NOTHING` table needs no rounds (the first of a key wins in one statement too).

A column holding a list per row (`text[]`) cannot be a column of `unnest` (arrays of arrays
must be rectangular and `unnest` flattens them): its lists are sent as one flat array and each
row's bounds in it, and the row's list is the slice.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg

from dxtalent_infra.migrations import quote_ident


@dataclass(frozen=True)
class Table:
    """How the rows of one table are written for a segment.

    `columns` are (column, PostgreSQL type) in row order; `conflict` is the statement's
    `ON CONFLICT` clause, the table aliased `alias`; the first `key` columns are its conflict
    target (0: `DO NOTHING`, no rounds needed). `returning`: the rows it writes are returned
    (`RETURNING *`) to the statement's main query, as the `WITH` query `w_<name>`.
    """

    name: str
    alias: str
    columns: tuple[tuple[str, str], ...]
    conflict: str
    key: int = 0
    returning: bool = False

    def insert(self, q: str, first: int) -> tuple[str, int]:
        """The `INSERT` of this table in schema `q` (quoted), its arrays numbered from
        `first`; and the next free parameter number."""
        arrays, names, values = [], [], []
        n = first
        for column, kind in self.columns:
            if kind.endswith("[]"):  # a list per row: flat, and each row's bounds in it
                arrays += [f"${n + 1}::int[]", f"${n + 2}::int[]"]
                names += [f"{column}_lo", f"{column}_hi"]
                values.append(f"(${n}::{kind})[u.{column}_lo:u.{column}_hi]")
                n += 3
            else:
                arrays.append(f"${n}::{kind}[]")
                names.append(column)
                values.append(f"u.{column}")
                n += 1
        sql = (
            f"INSERT INTO {q}.{self.name} AS {self.alias}"
            f" ({', '.join(c for c, _ in self.columns)})"
            f" SELECT {', '.join(values)} FROM unnest({', '.join(arrays)})"
            f" AS u({', '.join(names)}) {self.conflict}"
            + (" RETURNING *" if self.returning else "")
        )
        return sql, n

    def arguments(self, rows: Sequence[tuple[object, ...]]) -> list[list[object]]:
        """The parameters of `insert` for `rows`."""
        out: list[list[object]] = []
        # the rows' columns at once (`zip` in C, not a comprehension per column)
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in self.columns]
        for i, (_, kind) in enumerate(self.columns):
            if kind.endswith("[]"):
                flat: list[object] = []
                lo: list[object] = []
                hi: list[object] = []
                for row in rows:
                    lo.append(len(flat) + 1)
                    flat.extend(cast("Iterable[object]", row[i]))
                    hi.append(len(flat))
                out += [flat, lo, hi]
            else:
                out.append(list(columns[i]))
        return out

    def rounds(self, rows: Sequence[tuple[object, ...]]) -> list[list[tuple[object, ...]]]:
        """`rows` (in stream order) in rounds: round n holds the n-th row of every key."""
        if not rows:
            return []
        if not self.key:
            return [list(rows)]
        k = self.key
        if len({row[:k] for row in rows}) == len(rows):  # no key comes again: the usual case
            return [list(rows)]
        seen: Counter[tuple[object, ...]] = Counter()
        out: list[list[tuple[object, ...]]] = []
        for row in rows:
            key = row[:k]
            if seen[key] == len(out):
                out.append([])
            out[seen[key]].append(row)
            seen[key] += 1
        return out


class SegmentStatement:
    """One statement writing every table of `tables` in schema `schema`, whose main query
    `read` (parameter `$1` a `text[]`) reads in the snapshot before the writes, and may read
    what a `returning` table's write returned (`w_<name>`)."""

    def __init__(self, schema: str, tables: Sequence[Table], read: str) -> None:
        q = quote_ident(schema)
        self._tables = tuple(tables)
        writes, n = [], 2
        for table in self._tables:
            sql, n = table.insert(q, n)
            writes.append(f"w_{table.name} AS ({sql})")
        self._sql = f"WITH {', '.join(writes)} {read}"

    async def write(
        self,
        conn: asyncpg.Connection,
        rows: Mapping[str, Sequence[tuple[object, ...]]],
        read: Sequence[str],
    ) -> list[asyncpg.Record]:
        """Write `rows` (per table name, in stream order) in as many rounds as a key repeats;
        returns what the main query returned in each round, in order: with `$1` = `read` in
        the first round, empty in the next ones."""
        rounds = [t.rounds(rows.get(t.name, ())) for t in self._tables]
        found: list[asyncpg.Record] = []
        for n in range(max([1, *(len(r) for r in rounds)])):
            args: list[object] = [list(read) if n == 0 else []]
            for table, its in zip(self._tables, rounds, strict=True):
                args += table.arguments(its[n] if n < len(its) else ())
            found += await conn.fetch(self._sql, *args)
        return found


@dataclass
class SegmentRows:
    """A segment's rows per table name, in stream order, and the employees whose rows the
    counts read (`placements`) it writes."""

    rows: defaultdict[str, list[tuple[object, ...]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    counted: set[str] = field(default_factory=set)

    def add(self, table: Table, *row: object, counted: str | None = None) -> None:
        """Add `row` of `table`; `counted`: the employee, when the counts read that table."""
        self.rows[table.name].append(row)
        if counted is not None:
            self.counted.add(counted)


#: what one event type writes into a segment's rows, the event read at its stream sequence
RowsOf = Callable[[SegmentRows, Any, int], None]


def rows_of(writers: Mapping[type[Any], RowsOf], cls: type[Any]) -> RowsOf | None:
    """The writer of `writers` for events of `cls`: its own, else that of the nearest base
    class that has one (as a `match` on the classes would pick), else None."""
    write = writers.get(cls)
    if write is None:
        write = next((writers[base] for base in cls.__mro__[1:] if base in writers), None)
    return write
