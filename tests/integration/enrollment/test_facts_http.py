"""`POST /v1/facts` against the running enrollment service and real servers: the three
CloudEvents modes, per-event answers, idempotent retries, its own token and its limits."""

from __future__ import annotations

import json
import uuid
from typing import Any

from dxtalent_enrollment.cloudevents_http import BATCH, MAX_BATCH_EVENTS, STRUCTURED
from dxtalent_enrollment.intake import MAX_BODY_BYTES
from tests.integration.enrollment.conftest import API_TOKEN, Intake


def completion(employee: str, course: str = "DX-101", **extra: Any) -> dict[str, Any]:
    """A CourseCompleted fact with a fresh id."""
    return {
        "specversion": "1.0",
        "id": f"lms-{uuid.uuid4()}",
        "source": "urn:hirakata:lms",
        "type": "dxtalent.lms.CourseCompleted.v1",
        "subject": employee,
        "time": "2025-06-12T09:30:00+09:00",
        "data": {"employee_id": employee, "course_id": course, "completed_on": "2025-06-12"},
        **extra,
    }


def _employee() -> str:
    return "E" + uuid.uuid4().hex[:8]


async def test_a_structured_event_is_answered_after_jetstream_holds_it(intake: Intake) -> None:
    """Structured mode: 202 `accepted`; the fact is on DX_INBOUND with Nats-Msg-Id = its id
    and enrollment records it."""
    fact = completion(who := _employee())
    response = await intake.http.post(
        "/v1/facts", content=json.dumps(fact), headers={"Content-Type": STRUCTURED}
    )
    assert response.status_code == 202, response.text
    assert response.json()["results"] == [
        {
            "id": fact["id"],
            "source": fact["source"],
            "type": fact["type"],
            "outcome": "accepted",
            "reason": None,
            "errors": [],
        }
    ]
    assert [(e["id"], msg_id) for e, msg_id in await intake.inbound()] == [(fact["id"], fact["id"])]
    await intake.caught_up()
    [recorded] = await intake.recorded(who)
    assert recorded.data["course_id"] == "DX-101"
    assert recorded.causation_id == fact["id"]


async def test_a_batch_answers_each_event_and_sends_only_the_acceptable(intake: Intake) -> None:
    """Batched mode with a good fact, an unknown course and a fact missing a field: 207, the
    good one accepted, the others rejected with the reason; only the good one is sent."""
    who = _employee()
    good, unknown, broken = completion(who), completion(who, "NOPE-999"), completion(who)
    del broken["data"]["course_id"]
    response = await intake.http.post(
        "/v1/facts", json=[good, unknown, broken], headers={"Content-Type": BATCH}
    )
    assert response.status_code == 207, response.text
    body = response.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (1, 0, 2)
    assert [r["outcome"] for r in body["results"]] == ["accepted", "rejected", "rejected"]
    assert "unknown course 'NOPE-999'" in body["results"][1]["reason"]
    assert body["results"][2]["errors"] == [
        {"field": "data.course_id", "problem": "Field required"}
    ]
    assert [e["id"] for e, _ in await intake.inbound()] == [good["id"]]


async def test_a_binary_mode_event_is_read_from_its_ce_headers(intake: Intake) -> None:
    """Binary mode: attributes in ce-* headers (percent-decoded), the data as the body."""
    fact = completion(who := _employee())
    headers = {f"ce-{k}": v for k, v in fact.items() if k != "data"}
    headers["ce-time"] = "2025-06-12T09%3A30%3A00%2B09%3A00"
    response = await intake.http.post(
        "/v1/facts", json=fact["data"], headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 202, response.text
    [(sent, _)] = await intake.inbound()
    assert sent["time"] == "2025-06-12T09:30:00+09:00"
    await intake.caught_up()
    assert len(await intake.recorded(who)) == 1


async def test_the_same_request_again_changes_nothing(intake: Intake) -> None:
    """A retry is answered `duplicate` (JetStream within its window, enrollment's store after
    it) and nothing more is sent or recorded; the same id twice in one batch is sent once."""
    fact = completion(who := _employee())
    first = await intake.http.post("/v1/facts", json=[fact, fact], headers={"Content-Type": BATCH})
    assert [r["outcome"] for r in first.json()["results"]] == ["accepted", "duplicate"]
    again = await intake.http.post("/v1/facts", json=fact, headers={"Content-Type": STRUCTURED})
    assert again.status_code == 202
    assert again.json()["results"][0]["outcome"] == "duplicate"
    await intake.caught_up()
    late = await intake.http.post("/v1/facts", json=fact, headers={"Content-Type": STRUCTURED})
    assert late.json()["results"][0]["outcome"] == "duplicate"
    assert len(await intake.inbound()) == 1
    assert len(await intake.recorded(who)) == 1


async def test_the_door_has_its_own_token(intake: Intake) -> None:
    """Without a bearer token, or with the query token, the answer is 401 naming the setting."""
    fact = completion(_employee())
    for auth in ({}, {"Authorization": f"Bearer {API_TOKEN}"}):
        response = await intake.http.post(
            "/v1/facts",
            json=fact,
            headers={"Content-Type": STRUCTURED, "Authorization": ""} | auth,
        )
        assert response.status_code == 401, response.text
        assert "DXT_INGEST_TOKEN" in response.json()["detail"]
    assert await intake.inbound() == []


async def test_bodies_that_are_not_events_are_refused_whole(intake: Intake) -> None:
    """413 above the size limit, 415 for another content type, 400 for a batch that is not an
    array of objects or has too many events: nothing is sent."""
    big = b"[" + b" " * MAX_BODY_BYTES + b"]"
    too_many = [completion("E1")] * (MAX_BATCH_EVENTS + 1)
    cases = [
        (big, BATCH, 413),
        (b"<xml/>", "application/xml", 415),
        (b'{"not": "an array"}', BATCH, 400),
        (json.dumps(too_many).encode(), BATCH, 400),
        (b"[1, 2]", BATCH, 400),
        (b"{", STRUCTURED, 400),
    ]
    for body, content_type, status in cases:
        response = await intake.http.post(
            "/v1/facts", content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == status, (content_type, response.text)
        assert response.json()["detail"]
    assert await intake.inbound() == []
