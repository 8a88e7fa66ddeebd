"""`pool_reset`: the services' pools skip asyncpg's reset query unless our code marked the
connection (decision 0285). The hook's rule, and a guard over our sources: SQL that leaves
state on a session appears only in the modules that mark their connection for the full reset."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import cast

import asyncpg
import pytest

from dxtalent_infra import pool_reset

ROOT = Path(__file__).resolve().parents[3]
SOURCES = [ROOT / "infra" / "src", ROOT / "src", *sorted((ROOT / "services").glob("*/src"))]

#: SQL (and asyncpg calls) that leave state on the session past its transaction; our SQL is
#: written in capitals, so the words are matched as written
SESSION_STATE = {
    "session advisory lock": re.compile(r"pg_(try_)?advisory_lock(_shared)?\s*\("),
    "LISTEN": re.compile(r"\badd_listener\(|\bLISTEN\s"),
    "cursor WITH HOLD": re.compile(r"\bWITH\s+HOLD\b"),
    "temporary table": re.compile(r"\bCREATE\s+(GLOBAL\s+|LOCAL\s+)?TEMP(ORARY)?\b"),
    "session setting": re.compile(
        r"\bset_config\(|\bSET\s+(SESSION\b|ROLE\b|search_path\b|TIME\s+ZONE\b)"
        # `SET name TO value` (an UPDATE's SET takes `=`, so `SET name = value` is not told)
        r"|\bSET\s+(?!LOCAL\b)\w+\s+TO\b"
    ),
}

#: where our code takes session state on a pooled connection, each of them marking it
KNOWN = {
    "infra/src/dxtalent_infra/eventstore.py": {"session advisory lock"},  # allocate_positions
    # the relay's listener, and its batch's lock (0320)
    "infra/src/dxtalent_infra/outbox.py": {"LISTEN", "session advisory lock"},
    "infra/src/dxtalent_infra/rebuild.py": {"session advisory lock"},  # the rebuild's guard
}


def _session_state_in_sources() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for root in SOURCES:
        for path in root.rglob("*.py"):
            if path.name == "pool_reset.py":  # its docstring names them all
                continue
            text = path.read_text()
            kinds = {kind for kind, pattern in SESSION_STATE.items() if pattern.search(text)}
            if kinds:
                found[path.relative_to(ROOT).as_posix()] = kinds
    return found


def test_session_state_is_taken_only_where_the_connection_is_marked() -> None:
    """A new place that LISTENs, takes a session lock, sets a session setting, holds a cursor
    or makes a temporary table on a connection must mark it (`pool_reset.needs_full_reset`)
    or use a connection of its own; then add it here."""
    assert _session_state_in_sources() == KNOWN
    for module in KNOWN:
        assert "pool_reset.needs_full_reset(" in (ROOT / module).read_text(), module


class FakeConnection:
    """What `reset_on_release` uses of a connection: its server pid, the reset query and
    `execute`, recorded."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.executed: list[str] = []

    def get_server_pid(self) -> int:
        return self.pid

    def get_reset_query(self) -> str:
        return "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;"

    async def execute(self, query: str) -> str:
        self.executed.append(query)
        return "SELECT 1"


def _release(conn: FakeConnection) -> None:
    asyncio.run(pool_reset.reset_on_release(cast(asyncpg.Connection, conn)))


@pytest.mark.parametrize("marked", [False, True])
def test_the_reset_query_runs_once_after_a_mark_and_never_without(marked: bool) -> None:
    conn = FakeConnection(pid=2_000_285 + marked)
    if marked:
        pool_reset.needs_full_reset(cast(asyncpg.Connection, conn))
    _release(conn)
    _release(conn)
    assert conn.executed == [conn.get_reset_query()] * marked
