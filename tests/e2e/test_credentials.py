"""Portable credentials and the disclosure export on the whole system, services as processes:
a generated city's certifications each issue one credential, revocations mark theirs, the CLI
verifies one against the issuer, and the export finds the employee in all three services."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dxtalent.citygen import generate_city
from dxtalent.nats_tools import subject_for
from dxtalent.stack import LocalStack, http_json
from dxtalent_contracts.catalog import load_catalog
from dxtalent_infra.servers import free_port
from dxtalent_infra.topology import Topology
from tests.e2e.conftest import _cleanup
from tests.e2e.helpers import events_on, publish_with_ids
from tests.support.cli import run_dxtalent
from tests.support.servers import ServerUrls, unique_token

pytestmark = pytest.mark.e2e


@pytest.fixture
def issuing(server_urls: ServerUrls) -> Iterator[LocalStack]:
    """The three services as processes; certification signs credentials with a fresh key and
    names its own base URL as the issuer."""
    data_dir = Path(tempfile.mkdtemp(prefix="dxt-e2e-badges-"))
    key = data_dir / "issuer.pem"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    port = free_port()
    stack = LocalStack(
        data_dir,
        server_urls.nats_url,
        server_urls.database_url,
        prefix=unique_token(),
        extra_env={
            "DXT_RELAY_POLL_INTERVAL_S": "0.5",
            "DXT_CREDENTIAL_KEY_FILE": str(key),
            "DXT_CREDENTIAL_ISSUER": f"http://127.0.0.1:{port}",
        },
    )
    stack.start_service("certification", port)
    stack.start_services(("enrollment", "reporting"))
    try:
        stack.wait_ready(timeout=90, settle_checks=1)
        yield stack
    finally:
        stack.stop()
        asyncio.run(_cleanup(server_urls, Topology(stack.prefix)))
        shutil.rmtree(data_dir, ignore_errors=True)


async def _credential_rows(database_url: str, prefix: str) -> tuple[int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            f'SELECT count(*), count(revoked_at) FROM "{prefix}_certification".credentials'
        )
        assert row is not None
        return row[0], row[1]
    finally:
        await conn.close()


def _dxtalent(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_dxtalent(*args, env=env)


def test_a_citys_certifications_issue_credentials_that_verify_and_export(
    issuing: LocalStack, tmp_path: Path
) -> None:
    """One credential per new certification (none for corrections), one revoked per
    revocation; `credential verify` passes a served credential; `employee export` finds the
    holder's facts, events, records, levels and credential in all three schemas."""
    city = generate_city(load_catalog(), seed=7, staff=200)
    items = [(subject_for(e.to_json_bytes())[0], e.to_json_bytes(), e.id) for e in city.events]
    topology = Topology(issuing.prefix)
    asyncio.run(publish_with_ids(str(issuing.nats_url), topology, items))
    issuing.wait_ready(timeout=300, settle_checks=3)

    certified = asyncio.run(
        events_on(str(issuing.nats_url), topology, "dx.events.certification.level-certified")
    )
    revoked = asyncio.run(
        events_on(str(issuing.nats_url), topology, "dx.events.certification.level-revoked")
    )
    new = [e for e in certified if e["data"]["supersedes"] is None]  # type: ignore[index]
    issued, marked = asyncio.run(_credential_rows(str(issuing.database_url), issuing.prefix))
    assert new
    assert (issued, marked) == (len(new), len(revoked))

    holder = str(new[0]["subject"])
    base = issuing.services["certification"].base_url
    status, body = http_json(f"{base}/v1/employees/{holder}/credentials")
    assert status == 200, body
    (tmp_path / "badge.jwt").write_text(body["credentials"][0]["jwt"])
    env = issuing.env_for()
    verified = _dxtalent(
        "credential", "verify", str(tmp_path / "badge.jwt"), "--issuer", base, env=env
    )
    exported = _dxtalent("employee", "export", holder, "--out", str(tmp_path), env=env)

    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert [line.split(":")[0] for line in verified.stdout.splitlines()] == [
        "signature",
        "issuer",
        "status",
    ]
    assert exported.returncode == 0, exported.stderr
    sections = json.loads((tmp_path / f"{holder}.json").read_text("utf-8"))["sections"]
    assert all(sections[k] for k in ("facts", "events", "levels", "records", "credentials"))
