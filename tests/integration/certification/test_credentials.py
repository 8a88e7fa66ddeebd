"""Portable credentials through the running certification service, against real NATS and
PostgreSQL: a certification issues one verifiable Open Badge, a revocation sets its status
bit, redeliveries and corrections issue nothing; the CLI verifies what the service serves."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from typer.testing import CliRunner, Result

from dxtalent.cli import app
from dxtalent_certification.verification import check_signature, check_status
from tests.integration.certification.harness import L1_COURSES, Enrollment, RunningService
from tests.integration.certification.test_service import level_one_facts, publish_all

pytestmark = pytest.mark.integration


async def credentials(service: RunningService, employee_id: str) -> list[dict[str, Any]]:
    """GET /v1/employees/{id}/credentials, expecting 200."""
    response = await service.http.get(f"/v1/employees/{employee_id}/credentials")
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["credentials"]
    return listed


async def certified(service: RunningService) -> tuple[Enrollment, list[Any]]:
    """An employee certified at level 1, and the facts that did it."""
    who = Enrollment()
    facts = level_one_facts(who)
    await publish_all(service, facts)
    await service.caught_up()
    return who, facts


async def cli(*args: str) -> Result:
    """`dxtalent ...` in a thread, so the in-process service keeps answering."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def test_a_certification_issues_one_credential_that_verifies(badges: RunningService) -> None:
    """Level 1 certified: one active credential for level 1, dated from the certification,
    whose signature verifies with the served JWK Set and whose status bit is clear."""
    who, _ = await certified(badges)
    [issued] = await credentials(badges, who.employee_id)
    [event] = await badges.emitted(who.employee_id, "level-certified")

    assert (issued["level"], issued["status"]) == (1, "active")
    assert issued["credential"]["validFrom"] == "2025-07-15T00:00:00+09:00"
    assert issued["credential"]["credentialSubject"]["identifier"][0]["identityHash"] == (
        who.employee_id
    )
    jwks = (await badges.http.get("/.well-known/jwks.json")).json()
    check, claims = check_signature(issued["jwt"], jwks)
    assert check.ok, check.detail
    assert claims is not None
    assert claims["vc"]["credentialSubject"]["achievement"]["id"].endswith("/level-1")
    status_url = claims["vc"]["credentialStatus"]["statusListCredential"]
    status_list = (await httpx.AsyncClient().get(status_url)).text
    assert check_status(claims, status_list, jwks).ok
    assert event["data"]["supersedes"] is None


async def test_a_revocation_sets_the_status_bit(badges: RunningService) -> None:
    """Voiding a level-1 completion revokes the level: the credential is listed revoked and
    the served status list has its bit set."""
    who, facts = await certified(badges)
    await badges.publish(who.void(facts[3]))
    await badges.caught_up()

    [issued] = await credentials(badges, who.employee_id)
    assert issued["status"] == "revoked"
    jwks = (await badges.http.get("/credentials/keys")).json()
    _, claims = check_signature(issued["jwt"], jwks)
    assert claims is not None
    status_list = (await badges.http.get("/credentials/status/1")).text
    status = check_status(claims, status_list, jwks)
    assert not status.ok
    assert status.detail.startswith("revoked: index 0 of ")


async def test_a_redelivered_fact_and_a_correction_issue_nothing(badges: RunningService) -> None:
    """The completing fact delivered again (no Nats-Msg-Id), then a late earlier completion
    that re-dates the level (a correction): still one credential, one status index used."""
    who, facts = await certified(badges)
    [before] = await credentials(badges, who.employee_id)
    await badges.publish(facts[-1], msg_id=False)
    await badges.publish(who.completion(L1_COURSES[-1], "2025-06-05"))
    await badges.caught_up()

    assert len(await badges.emitted(who.employee_id, "level-certified")) == 2
    assert await credentials(badges, who.employee_id) == [before]
    used = await badges.pool.fetchval(
        f'SELECT next_index FROM "{badges.schema}".credential_counter'
    )
    assert used == 1


async def test_the_cli_verifies_good_tampered_and_revoked_credentials(
    badges: RunningService, tmp_path: Path
) -> None:
    """`dxtalent credential verify`: a good credential passes three checks (keys and status
    fetched from the issuer), a tampered one fails its signature, a revoked one its status."""
    good, _ = await certified(badges)
    gone, facts = await certified(badges)
    await badges.publish(gone.void(facts[3]))
    await badges.caught_up()
    [good_vc] = await credentials(badges, good.employee_id)
    [gone_vc] = await credentials(badges, gone.employee_id)
    header, _payload, signature = good_vc["jwt"].split(".")
    claims = jwt.decode(good_vc["jwt"], options={"verify_signature": False})
    claims["vc"]["credentialSubject"]["achievement"]["name"] = "ＤＸ推進リーダー レベル３"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    files = {"good": good_vc["jwt"], "tampered": f"{header}.{forged.decode()}.{signature}"}
    files["revoked"] = gone_vc["jwt"]
    for name, token in files.items():
        (tmp_path / name).write_text(token)
    issuer = f"--issuer={badges.http.base_url}"

    ok = await cli("credential", "verify", str(tmp_path / "good"), issuer)
    tampered = await cli("credential", "verify", str(tmp_path / "tampered"))
    revoked = await cli("credential", "verify", str(tmp_path / "revoked"), issuer)

    assert ok.exit_code == 0, ok.output
    assert [line.split(" (")[0] for line in ok.output.splitlines()] == [
        "signature: ok",
        "issuer: ok",
        "status: ok",
    ]
    assert tampered.exit_code == 1
    assert tampered.output.startswith("signature: FAILED (signature does not verify")
    assert revoked.exit_code == 1
    assert revoked.output.splitlines()[-1].startswith("status: FAILED (revoked: index ")


async def test_without_credential_settings_the_routes_say_so(service: RunningService) -> None:
    """Credentials off (no DXT_CREDENTIAL_*): 404 naming the settings, on the query and the
    public documents alike; the query still needs the bearer token."""
    answer = await service.http.get("/v1/employees/E000001/credentials")
    keys = await service.http.get("/.well-known/jwks.json")
    anonymous = await httpx.AsyncClient(base_url=str(service.http.base_url)).get(
        "/v1/employees/E000001/credentials"
    )
    assert (answer.status_code, keys.status_code, anonymous.status_code) == (404, 404, 401)
    assert "DXT_CREDENTIAL_KEY_FILE" in answer.json()["detail"]
