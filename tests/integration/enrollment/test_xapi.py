"""The xAPI statements resource against the running enrollment service and real servers:
completions and voids in either order, idempotent statement ids, statements kept that mean
nothing, the version header and both ways of sending the token."""

from __future__ import annotations

import uuid
from typing import Any, cast

import asyncpg
import httpx

from dxtalent.employee_export import collect
from dxtalent_enrollment.xapi import SOURCE, fact_id
from tests.integration.enrollment.conftest import INGEST_TOKEN, Intake
from tests.support.xapi_statements import (
    PASSED,
    course_statement,
    new_id,
    voiding,
)

XAPI = {"X-Experience-API-Version": "1.0.3"}


def _employee() -> str:
    return "E" + uuid.uuid4().hex[:8]


async def _put(intake: Intake, statement: dict[str, Any], statement_id: str) -> httpx.Response:
    return await intake.http.put(
        "/xapi/statements", params={"statementId": statement_id}, json=statement, headers=XAPI
    )


async def _facts(intake: Intake) -> list[dict[str, Any]]:
    return [event for event, _ in await intake.inbound()]


async def test_a_completed_statement_becomes_a_completion(intake: Intake) -> None:
    """PUT of a *completed* statement on a catalog activity: 204 with the version header; a
    CourseCompleted with the statement's derived id, the account name as employee and the
    timestamp's Japan date; enrollment records it; GET returns the statement as received."""
    statement_id, who = new_id(), _employee()
    response = await _put(intake, course_statement(who), statement_id)
    assert response.status_code == 204, response.text
    assert response.headers["X-Experience-API-Version"] == "1.0.3"
    [fact] = await _facts(intake)
    assert (fact["id"], fact["source"], fact["type"]) == (
        fact_id(statement_id),
        SOURCE,
        "dxtalent.lms.CourseCompleted.v1",
    )
    assert fact["data"] == {"employee_id": who, "course_id": "DX-101", "completed_on": "2025-06-12"}
    await intake.caught_up()
    assert [e.data["course_id"] for e in await intake.recorded(who)] == ["DX-101"]
    got = await intake.http.get(
        "/xapi/statements", params={"statementId": statement_id}, headers=XAPI
    )
    assert got.status_code == 200, got.text
    assert got.json()["result"]["score"] == {"scaled": 0.95}
    assert got.json()["id"] == statement_id


async def test_a_statement_id_is_idempotent_and_never_reused(intake: Intake) -> None:
    """The same statement again: 204 and no new fact; other content under the same id: 409,
    and the stored statement is unchanged."""
    statement_id, who = new_id(), _employee()
    statement = course_statement(who)
    assert (await _put(intake, statement, statement_id)).status_code == 204
    reworded = statement | {"verb": statement["verb"] | {"display": {"ja-JP": "修了"}}}
    assert (await _put(intake, reworded, statement_id)).status_code == 204
    other = course_statement(who, "SEC-101")
    conflict = await _put(intake, other, statement_id)
    assert conflict.status_code == 409, conflict.text
    assert statement_id in conflict.json()["detail"]
    assert len(await _facts(intake)) == 1
    got = await intake.http.get(
        "/xapi/statements", params={"statementId": statement_id}, headers=XAPI
    )
    assert got.json()["object"]["id"].endswith("/DX-101")


async def test_post_stores_every_statement_and_publishes_what_they_mean(intake: Intake) -> None:
    """POST of an array: a *passed* statement without id, one on an unknown activity and one
    with another verb: 200 with three ids in order; all three stored; one fact."""
    who = _employee()
    unknown = course_statement(who, "NOT-IN-CATALOG", statement_id=new_id())
    attempted = course_statement(who, verb="http://adlnet.gov/expapi/verbs/attempted")
    batch = [course_statement(who, "ICT-101", verb=PASSED), unknown, attempted]
    response = await intake.http.post("/xapi/statements", json=batch, headers=XAPI)
    assert response.status_code == 200, response.text
    ids = response.json()
    assert len(ids) == 3
    assert ids[1] == unknown["id"]
    for statement_id in ids:
        got = await intake.http.get(
            "/xapi/statements", params={"statementId": statement_id}, headers=XAPI
        )
        assert got.status_code == 200, got.text
    [fact] = await _facts(intake)
    assert (fact["id"], fact["data"]["course_id"]) == (fact_id(ids[0]), "ICT-101")


async def test_a_void_before_its_statement_takes_effect_when_the_statement_comes(
    intake: Intake,
) -> None:
    """A voiding statement first: stored, nothing published; then the voided statement: its
    completion and the CompletionVoided (naming the completion's derived id) are published and
    recorded, and the statement is no longer returned."""
    statement_id, who = new_id(), _employee()
    void_id = new_id()
    response = await intake.http.post(
        "/xapi/statements", json=voiding(statement_id, void_id), headers=XAPI
    )
    assert response.json() == [void_id]
    assert await _facts(intake) == []
    assert (await _put(intake, course_statement(who), statement_id)).status_code == 204
    facts = {f["type"]: f for f in await _facts(intake)}
    voided = facts["dxtalent.lms.CompletionVoided.v1"]
    assert voided["id"] == fact_id(void_id)
    assert voided["data"]["voided_event_id"] == fact_id(statement_id)
    assert voided["data"]["employee_id"] == who
    await intake.caught_up()
    assert len(await intake.recorded(who)) == 2
    got = await intake.http.get(
        "/xapi/statements", params={"statementId": statement_id}, headers=XAPI
    )
    assert got.status_code == 404
    assert "voided" in got.json()["detail"]


async def test_a_void_after_its_statement_voids_the_completion(intake: Intake) -> None:
    """The usual order: completion, then its void: a CompletionVoided of that completion."""
    statement_id, who = new_id(), _employee()
    await _put(intake, course_statement(who), statement_id)
    response = await intake.http.post("/xapi/statements", json=voiding(statement_id), headers=XAPI)
    assert response.status_code == 200, response.text
    types = [f["type"] for f in await _facts(intake)]
    assert types == ["dxtalent.lms.CourseCompleted.v1", "dxtalent.lms.CompletionVoided.v1"]


async def test_a_batch_with_a_malformed_statement_stores_nothing(intake: Intake) -> None:
    """A statement without a verb in a batch: 400 naming it, and the good one is not stored."""
    good = course_statement(_employee(), statement_id=new_id())
    bad = {k: v for k, v in course_statement(_employee()).items() if k != "verb"}
    response = await intake.http.post("/xapi/statements", json=[good, bad], headers=XAPI)
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("statement 1: verb")
    assert response.headers["X-Experience-API-Version"] == "1.0.3"
    got = await intake.http.get(
        "/xapi/statements", params={"statementId": good["id"]}, headers=XAPI
    )
    assert got.status_code == 404


async def test_version_header_and_token_are_required(intake: Intake) -> None:
    """No version header, or 1.1.0: 400. The token as the password of HTTP Basic is accepted;
    a wrong password is 401 with Basic and Bearer challenges. /about needs neither."""
    statement = course_statement(_employee())
    for headers in ({}, {"X-Experience-API-Version": "1.1.0"}):
        response = await intake.http.post("/xapi/statements", json=statement, headers=headers)
        assert response.status_code == 400, response.text
        assert "X-Experience-API-Version" in response.json()["detail"]
    async with httpx.AsyncClient(base_url=intake.base_url) as lms:
        ok = await lms.post(
            "/xapi/statements", json=statement, headers=XAPI, auth=("lms", INGEST_TOKEN)
        )
        assert ok.status_code == 200, ok.text
        wrong = await lms.post("/xapi/statements", json=statement, headers=XAPI, auth=("lms", "x"))
        assert wrong.status_code == 401
        assert wrong.headers["WWW-Authenticate"].startswith('Basic realm="dxtalent"')
        about = await lms.get("/xapi/about")
        assert about.json() == {"version": ["1.0.3"]}


async def test_a_disclosure_export_includes_the_statements_the_lms_sent(intake: Intake) -> None:
    """`dxtalent employee export` reads the xAPI store too: the statement, actor name and all,
    is found by its account name (the employee id); another employee's is not."""
    who, other = _employee(), _employee()
    mine = new_id()
    assert (await _put(intake, course_statement(who), mine)).status_code == 204
    assert (await _put(intake, course_statement(other), new_id())).status_code == 204
    async with intake.pool.acquire() as conn:
        export = await collect(cast(asyncpg.Connection, conn), who, intake.topology.prefix)
    [held] = export["sections"]["statements"]
    assert held["row"]["statement_id"] == mine
    assert held["row"]["statement"]["actor"]["account"]["name"] == who
