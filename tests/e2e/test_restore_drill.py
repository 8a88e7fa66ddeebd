"""The restore drill (docs/backup-restore.md): dump the event stores of a running system,
restore them into an empty database with a fresh `DX_EVENTS`, rebuild every projection and
read model from the events, and get the same levels and progress as the original."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats

from dxtalent.backup_cli import restore
from dxtalent.citygen import generate_city
from dxtalent.demo import DEMO_SEED
from dxtalent.expected import expected_states
from dxtalent.nats_tools import publish_raw
from dxtalent.rebuild_cli import rebuild_service
from dxtalent.stack import LocalStack, http_json
from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.fiscal import fiscal_year_end
from dxtalent_infra.logs import configure_logging
from dxtalent_infra.settings import Settings
from dxtalent_infra.topology import ALL_STREAMS, Topology
from tests.e2e.helpers import assert_matches_core
from tests.support.cli import run_dxtalent
from tests.support.servers import unique_token

CATALOG = load_catalog()
STAFF = 300


def answers(stack: LocalStack, employees: list[str]) -> dict[str, Any]:
    """Every employee's certification answer and every year's progress tables."""
    certification = stack.services["certification"].base_url
    reporting = stack.services["reporting"].base_url
    out: dict[str, Any] = {}
    for emp in employees:
        status, body = http_json(f"{certification}/v1/employees/{emp}")
        assert status == 200, (emp, body)
        out[emp] = body
    for fy in sorted(CATALOG.fiscal_years):
        end = fiscal_year_end(fy).isoformat()
        for path in ("progress", "progress/departments"):
            status, body = http_json(f"{reporting}/v1/{path}?fiscal_year={fy}&as_of={end}")
            assert status == 200, body
            out[f"{path} {fy}"] = body
    return out


@contextlib.contextmanager
def empty_database(database_url: str) -> Iterator[str]:
    """A new, empty database on the same server; dropped afterwards."""
    name = f"drill_{unique_token()}"
    parts = urlsplit(database_url)
    url = urlunsplit(parts._replace(path=f"/{name}"))

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield url
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _delete_streams(nats_url: str, topology: Topology) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for spec in ALL_STREAMS:
        with contextlib.suppress(Exception):
            await js.delete_stream(topology.stream(spec.name))
    await nc.close()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_dxtalent(*args, env=env, timeout=300)


async def _events(database_url: str, topology: Topology) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        n: int = await conn.fetchval(
            f'SELECT count(*) FROM "{topology.prefix}_certification".events'
        )
        return n
    finally:
        await conn.close()


def test_restored_event_stores_rebuild_the_same_levels_and_progress(system: LocalStack) -> None:
    configure_logging("warning", json=False)  # the rebuilds run in this process
    city = generate_city(CATALOG, seed=DEMO_SEED, staff=STAFF)
    topology = Topology(system.prefix)
    facts = [e.to_json_bytes() for e in city.events]
    asyncio.run(publish_raw(str(system.nats_url), facts, topology))
    system.wait_ready(timeout=180, settle_checks=3)
    employees = sorted(expected_states(CATALOG, city.events))
    original = answers(system, employees)

    dump_dir = Path(tempfile.mkdtemp(prefix="dxt-dump-"))
    data_dir = Path(tempfile.mkdtemp(prefix="dxt-restored-"))
    restored_topology = Topology(unique_token())
    try:
        dumped = _cli("backup", "dump", str(dump_dir), env=system.env_for())
        assert dumped.returncode == 0, dumped.stderr
        assert "certification" in dumped.stdout
        with empty_database(str(system.database_url)) as url:
            target = Settings(
                nats_url=system.nats_url, database_url=url, prefix=restored_topology.prefix
            )
            assert "certification" in asyncio.run(restore(target, dump_dir, republish=True))
            restored = LocalStack(
                data_dir,
                system.nats_url,
                url,
                prefix=restored_topology.prefix,
                extra_env={"DXT_RELAY_POLL_INTERVAL_S": "0.5", "DXT_LOG_LEVEL": "warning"},
            )
            try:
                # enrollment republishes its events; reporting reads them from the start
                restored.start_services(("enrollment", "reporting"))
                restored.wait_ready(timeout=120, settle_checks=3)
                # certification's rows from the enrollment events, before the service runs
                # (it would otherwise decide again and append events its store holds)
                report = asyncio.run(rebuild_service("certification", target, CATALOG))
                assert report.applied > 0
                restored.start_service("certification")  # republishes its own events
                restored.wait_ready(timeout=120, settle_checks=3)
                rebuilt = _cli("rebuild", "reporting", env=restored.env_for())
                assert rebuilt.returncode == 0, rebuilt.stderr
                assert "reporting: rebuilt from" in rebuilt.stdout
                restored.wait_ready(timeout=120, settle_checks=3)
                again = answers(restored, employees)
                assert_matches_core(restored, CATALOG, city.events)
                # the restored certification service decided nothing again
                assert asyncio.run(_events(url, restored_topology)) == asyncio.run(
                    _events(str(system.database_url), topology)
                )
            finally:
                restored.stop()
                asyncio.run(_delete_streams(str(system.nats_url), restored_topology))
        differing = [k for k in original if original[k] != again[k]]
        assert not differing, (differing[:3], [(original[k], again[k]) for k in differing[:1]])
    finally:
        shutil.rmtree(dump_dir, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)
