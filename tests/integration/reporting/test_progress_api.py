"""The reporting service end to end in-process: domain events on real NATS JetStream, the read
model in real PostgreSQL, the reports over HTTP."""

from __future__ import annotations

import csv
import io
import json
import uuid
from typing import Any

from dxtalent_contracts.events import MessageRejected
from dxtalent_infra.topology import Topology
from tests.integration.reporting.harness import (
    Reporting,
    certified,
    employee,
    left,
    levels_up_to,
    nominated,
    revoked,
    run_reporting,
)
from tests.support.polling import eventually


def counts(body: dict[str, Any]) -> dict[int, tuple[int | None, int, int, float | None]]:
    """(target, reached, exactly, percent) per level of a progress body."""
    return {
        row["level"]: (row["target"], row["reached"], row["exactly"], row["percent"])
        for row in body["levels"]
    }


async def test_progress_counts_employed_staff_against_the_targets(reporting: Reporting) -> None:
    """Reached counts staff still employed at the report date; exactly counts the highest level;
    percent is a one-decimal number, null where the target is 0."""
    await reporting.publish(
        employee("E1", "D-A"),
        *levels_up_to("E1", 1, "2025-06-01"),
        employee("E2", "D-A"),
        *levels_up_to("E2", 2, "2025-07-01"),
        employee("E3", "D-B"),
        *levels_up_to("E3", 1, "2025-05-01"),
        left("E3", "2025-12-31"),
        employee("E4", "D-B"),
        *levels_up_to("E4", 3, "2025-08-01"),
        employee("E5", "D-A"),
    )
    await reporting.settle()

    response = await reporting.http.get("/v1/progress", params={"fiscal_year": 2025})
    body = response.json()
    assert {"fiscal_year", "fiscal_year_label", "as_of", "levels"} <= body.keys()
    assert (body["fiscal_year"], body["fiscal_year_label"], body["as_of"]) == (
        2025,
        "令和7年度",
        "2026-03-31",
    )
    assert {"level", "target", "reached", "exactly", "percent"} <= body["levels"][0].keys()
    assert counts(body) == {1: (100, 3, 1, 3.0), 2: (20, 2, 1, 10.0), 3: (0, 1, 1, None)}
    assert '"percent":3.0' in response.text.replace(" ", "")
    assert [row["left"] for row in body["levels"]] == [1, 0, 0]
    assert body["left"] == 1

    early = await reporting.progress(fiscal_year=2025, as_of="2025-06-30")
    assert counts(early)[1][1:3] == (2, 2)  # E3 (not yet left) and E1; E2 and E4 came later
    assert early["as_of"] == "2025-06-30"
    before_any = await reporting.progress(fiscal_year=2025, as_of="2025-04-30")
    assert [row["reached"] for row in before_any["levels"]] == [0, 0, 0]
    next_year = await reporting.progress(fiscal_year=2026)
    assert counts(next_year) == {1: (130, 3, 1, 2.3), 2: (40, 2, 1, 5.0), 3: (10, 1, 1, 10.0)}


async def test_department_follows_an_effective_dated_transfer(reporting: Reporting) -> None:
    """An employee counts where the record in force on the report date places them; sections
    without a nominated leader that year are listed."""
    await reporting.publish(
        employee("E1", "D-A", "2023-04-01", name="総務課"),
        employee("E1", "D-B", "2025-10-01", name="DX推進課"),
        *levels_up_to("E1", 1, "2025-06-01"),
        nominated("E1", 2025, "D-A"),
        employee("E2", "D-C"),
        *levels_up_to("E2", 1, "2025-06-01", department="D-C"),
        nominated("E2", 2024, "D-C"),
    )
    await reporting.settle()

    async def reached(department: str, **params: Any) -> int:
        body = await reporting.progress(fiscal_year=2025, department=department, **params)
        assert body["department"] == department
        level_one: int = body["levels"][0]["reached"]
        return level_one

    assert (await reached("D-A", as_of="2025-09-30"), await reached("D-B", as_of="2025-09-30")) == (
        1,
        0,
    )
    assert (await reached("D-A"), await reached("D-B")) == (0, 1)
    assert await reached("D-NOBODY") == 0

    year_end = await reporting.departments(fiscal_year=2025)
    rows = {row["department"]: row for row in year_end["departments"]}
    assert sorted(rows) == ["D-A", "D-B", "D-C"]
    assert [rows[d]["levels"][0]["reached"] for d in ("D-A", "D-B", "D-C")] == [0, 1, 1]
    assert rows["D-B"]["levels"][0]["target"] == 100  # the city's target, for reference
    assert (rows["D-A"]["department_name"], rows["D-B"]["department_name"]) == (
        "総務課",
        "DX推進課",
    )
    assert [rows[d]["nominated_leader"] for d in ("D-A", "D-B", "D-C")] == [True, False, False]
    assert year_end["without_nominated_leader"] == ["D-B", "D-C"]
    autumn = await reporting.departments(fiscal_year=2025, as_of="2025-09-30")
    assert sorted(row["department"] for row in autumn["departments"]) == ["D-A", "D-C"]
    assert autumn["without_nominated_leader"] == ["D-C"]
    assert (await reporting.departments(fiscal_year=2024))["without_nominated_leader"] == ["D-A"]


async def test_level_revoked_is_gone_from_every_as_of(reporting: Reporting) -> None:
    """A revoked level no longer counts on any date; a later re-certification counts from its
    own date."""
    await reporting.publish(
        employee("E1", "D-A"),
        certified("E1", 1, "2025-05-01"),
        certified("E1", 2, "2025-09-01"),
        revoked("E1", 2),
    )
    await reporting.settle()
    for as_of in ("2025-10-01", "2026-03-31"):
        body = await reporting.progress(fiscal_year=2025, as_of=as_of)
        assert [row["reached"] for row in body["levels"]] == [1, 0, 0], as_of

    await reporting.publish(certified("E1", 2, "2025-11-01"))
    await reporting.settle()
    october = await reporting.progress(fiscal_year=2025, as_of="2025-10-01")
    year_end = await reporting.progress(fiscal_year=2025)
    assert [row["reached"] for row in october["levels"]] == [1, 0, 0]
    assert [row["reached"] for row in year_end["levels"]] == [1, 1, 0]


async def test_duplicates_change_nothing(reporting: Reporting) -> None:
    """The same events again (same id, or the same fact under another message id) leave every
    report as it was; of two departures the earliest wins whatever their order."""
    events = [
        employee("E1", "D-A"),
        employee("E1", "D-B", "2025-10-01"),
        *levels_up_to("E1", 2, "2025-06-01"),
        nominated("E1", 2025, "D-A"),
        employee("E2", "D-A"),
        *levels_up_to("E2", 1, "2025-07-01"),
        left("E2", "2026-02-28"),
        left("E2", "2025-08-31"),
        revoked("E1", 2),
    ]
    await reporting.publish(*events)
    await reporting.settle()
    reports = [
        await reporting.progress(fiscal_year=2025),
        await reporting.progress(fiscal_year=2025, as_of="2025-09-01"),
        await reporting.departments(fiscal_year=2025),
    ]
    assert [row["reached"] for row in reports[1]["levels"]] == [1, 0, 0]  # E2 left 2025-08-31

    await reporting.publish(*events)  # de-duplicated by JetStream (Nats-Msg-Id)
    for event in events:  # the same facts again under new message ids reach the projection
        await reporting.publish(event, msg_id=str(uuid.uuid4()))
    await reporting.settle()
    assert reports == [
        await reporting.progress(fiscal_year=2025),
        await reporting.progress(fiscal_year=2025, as_of="2025-09-01"),
        await reporting.departments(fiscal_year=2025),
    ]


async def test_csv_is_excel_ready_and_matches_the_json(reporting: Reporting) -> None:
    """UTF-8 with BOM, CRLF, Japanese header, an attachment named after the fiscal year."""
    await reporting.publish(
        employee("E1", "D-A"), *levels_up_to("E1", 2, "2025-06-01"), employee("E2", "D-A")
    )
    await reporting.settle()

    response = await reporting.http.get("/v1/progress.csv", params={"fiscal_year": 2025})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="progress-2025.csv"'
    assert response.content.startswith(b"\xef\xbb\xbf")
    assert response.content.count(b"\r\n") == 4
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))
    assert rows[0][:8] == [
        "年度",
        "年度(和暦)",
        "基準日",
        "レベル",
        "目標人数",
        "到達人数",
        "うち当該レベル",
        "達成率(%)",
    ]
    body = await reporting.progress(fiscal_year=2025)
    assert [row[3:8] for row in rows[1:]] == [
        [
            str(level["level"]),
            str(level["target"]),
            str(level["reached"]),
            str(level["exactly"]),
            "" if level["percent"] is None else f"{level['percent']:.1f}",
        ]
        for level in body["levels"]
    ]
    assert rows[1][:3] == ["2025", "令和7年度", "2026-03-31"]

    filtered = await reporting.http.get(
        "/v1/progress.csv", params={"fiscal_year": 2025, "department": "D-A", "as_of": "2025-12-01"}
    )
    assert 'filename="progress-2025-D-A.csv"' in filtered.headers["content-disposition"]
    assert (
        filtered.content.decode("utf-8-sig")
        .split("\r\n")[1]
        .startswith("2025,令和7年度,2025-12-01,1,100,1,0,1.0,D-A")
    )


async def test_malformed_events_are_dead_lettered_and_others_skipped(reporting: Reporting) -> None:
    """Bad events on a projected subject go to dx.deadletter.reporting with a reason; subjects
    the read model does not use are skipped unparsed; the stream keeps flowing."""
    await reporting.publish_raw("dx.events.certification.level-certified", b"{not json")
    wrong_subject = certified("E9", 1, "2025-06-01")
    await reporting.publish_raw("dx.events.enrollment.employee-left", wrong_subject.to_json_bytes())
    # every contract event now feeds a read model (the dashboard's too): a subject outside the
    # contract stands for one the read model does not use
    await reporting.publish_raw("dx.events.certification.not-read-here", b"ignored, not parsed")
    await reporting.publish(employee("E1", "D-A"), *levels_up_to("E1", 1, "2025-06-01"))
    await reporting.settle()

    assert [row["reached"] for row in (await reporting.progress(fiscal_year=2025))["levels"]] == [
        1,
        0,
        0,
    ]
    stream = reporting.topology.stream("DX_DEADLETTER")
    subject = reporting.topology.subject("dx.deadletter.reporting")

    async def two_letters() -> bool:
        info = await reporting.js.stream_info(stream, subjects_filter=subject)
        return bool(info.state.subjects and info.state.subjects.get(subject) == 2)

    await eventually(two_letters, "two dead letters")
    last = await reporting.js.get_last_msg(stream, subject)
    letter = MessageRejected.model_validate(json.loads(last.data)["data"], strict=False)
    assert letter.subject == "dx.events.enrollment.employee-left"
    assert "belongs on subject" in letter.reason


async def test_token_guards_queries_and_bad_parameters_get_422(
    nats_url: str, database_url: str, topology: Topology
) -> None:
    """With DXT_API_TOKEN set, /v1 needs the bearer token; bad parameters name themselves."""
    async with run_reporting(nats_url, database_url, topology, api_token="s3cret") as service:
        http = service.http
        anonymous = await http.get("/v1/progress?fiscal_year=2025", headers={"Authorization": ""})
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == 'Bearer realm="dxtalent"'
        lower_case = {"Authorization": "bearer s3cret"}
        assert (
            await http.get("/v1/progress?fiscal_year=2025", headers=lower_case)
        ).status_code == 200
        wrong = {"Authorization": "Bearer nope"}
        for path in ("/v1/progress", "/v1/progress.csv", "/v1/progress/departments"):
            assert (await http.get(f"{path}?fiscal_year=2025", headers=wrong)).status_code == 401
            assert (await http.get(f"{path}?fiscal_year=2025")).status_code == 200
        assert (await http.get("/healthz", headers={"Authorization": ""})).status_code == 200

        bad: list[tuple[dict[str, str], str]] = [
            ({"fiscal_year": "2025", "as_of": "2025-02-30"}, "as_of"),
            ({"fiscal_year": "2025", "as_of": "yesterday"}, "as_of"),
            ({"fiscal_year": "2025", "as_of": "1999-12-31"}, "as_of"),
            ({"fiscal_year": "1999"}, "fiscal_year"),
            ({"fiscal_year": "R7"}, "fiscal_year"),
            ({}, "fiscal_year"),
            ({"fiscal_year": "2025", "department": "bad code!"}, "department"),
        ]
        for params, name in bad:
            response = await http.get("/v1/progress", params=params)
            assert response.status_code == 422, params
            assert name in response.text, response.text

        beyond = await service.progress(fiscal_year=2030)
        assert [(r["target"], r["percent"]) for r in beyond["levels"]] == [(None, None)] * 3
        schemas = (await http.get("/openapi.json")).json()["components"]["schemas"]
        assert {"ProgressReport", "LevelProgressOut", "DepartmentsReport"} <= schemas.keys()
